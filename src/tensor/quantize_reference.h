// Reference (round-to-nearest) quantizers: the plain definition of a quantized block made from
// floats, for tests and for quantizing activations before integer dot products. They write the
// same bytes as ggml's quantize_row_*_ref, so results can be compared with llama.cpp bit for bit.
#pragma once
#include <cstdint>

namespace orchard {

// Q8_0: per 32 floats, d = max|x| / 127 and q = round(x / d) (halves away from zero).
// `n` must be a multiple of 32; `dst` receives n / 32 blocks of 34 bytes.
void quantize_row_q8_0(const float* src, void* dst, int64_t n);

// Q4_0: per 32 floats, the element of largest magnitude `max` maps to quant 0, d = max / -8,
// and q = round(x / d) + 8 clamped to 0..15 (so elements near -max round to 7 * d, not 8 * d).
// `n` must be a multiple of 32; `dst` receives n / 32 blocks of 18 bytes.
void quantize_row_q4_0(const float* src, void* dst, int64_t n);

}  // namespace orchard
