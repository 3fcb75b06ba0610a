// Safetensors reader (single file or a sharded set with model.safetensors.index.json),
// memory-mapped; F32, F16 and BF16 tensors.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "base/mapped_file.h"
#include "tensor/tensor.h"

namespace orchard {

struct SafetensorsSet {
  std::vector<std::shared_ptr<const Blob>> files;
  std::vector<TensorRef> tensors;  // shapes in contiguous-first order, like GGUF
  uint64_t total_bytes = 0;
};

// Parses one safetensors file held in `blob`, appending its tensors to `set`.
void read_safetensors(std::shared_ptr<const Blob> blob, SafetensorsSet& set);

// Loads the weights of a Hugging Face folder: model.safetensors, or the shards named by
// model.safetensors.index.json.
SafetensorsSet load_safetensors_folder(const std::string& folder);

}  // namespace orchard
