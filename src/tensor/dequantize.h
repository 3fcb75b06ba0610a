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

// The 16 values IQ4_NL's and IQ4_XS's 4-bit quants stand for (a non-linear grid, denser near 0).
extern const int8_t kIq4Values[16];
// Scale of 32-element sub-block k (0..7) of an IQ4_XS block, bias removed: -32..31.
int iq4_xs_scale(const uint8_t* block, int k);

}  // namespace orchard
