#include "quant/scale_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/half.h"
#include "tensor/le_bytes.h"

namespace orchard {
namespace {

// Round to nearest (ties to even) through the float mantissa: exact for |v| < 2^22, and plain
// arithmetic, so the candidate loops vectorize without SSE4.1's round instruction.
inline float round_nearest(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

inline float clampf(float v, float lo, float hi) { return std::min(hi, std::max(lo, v)); }

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// ---- Symmetric blocks: x ~ d * q, q in [qmin, qmax] ---------------------------------------

struct SymmetricFit {
  float d = 0;
  double error = 0;
};

// Tries steps d = amax / k for k spread around the largest level, and for each the quants it
// rounds to; scores each set of quants with its least-squares step (the best d for those
// quants), and keeps the best. k runs from top - span/2 to top + span levels: a step smaller
// than amax / top clips the largest element, which often pays for the finer grid elsewhere.
SymmetricFit search_symmetric(const float* x, const float* w, int n, int qmin, int qmax, int steps,
                              float span) {
  float amax = 0;
  double sum_wxx = 0;
  for (int i = 0; i < n; ++i) {
    amax = std::max(amax, std::fabs(x[i]));
    sum_wxx += double(w[i]) * x[i] * x[i];
  }
  SymmetricFit best;
  best.error = sum_wxx;  // d = 0
  if (amax == 0) return best;
  // A negative step maps the largest element onto the other side of the range, which has one
  // level more when the range is asymmetric (Q4_0's -8..7): both signs are tried.
  for (const float sign : {1.0f, -1.0f}) {
    const float top = static_cast<float>(sign > 0 ? qmax : -qmin);
    for (int s = 0; s <= steps; ++s) {
      const float k = top - 0.5f * span + 1.5f * span * static_cast<float>(s) / static_cast<float>(steps);
      if (k <= 0.5f) continue;
      const float inverse = sign * k / amax;
      float sum_wxq = 0, sum_wqq = 0;
      for (int i = 0; i < n; ++i) {
        const float q = clampf(round_nearest(x[i] * inverse), float(qmin), float(qmax));
        sum_wxq += w[i] * x[i] * q;
        sum_wqq += w[i] * q * q;
      }
      if (sum_wqq <= 0) continue;
      const double error = sum_wxx - double(sum_wxq) * sum_wxq / sum_wqq;
      if (error < best.error) {
        best.error = error;
        best.d = sum_wxq / sum_wqq;
      }
    }
  }
  return best;
}

// ---- Asymmetric sub-blocks: x ~ s * q + m, q in [0, qmax], m <= 0 (stored as -m >= 0) -----

struct AffineFit {
  float s = 0, m = 0;
};

// Tries ranges [min(xmin, 0), xmax] split into k steps for k around qmax; for each candidate's
// quants, fits (s, m) by weighted least squares and scores the fit in closed form from the same
// sums (one pass per candidate), keeping the fit with the smallest weighted error.
AffineFit search_affine(const float* x, const float* w, int n, int qmax, int steps, float span) {
  float lo = 0, hi = x[0];
  float sw = 0, swx = 0, swxx = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sw += w[i];
    swx += w[i] * x[i];
    swxx += w[i] * x[i] * x[i];
  }
  AffineFit best{0, lo};
  if (hi <= lo) return best;
  double best_error = INFINITY;
  for (int c = 0; c <= steps; ++c) {
    const float k = float(qmax) - span + 2.0f * span * float(c) / float(steps);
    if (k < 1) continue;
    const float inverse = k / (hi - lo);
    float swq = 0, swqq = 0, swxq = 0;
    for (int i = 0; i < n; ++i) {
      const float q = clampf(round_nearest((x[i] - lo) * inverse), 0.0f, float(qmax));
      swq += w[i] * q;
      swqq += w[i] * q * q;
      swxq += w[i] * x[i] * q;
    }
    // Minimize E(s, m) = sum w (x - s q - m)^2 with m <= 0.
    const double det = double(sw) * swqq - double(swq) * swq;
    double s_fit = 0, m_fit = 0;
    if (det > 0) {
      s_fit = (double(sw) * swxq - double(swq) * swx) / det;
      m_fit = (double(swqq) * swx - double(swq) * swxq) / det;
    }
    if (!(det > 0) || m_fit > 0) {
      m_fit = 0;
      s_fit = swqq > 0 ? swxq / double(swqq) : 0.0;
    }
    if (!(s_fit > 0)) continue;
    const double error = swxx - 2 * s_fit * swxq - 2 * m_fit * swx + s_fit * s_fit * swqq +
                         2 * s_fit * m_fit * swq + m_fit * m_fit * sw;
    if (error < best_error) {
      best_error = error;
      best = {static_cast<float>(s_fit), static_cast<float>(m_fit)};
    }
  }
  return best;
}

// ---- Blocks ------------------------------------------------------------------------------

// Q8_0 (34 bytes): f16 d, 32 int8 quants in [-127, 127].
void block_q8_0(const float* x, const float* w, uint8_t* out) {
  const SymmetricFit fit = search_symmetric(x, w, 32, -127, 127, 2, 4.0f);
  const float d = f16_round(fit.d);
  store_u16_le(out, f32_to_f16(d));
  const float inverse = d != 0 ? 1.0f / d : 0.0f;
  for (int i = 0; i < 32; ++i)
    out[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(clampf(round_nearest(x[i] * inverse), -127, 127)));
}

// Q4_0 (18 bytes): f16 d, then 16 bytes: element j in the low nibble of byte j, j + 16 in the
// high nibble; value = (q - 8) * d.
void block_q4_0(const float* x, const float* w, uint8_t* out) {
  const SymmetricFit fit = search_symmetric(x, w, 32, -8, 7, 16, 3.0f);
  const float d = f16_round(fit.d);
  store_u16_le(out, f32_to_f16(d));
  const float inverse = d != 0 ? 1.0f / d : 0.0f;
  int q[32];
  for (int i = 0; i < 32; ++i) q[i] = static_cast<int>(clampf(round_nearest(x[i] * inverse), -8, 7)) + 8;
  for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

// Packs the 8 six-bit (scale, min) pairs of Q4_K/Q5_K into 12 bytes (the inverse of the
// decoder's k4_scale_min).
void pack_k4_scales(const int* sc, const int* mn, uint8_t* packed) {
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>((sc[j] & 0x3f) | ((sc[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>((mn[j] & 0x3f) | ((mn[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4));
  }
}

// Q4_K (144 bytes): f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
// (bytes [32c, 32c+32): sub-block 2c low nibbles, 2c+1 high). value = d*sc*q - dmin*mn.
void block_q4_k(const float* x, const float* w, uint8_t* out) {
  constexpr int kSub = 8, kLen = 32, kQmax = 15;
  AffineFit fits[kSub];
  float max_s = 0, max_m = 0;
  for (int j = 0; j < kSub; ++j) {
    fits[j] = search_affine(x + kLen * j, w + kLen * j, kLen, kQmax, 16, 1.0f);
    max_s = std::max(max_s, fits[j].s);
    max_m = std::max(max_m, -fits[j].m);
  }
  // Six-bit scales and mins under two f16 super-scales; then (d, dmin) are refit by least
  // squares to the rounded integers and the quants re-rounded, twice.
  float d = f16_round(max_s / 63.0f), dmin = f16_round(max_m / 63.0f);
  int sc[kSub], mn[kSub];
  for (int j = 0; j < kSub; ++j) {
    sc[j] = d > 0 ? static_cast<int>(clampf(round_nearest(fits[j].s / d), 0, 63)) : 0;
    mn[j] = dmin > 0 ? static_cast<int>(clampf(round_nearest(-fits[j].m / dmin), 0, 63)) : 0;
  }
  float q[256];
  auto requantize = [&] {
    for (int j = 0; j < kSub; ++j) {
      const float step = d * float(sc[j]), offset = dmin * float(mn[j]);
      const float inverse = step > 0 ? 1.0f / step : 0.0f;
      for (int i = 0; i < kLen; ++i)
        q[kLen * j + i] = clampf(round_nearest((x[kLen * j + i] + offset) * inverse), 0, kQmax);
    }
  };
  requantize();
  for (int pass = 0; pass < 2; ++pass) {
    // x ~ d * a - dmin * b with a = sc*q, b = mn: 2x2 normal equations.
    double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int i = 0; i < 256; ++i) {
      const double a = double(sc[i / kLen]) * q[i], b = mn[i / kLen], wi = w[i];
      saa += wi * a * a;
      sab += wi * a * b;
      sbb += wi * b * b;
      sxa += wi * x[i] * a;
      sxb += wi * x[i] * b;
    }
    const double det = saa * sbb - sab * sab;
    float nd = d, ndmin = dmin;
    if (det > 1e-30 * saa * sbb && det > 0) {
      nd = static_cast<float>((sxa * sbb - sxb * sab) / det);
      ndmin = static_cast<float>(-(saa * sxb - sab * sxa) / det);
    } else if (saa > 0 && sbb == 0) {
      nd = static_cast<float>(sxa / saa);
    }
    if (!(nd > 0) || !(ndmin >= 0)) break;
    d = f16_round(nd);
    dmin = f16_round(ndmin);
    requantize();
  }
  store_u16_le(out, f32_to_f16(d));
  store_u16_le(out + 2, f32_to_f16(dmin));
  pack_k4_scales(sc, mn, out + 4);
  uint8_t* qs = out + 16;
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = static_cast<uint8_t>(int(q[64 * c + l]) | (int(q[64 * c + 32 + l]) << 4));
}

// Q6_K (210 bytes): ql[128], qh[64], int8 scales[16], f16 d; 16 sub-blocks of 16 with
// value = d * scale * (q - 32). See decode_q6_k for where each quant's bits go.
void block_q6_k(const float* x, const float* w, uint8_t* out) {
  constexpr int kSub = 16, kLen = 16;
  float s[kSub], max_s = 0;
  for (int j = 0; j < kSub; ++j) {
    s[j] = search_symmetric(x + kLen * j, w + kLen * j, kLen, -32, 31, 8, 6.0f).d;
    max_s = std::max(max_s, std::fabs(s[j]));
  }
  float d = f16_round(max_s / 127.0f);
  int sc[kSub];
  for (int j = 0; j < kSub; ++j) sc[j] = d > 0 ? static_cast<int>(clampf(round_nearest(s[j] / d), -127, 127)) : 0;
  int q[256];
  auto requantize = [&] {
    for (int i = 0; i < 256; ++i) {
      const float step = d * float(sc[i / kLen]);
      q[i] = step != 0 ? static_cast<int>(clampf(round_nearest(x[i] / step), -32, 31)) : 0;
    }
  };
  requantize();
  // Refit the super-scale to the rounded integer scales: x ~ d * (sc * q).
  double sxa = 0, saa = 0;
  for (int i = 0; i < 256; ++i) {
    const double a = double(sc[i / kLen]) * q[i];
    sxa += double(w[i]) * x[i] * a;
    saa += double(w[i]) * a * a;
  }
  if (saa > 0 && sxa > 0) {  // d stays positive: the signs live in the scales
    d = f16_round(static_cast<float>(sxa / saa));
    requantize();
  }
  uint8_t* ql = out;
  uint8_t* qh = out + 128;
  std::memset(ql, 0, 192);
  for (int i = 0; i < 256; ++i) {
    const int u = q[i] + 32;                  // 0..63
    const int half = i / 128, r = i % 128;    // r = 32 * group + l
    const int group = r / 32, l = r % 32;
    ql[64 * half + 32 * (group % 2) + l] |= static_cast<uint8_t>((u & 0x0f) << (4 * (group / 2)));
    qh[32 * half + l] |= static_cast<uint8_t>((u >> 4) << (2 * group));
  }
  for (int j = 0; j < kSub; ++j) out[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
  store_u16_le(out + 208, f32_to_f16(d));
}

using BlockQuantizer = void (*)(const float* x, const float* w, uint8_t* out);

template <BlockQuantizer quantize, int kElements, int kBytes>
void quantize_blocks(const float* x, const float* importance, uint8_t* out, int64_t n) {
  float ones[kElements];
  std::fill(ones, ones + kElements, 1.0f);
  for (int64_t b = 0; b < n / kElements; ++b)
    quantize(x + b * kElements, importance ? importance + b * kElements : ones, out + b * kBytes);
}

}  // namespace

void quantize_row_search(DType type, const float* x, const float* importance, void* dst, int64_t n) {
  const DTypeTraits t = traits(type);
  if (n < 0 || n % t.block_elements != 0)
    fail("quantize ", t.name, ": ", n, " elements is not a whole number of ", t.block_elements, "-element blocks");
  auto* out = static_cast<uint8_t*>(dst);
  switch (type) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) std::memcpy(out + 4 * i, &x[i], 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) store_u16_le(out + 2 * i, f32_to_f16(x[i]));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) store_u16_le(out + 2 * i, f32_to_bf16(x[i]));
      return;
    case DType::Q8_0: return quantize_blocks<block_q8_0, 32, 34>(x, importance, out, n);
    case DType::Q4_0: return quantize_blocks<block_q4_0, 32, 18>(x, importance, out, n);
    case DType::Q4_K: return quantize_blocks<block_q4_k, 256, 144>(x, importance, out, n);
    case DType::Q6_K: return quantize_blocks<block_q6_k, 256, 210>(x, importance, out, n);
    default: fail("quantize: cannot write type ", t.name);
  }
}

}  // namespace orchard
