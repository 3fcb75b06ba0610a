// Exact dequantization of every weight type to float32: the definition of what a quantized
// weight means. Fast kernels are checked against these.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace orchard {

// Writes `n` floats decoded from `src` (a row of `type`) into `dst`.
// `n` must be a multiple of the type's block size (callers validate shapes at load time).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// Scale k (0..15) of a Q3_K block's 12 scale bytes, bias removed: -32..31. The packed kernels'
// layout (kernels/packing.h) stores them unpacked.
int q3_k_scale(const uint8_t* packed, int k);

}  // namespace orchard
