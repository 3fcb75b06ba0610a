// The quantize driver: writes a loaded model as a GGUF file whose tensors have the types a
// recipe chooses, streaming tensor by tensor and row batch by row batch, so that only one batch
// of float32 rows exists at a time (the source stays memory-mapped).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "orchard/model.h"
#include "quant/importance.h"
#include "quant/type_policy.h"

namespace orchard {

struct QuantizeOptions {
  std::string type = "q4_om";                   // a recipe name (see quantization_recipes)
  const ImportanceTable* importance = nullptr;  // activation statistics, or none
  int threads = 0;                              // 0: every available core
  // Called as data is written: (bytes written, total bytes, tensor being written).
  std::function<void(uint64_t, uint64_t, const std::string&)> progress;
};

struct QuantizedTensor {
  std::string name;
  DType type;
  std::vector<int64_t> shape;
  uint64_t bytes;
};

struct QuantizeResult {
  uint64_t file_bytes = 0;
  int64_t parameters = 0;  // elements of all written tensors
  std::vector<QuantizedTensor> tensors;
};

QuantizeResult quantize_model(const Model& model, const std::string& out_path, const QuantizeOptions& options);

}  // namespace orchard
