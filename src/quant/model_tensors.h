// The tensors a quantized GGUF of a loaded model holds, in GGUF naming and order, whatever the
// source format: matrices point at the source's bytes (any type), small vectors at their
// float32 copies. Hugging Face llama q/k rows are listed with the permutation GGUF's llama
// layout needs (GGUF rotates adjacent pairs, Hugging Face rotates half-split pairs).
#pragma once
#include <vector>

#include "model/model_impl.h"
#include "quant/type_policy.h"

namespace orchard {

struct SourceTensor {
  TensorInfo info;
  const TensorRef* matrix = nullptr;         // set for matrices
  const std::vector<float>* values = nullptr;  // set for vectors
  int64_t rope_heads = 0;  // > 0: rows are reordered per head from half-split to interleaved
  int64_t head_dim = 0;

  // The source row that becomes output row `r`.
  int64_t source_row(int64_t r) const;
};

std::vector<SourceTensor> model_tensors(const Model::Impl& model);

}  // namespace orchard
