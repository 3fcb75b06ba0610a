#include "tensor/quantize_reference.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/half.h"
#include "tensor/le_bytes.h"

// Operation order (multiplying by the reciprocal of d, rounding d to f16 only when storing it)
// follows ggml's reference quantizers so that the output bytes are identical.

namespace orchard {
namespace {

constexpr int64_t kBlock = 32;

void check_length(const char* what, int64_t n) {
  if (n < 0 || n % kBlock != 0)
    fail(what, ": ", n, " elements is not a whole number of 32-element blocks");
}

// Layout: f16 d, then 32 int8 quants.
void quantize_block_q8_0(const float* x, uint8_t* block) {
  float amax = 0.0f;
  for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16_le(block, f32_to_f16(d));
  for (int j = 0; j < kBlock; ++j) {
    const auto q = static_cast<int8_t>(std::round(x[j] * inverse_d));
    block[2 + j] = static_cast<uint8_t>(q);
  }
}

// Layout: f16 d, then 16 bytes holding element j in the low nibble of byte j and element
// j + 16 in its high nibble.
void quantize_block_q4_0(const float* x, uint8_t* block) {
  // The signed value of largest magnitude (the first one on ties) becomes quant 0 exactly,
  // which uses the full -8 side of the asymmetric 4-bit range.
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < kBlock; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16_le(block, f32_to_f16(d));
  // x / d lies in [-8, 8]; adding 8.5 and truncating rounds to nearest (halves up).
  auto quant = [&](float v) { return std::min(15, static_cast<int>(v * inverse_d + 8.5f)); };
  for (int j = 0; j < kBlock / 2; ++j) {
    block[2 + j] = static_cast<uint8_t>(quant(x[j]) | (quant(x[j + kBlock / 2]) << 4));
  }
}

}  // namespace

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
  check_length("quantize_row_q8_0", n);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kBlock; ++b) quantize_block_q8_0(src + b * kBlock, out + b * 34);
}

void quantize_row_q4_0(const float* src, void* dst, int64_t n) {
  check_length("quantize_row_q4_0", n);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kBlock; ++b) quantize_block_q4_0(src + b * kBlock, out + b * 18);
}

}  // namespace orchard
