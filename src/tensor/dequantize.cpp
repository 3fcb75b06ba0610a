#include "tensor/dequantize.h"

#include "base/error.h"
#include "base/half.h"
#include "tensor/le_bytes.h"

// The formulas follow the operation order of the formats' reference decoders (ggml's
// dequantize_row_*). The order cannot change a result anyway: an f16 scale has 11 significant
// bits and the integers it meets (6-bit scale times quant, int8 scale times 6-bit quant, ...)
// at most 13, so every product is exact in float32 and only a final `+ m` or `- dmin * min`
// rounds, once. A fused multiply-add gives the same bits for the same reason.

namespace orchard {
namespace {

// ---- Plain floats -------------------------------------------------------------------------

void decode_f32(const uint8_t* p, float* out) { *out = f32_from_bits(load_u32_le(p)); }
void decode_f16(const uint8_t* p, float* out) { *out = f16_to_f32(load_u16_le(p)); }
void decode_bf16(const uint8_t* p, float* out) { *out = bf16_to_f32(load_u16_le(p)); }

// ---- 32-element blocks --------------------------------------------------------------------
// In all of them byte j of `qs` holds element j in its low nibble and element j + 16 in its
// high nibble.

// Q4_0, 18 bytes:
//   [0, 2)   f16 d        step
//   [2, 18)  u8 qs[16]    4-bit quants q in 0..15
// value = (q - 8) * d
void decode_q4_0(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
    out[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1, 20 bytes:
//   [0, 2)   f16 d        step
//   [2, 4)   f16 m        value of quant 0 (the block minimum)
//   [4, 20)  u8 qs[16]    4-bit quants q in 0..15
// value = q * d + m
void decode_q4_1(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const float m = load_f16_le(block + 2);
  const uint8_t* qs = block + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
    out[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Bit 4 of the 5-bit quant of element j: bit j of the little-endian u32 `qh`.
int fifth_bit(uint32_t qh, int j) { return static_cast<int>((qh >> j) & 1u) << 4; }

// Q5_0, 22 bytes:
//   [0, 2)   f16 d        step
//   [2, 6)   u32 qh       bit j = bit 4 of element j's quant
//   [6, 22)  u8 qs[16]    low 4 bits of the quants; q in 0..31
// value = (q - 16) * d
void decode_q5_0(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const uint32_t qh = load_u32_le(block + 2);
  const uint8_t* qs = block + 6;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(((qs[j] & 0x0f) | fifth_bit(qh, j)) - 16) * d;
    out[j + 16] = static_cast<float>(((qs[j] >> 4) | fifth_bit(qh, j + 16)) - 16) * d;
  }
}

// Q5_1, 24 bytes:
//   [0, 2)   f16 d        step
//   [2, 4)   f16 m        value of quant 0
//   [4, 8)   u32 qh       bit j = bit 4 of element j's quant
//   [8, 24)  u8 qs[16]    low 4 bits of the quants; q in 0..31
// value = q * d + m
void decode_q5_1(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const float m = load_f16_le(block + 2);
  const uint32_t qh = load_u32_le(block + 4);
  const uint8_t* qs = block + 8;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((qs[j] & 0x0f) | fifth_bit(qh, j)) * d + m;
    out[j + 16] = static_cast<float>((qs[j] >> 4) | fifth_bit(qh, j + 16)) * d + m;
  }
}

// Q8_0, 34 bytes:
//   [0, 2)   f16 d        step
//   [2, 34)  i8 qs[32]    quants
// value = q * d
void decode_q8_0(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(qs[j])) * d;
}

// IQ4_NL, 18 bytes:
//   [0, 2)   f16 d        step
//   [2, 18)  u8 qs[16]    4-bit indices into kIq4Values
// value = d * kIq4Values[q]
void decode_iq4_nl(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>(kIq4Values[qs[j] & 0x0f]);
    out[j + 16] = d * static_cast<float>(kIq4Values[qs[j] >> 4]);
  }
}

// ---- 256-element super-blocks (K-quants) --------------------------------------------------
// Q2_K and Q3_K spread 2-bit quants the same way: the super-block is two halves of 128
// elements; half h uses qs bytes [32h, 32h + 32), and its 32-element group g (0..3) takes bits
// 2g..2g+1 of those bytes, element l of the group from byte l.

// Q2_K, 84 bytes, 16 sub-blocks of 16 elements:
//   [0, 16)   u8 scales[16]  sub-block s: low nibble = its scale, high nibble = its min
//   [16, 80)  u8 qs[64]      2-bit quants q in 0..3, laid out as above
//   [80, 82)  f16 d          multiplies the scales
//   [82, 84)  f16 dmin       multiplies the mins
// value = (d * scale) * q - (dmin * min)
void decode_q2_k(const uint8_t* block, float* out) {
  const uint8_t* scales = block;
  const uint8_t* qs = block + 16;
  const float d = load_f16_le(block + 80);
  const float dmin = load_f16_le(block + 82);
  for (int sub = 0; sub < 16; ++sub) {
    const int half = sub / 8;
    const int shift = 2 * ((sub % 8) / 2);
    const uint8_t* q = qs + 32 * half + 16 * (sub % 2);
    const float step = d * static_cast<float>(scales[sub] & 0x0f);
    const float offset = dmin * static_cast<float>(scales[sub] >> 4);
    for (int l = 0; l < 16; ++l) *out++ = step * static_cast<float>((q[l] >> shift) & 3) - offset;
  }
}

// Q3_K, 110 bytes, 16 sub-blocks of 16 elements:
//   [0, 32)    u8 hmask[32]   bit b of byte l: high bit of element 32b + l
//   [32, 96)   u8 qs[64]      low 2 bits of the quants, laid out as in Q2_K
//   [96, 108)  u8 scales[12]  16 signed 6-bit scales (see q3_k_scale)
//   [108, 110) f16 d          multiplies the scales
// The 3-bit quant is q = low2 - 4 when the high bit is clear, low2 when set (so -4..3).
// value = (d * scale) * q
void decode_q3_k(const uint8_t* block, float* out) {
  const uint8_t* hmask = block;
  const uint8_t* qs = block + 32;
  const uint8_t* scales = block + 96;
  const float d = load_f16_le(block + 108);
  for (int sub = 0; sub < 16; ++sub) {
    const int half = sub / 8;
    const int shift = 2 * ((sub % 8) / 2);
    const int high_bit = sub / 2;  // element index / 32
    const uint8_t* q = qs + 32 * half + 16 * (sub % 2);
    const uint8_t* h = hmask + 16 * (sub % 2);
    const float step = d * static_cast<float>(q3_k_scale(scales, sub));
    for (int l = 0; l < 16; ++l) {
      const int low2 = (q[l] >> shift) & 3;
      const int quant = low2 - (((h[l] >> high_bit) & 1) ? 0 : 4);
      *out++ = step * static_cast<float>(quant);
    }
  }
}

// IQ4_XS, 136 bytes, 8 sub-blocks of 32 elements:
//   [0, 2)     f16 d          multiplies the scales
//   [2, 4)     u16 scales_h   bits 2k..2k+1: high 2 bits of sub-block k's scale
//   [4, 8)     u8 scales_l[4] low 4 bits of sub-block k's scale: byte k / 2, nibble k % 2
//   [8, 136)   u8 qs[128]     sub-block k: 16 bytes laid out as IQ4_NL's
// Scales are 6-bit with a bias of 32 (iq4_xs_scale). value = (d * scale) * kIq4Values[q]
void decode_iq4_xs(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  for (int k = 0; k < 8; ++k) {
    const float step = d * static_cast<float>(iq4_xs_scale(block, k));
    const uint8_t* qs = block + 8 + 16 * k;
    for (int j = 0; j < 16; ++j) {
      out[32 * k + j] = step * static_cast<float>(kIq4Values[qs[j] & 0x0f]);
      out[32 * k + j + 16] = step * static_cast<float>(kIq4Values[qs[j] >> 4]);
    }
  }
}

struct ScaleMin {
  int scale;
  int min;
};

// The 8 six-bit (scale, min) pairs of Q4_K and Q5_K, packed in 12 bytes:
//   bytes 0-3:  low 6 bits = scales 0-3; top 2 bits = high bits of scales 4-7
//   bytes 4-7:  low 6 bits = mins 0-3;   top 2 bits = high bits of mins 4-7
//   bytes 8-11: low nibble = low 4 bits of scales 4-7; high nibble = low 4 bits of mins 4-7
ScaleMin k4_scale_min(const uint8_t* packed, int j) {
  if (j < 4) return {packed[j] & 0x3f, packed[j + 4] & 0x3f};
  return {(packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
          (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4)};
}

// Q4_K, 144 bytes, 8 sub-blocks of 32 elements:
//   [0, 2)     f16 d          multiplies the scales
//   [2, 4)     f16 dmin       multiplies the mins
//   [4, 16)    u8 scales[12]  (scale, min) per sub-block (see k4_scale_min)
//   [16, 144)  u8 qs[128]     4-bit quants: bytes [32c, 32c + 32) hold sub-block 2c in their
//                             low nibbles and sub-block 2c + 1 in their high nibbles
// value = (d * scale) * q - (dmin * min)
void decode_q4_k(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const float dmin = load_f16_le(block + 2);
  const uint8_t* scales = block + 4;
  const uint8_t* qs = block + 16;
  for (int sub = 0; sub < 8; ++sub) {
    const ScaleMin sm = k4_scale_min(scales, sub);
    const float step = d * static_cast<float>(sm.scale);
    const float offset = dmin * static_cast<float>(sm.min);
    const uint8_t* q = qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) *out++ = step * static_cast<float>((q[l] >> shift) & 0x0f) - offset;
  }
}

// Q5_K, 176 bytes, 8 sub-blocks of 32 elements:
//   [0, 2)     f16 d          multiplies the scales
//   [2, 4)     f16 dmin       multiplies the mins
//   [4, 16)    u8 scales[12]  (scale, min) per sub-block (see k4_scale_min)
//   [16, 48)   u8 qh[32]      bit b of byte l: bit 4 of element 32b + l's quant
//   [48, 176)  u8 qs[128]     low 4 bits of the quants, laid out as in Q4_K; q in 0..31
// value = (d * scale) * q - (dmin * min)
void decode_q5_k(const uint8_t* block, float* out) {
  const float d = load_f16_le(block);
  const float dmin = load_f16_le(block + 2);
  const uint8_t* scales = block + 4;
  const uint8_t* qh = block + 16;
  const uint8_t* qs = block + 48;
  for (int sub = 0; sub < 8; ++sub) {
    const ScaleMin sm = k4_scale_min(scales, sub);
    const float step = d * static_cast<float>(sm.scale);
    const float offset = dmin * static_cast<float>(sm.min);
    const uint8_t* q = qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) {
      const int quant = ((q[l] >> shift) & 0x0f) | (((qh[l] >> sub) & 1) << 4);
      *out++ = step * static_cast<float>(quant) - offset;
    }
  }
}

// Q6_K, 210 bytes, 16 sub-blocks of 16 elements, in two halves of 128:
//   [0, 128)    u8 ql[128]    low 4 bits: half h uses bytes [64h, 64h + 64); its 32-element
//                             group g takes byte 64h + 32 * (g % 2) + l, low nibble for g < 2
//   [128, 192)  u8 qh[64]     high 2 bits: group g of half h takes bits 2g..2g+1 of byte 32h + l
//   [192, 208)  i8 scales[16] one per sub-block
//   [208, 210)  f16 d         multiplies the scales
// The 6-bit quant is stored with a bias of 32 (so -32..31). value = (d * scale) * q
void decode_q6_k(const uint8_t* block, float* out) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const uint8_t* scales = block + 192;
  const float d = load_f16_le(block + 208);
  for (int sub = 0; sub < 16; ++sub) {
    const int half = sub / 8;
    const int group = (sub % 8) / 2;
    const uint8_t* low = ql + 64 * half + 32 * (group % 2) + 16 * (sub % 2);
    const uint8_t* high = qh + 32 * half + 16 * (sub % 2);
    const int low_shift = 4 * (group / 2);
    const int high_shift = 2 * group;
    const float scale = static_cast<float>(static_cast<int8_t>(scales[sub]));
    for (int l = 0; l < 16; ++l) {
      const int quant = (((low[l] >> low_shift) & 0x0f) | (((high[l] >> high_shift) & 3) << 4)) - 32;
      *out++ = d * scale * static_cast<float>(quant);
    }
  }
}

