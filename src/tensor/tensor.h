// A view of a weight tensor inside a mapped file: type, shape and bytes. The shape lists the
// contiguous dimension first (as GGUF does), so a matrix of `rows` rows of `cols` elements has
// shape {cols, rows}: for a linear layer, {in_features, out_features}.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace orchard {

struct TensorRef {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;

  int64_t row_length() const { return shape.empty() ? 0 : shape[0]; }
  int64_t element_count() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 0 : element_count() / shape[0]; }
  size_t row_stride() const { return row_bytes(type, row_length()); }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_stride(); }
};

}  // namespace orchard