// ---- Rows ---------------------------------------------------------------------------------

using BlockDecoder = void (*)(const uint8_t* block, float* out);

// A template parameter rather than a function pointer argument, so each decoder is inlined.
template <BlockDecoder decode>
void decode_blocks(const uint8_t* src, float* dst, int64_t blocks, const DTypeTraits& t) {
  for (int64_t b = 0; b < blocks; ++b) {
    decode(src + b * static_cast<int64_t>(t.block_bytes), dst + b * t.block_elements);
  }
}

}  // namespace

// The 16 six-bit scales of Q3_K, packed in 12 bytes: scale k keeps its low 4 bits in byte k % 8
// (low nibble for k < 8, high nibble otherwise) and its high 2 bits in byte 8 + k % 4 at bits
// 2 * (k / 4). Stored with a bias of 32.
int q3_k_scale(const uint8_t* packed, int k) {
  const int low = (packed[k % 8] >> (4 * (k / 8))) & 0x0f;
  const int high = (packed[8 + k % 4] >> (2 * (k / 4))) & 0x03;
  return (low | (high << 4)) - 32;
}

const int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

int iq4_xs_scale(const uint8_t* block, int k) {
  const int low = (block[4 + k / 2] >> (4 * (k % 2))) & 0x0f;
  const int high = (load_u16_le(block + 2) >> (2 * k)) & 0x03;
  return (low | (high << 4)) - 32;
}

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  const DTypeTraits t = traits(type);
  if (n < 0 || n % t.block_elements != 0)
    fail("dequantize_row: ", n, " elements of ", t.name, " is not a whole number of ",
         t.block_elements, "-element blocks");
  const auto* bytes = static_cast<const uint8_t*>(src);
  const int64_t blocks = n / t.block_elements;
  switch (type) {
    case DType::F32: return decode_blocks<decode_f32>(bytes, dst, blocks, t);
    case DType::F16: return decode_blocks<decode_f16>(bytes, dst, blocks, t);
    case DType::BF16: return decode_blocks<decode_bf16>(bytes, dst, blocks, t);
    case DType::Q4_0: return decode_blocks<decode_q4_0>(bytes, dst, blocks, t);
    case DType::Q4_1: return decode_blocks<decode_q4_1>(bytes, dst, blocks, t);
    case DType::Q5_0: return decode_blocks<decode_q5_0>(bytes, dst, blocks, t);
    case DType::Q5_1: return decode_blocks<decode_q5_1>(bytes, dst, blocks, t);
    case DType::Q8_0: return decode_blocks<decode_q8_0>(bytes, dst, blocks, t);
    case DType::Q2_K: return decode_blocks<decode_q2_k>(bytes, dst, blocks, t);
    case DType::Q3_K: return decode_blocks<decode_q3_k>(bytes, dst, blocks, t);
    case DType::Q4_K: return decode_blocks<decode_q4_k>(bytes, dst, blocks, t);
    case DType::Q5_K: return decode_blocks<decode_q5_k>(bytes, dst, blocks, t);
    case DType::Q6_K: return decode_blocks<decode_q6_k>(bytes, dst, blocks, t);
    case DType::IQ4_NL: return decode_blocks<decode_iq4_nl>(bytes, dst, blocks, t);
    case DType::IQ4_XS: return decode_blocks<decode_iq4_xs>(bytes, dst, blocks, t);
    default: break;
  }
  fail("dequantize_row: tensor type ", t.name, " is not a weight type Orchard can dequantize");
}

}  // namespace orchard
