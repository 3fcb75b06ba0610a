// Hand-built blocks: the bytes are written here from the block layouts (ggml's block_* structs),
// element by element, and the expected values come from each format's formula in float32. The
// products involved are exact (f16 scale times small integers); the random-block tests use scales
// with full f16 mantissas so that the final `+ m` / `- dmin * min` rounds as it does in real files.
#include "tensor/dequantize.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "orchard/error.h"

namespace orchard {
namespace {

using Bytes = std::vector<uint8_t>;

void put_f16(Bytes& block, size_t at, float value) {
  const uint16_t h = f32_to_f16(value);
  ASSERT_EQ(f16_to_f32(h), value) << "test scale must be exact in f16";
  block[at] = static_cast<uint8_t>(h & 0xff);
  block[at + 1] = static_cast<uint8_t>(h >> 8);
}

// Sets `value` at bit `shift` of byte `at` (bits there must still be zero).
void put_bits(Bytes& block, size_t at, int shift, int value) {
  block[at] = static_cast<uint8_t>(block[at] | (value << shift));
}

// Decodes the concatenation of `blocks` starting one byte into the buffer, so that every
// multi-byte field is misaligned.
std::vector<float> decode_unaligned(DType type, const std::vector<Bytes>& blocks,
                                    int64_t block_elements) {
  Bytes buffer(1);
  for (const Bytes& b : blocks) buffer.insert(buffer.end(), b.begin(), b.end());
  const int64_t n = block_elements * static_cast<int64_t>(blocks.size());
  std::vector<float> out(static_cast<size_t>(n), -12345.0f);
  dequantize_row(type, buffer.data() + 1, out.data(), n);
  return out;
}

struct Case {
  Bytes bytes;
  std::vector<float> expected;
};

// Builds `count` blocks with `make(block_index, rng)`, decodes them as one row and compares
// every element.
void check_blocks(DType type, int64_t block_elements, size_t block_bytes, int count,
                  const std::function<Case(int, std::mt19937&)>& make) {
  std::mt19937 rng(1234);
  std::vector<Bytes> blocks;
  std::vector<float> expected;
  for (int b = 0; b < count; ++b) {
    Case c = make(b, rng);
    ASSERT_EQ(c.bytes.size(), block_bytes);
    ASSERT_EQ(c.expected.size(), static_cast<size_t>(block_elements));
    blocks.push_back(std::move(c.bytes));
    expected.insert(expected.end(), c.expected.begin(), c.expected.end());
  }
  const std::vector<float> got = decode_unaligned(type, blocks, block_elements);
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(got[i], expected[i]) << dtype_name(type) << " element " << i << " (block "
                                   << i / block_elements << ", index "
                                   << i % block_elements << ")";
  }
}

int uniform(std::mt19937& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// A float32 product rounded once (the exact product of two floats fits in a double), written so
// that the compiler cannot fuse it with a following addition.
float mul(float a, float b) { return static_cast<float>(static_cast<double>(a) * b); }
float mul(float a, int b) { return mul(a, static_cast<float>(b)); }

float f16_rounded(float x) { return f16_to_f32(f32_to_f16(x)); }

// Per-block scales (as stored in f16), different per block to catch block-stride errors.
const float kScales[] = {f16_rounded(0.1f), f16_rounded(-1.3f), 0.375f};
const float kMins[] = {f16_rounded(0.0371f), 0.125f, f16_rounded(-0.77f)};

// ---- Random blocks against the formula ----------------------------------------------------

TEST(DequantizeBlocks, Q4_0) {
  // f16 d | 16 bytes: element e in byte e % 16, nibble e / 16. value = (q - 8) * d.
  check_blocks(DType::Q4_0, 32, 18, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(18), {}};
    put_f16(c.bytes, 0, kScales[b]);
    for (int e = 0; e < 32; ++e) {
      const int q = uniform(rng, 0, 15);
      put_bits(c.bytes, 2 + e % 16, 4 * (e / 16), q);
      c.expected.push_back(mul(kScales[b], q - 8));
    }
    return c;
  });
}

TEST(DequantizeBlocks, Q4_1) {
  // f16 d | f16 m | 16 bytes of nibbles as Q4_0. value = q * d + m.
  check_blocks(DType::Q4_1, 32, 20, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(20), {}};
    put_f16(c.bytes, 0, kScales[b]);
    put_f16(c.bytes, 2, kMins[b]);
    for (int e = 0; e < 32; ++e) {
      const int q = uniform(rng, 0, 15);
      put_bits(c.bytes, 4 + e % 16, 4 * (e / 16), q);
      c.expected.push_back(mul(kScales[b], q) + kMins[b]);
    }
    return c;
  });
}

TEST(DequantizeBlocks, Q5_0) {
  // f16 d | 4 bytes: bit e = bit 4 of element e | nibbles as Q4_0. value = (q - 16) * d.
  check_blocks(DType::Q5_0, 32, 22, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(22), {}};
    put_f16(c.bytes, 0, kScales[b]);
    for (int e = 0; e < 32; ++e) {
      const int q = uniform(rng, 0, 31);
      put_bits(c.bytes, 2 + e / 8, e % 8, q >> 4);
      put_bits(c.bytes, 6 + e % 16, 4 * (e / 16), q & 15);
      c.expected.push_back(mul(kScales[b], q - 16));
    }
    return c;
  });
}

TEST(DequantizeBlocks, Q5_1) {
  // f16 d | f16 m | 4 bytes of high bits | nibbles. value = q * d + m.
  check_blocks(DType::Q5_1, 32, 24, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(24), {}};
    put_f16(c.bytes, 0, kScales[b]);
    put_f16(c.bytes, 2, kMins[b]);
    for (int e = 0; e < 32; ++e) {
      const int q = uniform(rng, 0, 31);
      put_bits(c.bytes, 4 + e / 8, e % 8, q >> 4);
      put_bits(c.bytes, 8 + e % 16, 4 * (e / 16), q & 15);
      c.expected.push_back(mul(kScales[b], q) + kMins[b]);
    }
    return c;
  });
}

TEST(DequantizeBlocks, Q8_0) {
  // f16 d | 32 int8. value = q * d.
  check_blocks(DType::Q8_0, 32, 34, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(34), {}};
    put_f16(c.bytes, 0, kScales[b]);
    for (int e = 0; e < 32; ++e) {
      const int q = uniform(rng, -128, 127);
      c.bytes[2 + e] = static_cast<uint8_t>(q & 0xff);
      c.expected.push_back(mul(kScales[b], q));
    }
    return c;
  });
}

// Byte and shift of element e's 2-bit field in the 64-byte quant array of Q2_K / Q3_K: each
// 128-element half owns 32 bytes; within a half, consecutive runs of 32 elements take bit pairs
// 0-1, 2-3, 4-5, 6-7 of those bytes.
int two_bit_byte(int e) { return 32 * (e / 128) + e % 32; }
int two_bit_shift(int e) { return 2 * ((e % 128) / 32); }

TEST(DequantizeBlocks, Q2_K) {
  // 16 bytes (scale | min << 4) per 16 elements | 64 bytes quants | f16 d | f16 dmin.
  // value = d * scale * q - dmin * min
  check_blocks(DType::Q2_K, 256, 84, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(84), {}};
    const float d = kScales[b], dmin = kMins[b];
    put_f16(c.bytes, 80, d);
    put_f16(c.bytes, 82, dmin);
    int scale[16], min[16];
    for (int s = 0; s < 16; ++s) {
      scale[s] = uniform(rng, 0, 15);
      min[s] = uniform(rng, 0, 15);
      c.bytes[s] = static_cast<uint8_t>(scale[s] | (min[s] << 4));
    }
    for (int e = 0; e < 256; ++e) {
      const int q = uniform(rng, 0, 3);
      put_bits(c.bytes, 16 + two_bit_byte(e), two_bit_shift(e), q);
      c.expected.push_back(mul(mul(d, scale[e / 16]), q) - mul(dmin, min[e / 16]));
    }
    return c;
  });
}

// Q3_K's 16 six-bit scales in 12 bytes: bytes 0-7 hold the low 4 bits of scales 0-7 (low
// nibbles) and 8-15 (high nibbles); byte 8 + i holds the high 2 bits of scales i, i + 4, i + 8,
// i + 12 at bits 0, 2, 4, 6.
void put_q3_k_scales(Bytes& block, size_t at, const int raw[16]) {
  for (int i = 0; i < 8; ++i) block[at + i] = static_cast<uint8_t>((raw[i] & 15) | ((raw[i + 8] & 15) << 4));
  for (int i = 0; i < 4; ++i) {
    int high = 0;
    for (int k = 0; k < 4; ++k) high |= (raw[i + 4 * k] >> 4) << (2 * k);
    block[at + 8 + i] = static_cast<uint8_t>(high);
  }
}

TEST(DequantizeBlocks, Q3_K) {
  // 32 bytes hmask | 64 bytes low 2 bits | 12 bytes scales | f16 d.
  // q = (low2 | high << 2) - 4, scale = raw - 32, value = d * scale * q
  check_blocks(DType::Q3_K, 256, 110, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(110), {}};
    const float d = kScales[b];
    put_f16(c.bytes, 108, d);
    int raw[16];
    for (int& r : raw) r = uniform(rng, 0, 63);
    put_q3_k_scales(c.bytes, 96, raw);
    for (int e = 0; e < 256; ++e) {
      const int q = uniform(rng, -4, 3);
      const int stored = q + 4;
      put_bits(c.bytes, e % 32, e / 32, stored >> 2);  // hmask: byte e % 32, bit e / 32
      put_bits(c.bytes, 32 + two_bit_byte(e), two_bit_shift(e), stored & 3);
      c.expected.push_back(mul(mul(d, raw[e / 16] - 32), q));
    }
    return c;
  });
}

// Q4_K / Q5_K's 8 (scale, min) pairs of 6 bits in 12 bytes: byte i (i < 4) = scale i | high 2
// bits of scale i + 4 at bit 6; byte 4 + i = min i | high 2 bits of min i + 4 at bit 6;
// byte 8 + i = low 4 bits of scale i + 4 | low 4 bits of min i + 4 at bit 4.
void put_k4_scales(Bytes& block, size_t at, const int scale[8], const int min[8]) {
  for (int i = 0; i < 4; ++i) {
    block[at + i] = static_cast<uint8_t>(scale[i] | ((scale[i + 4] >> 4) << 6));
    block[at + 4 + i] = static_cast<uint8_t>(min[i] | ((min[i + 4] >> 4) << 6));
    block[at + 8 + i] = static_cast<uint8_t>((scale[i + 4] & 15) | ((min[i + 4] & 15) << 4));
  }
}

// Q4_K / Q5_K nibbles: 64-element chunks share 32 bytes, first 32 elements in the low nibbles.
int k4_nibble_byte(int e) { return 32 * (e / 64) + e % 32; }
int k4_nibble_shift(int e) { return 4 * ((e / 32) % 2); }

TEST(DequantizeBlocks, Q4_K) {
  // f16 d | f16 dmin | 12 bytes scales | 128 bytes nibbles. value = d * scale * q - dmin * min
  check_blocks(DType::Q4_K, 256, 144, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(144), {}};
    const float d = kScales[b], dmin = kMins[b];
    put_f16(c.bytes, 0, d);
    put_f16(c.bytes, 2, dmin);
    int scale[8], min[8];
    for (int s = 0; s < 8; ++s) {
      scale[s] = uniform(rng, 0, 63);
      min[s] = uniform(rng, 0, 63);
    }
    put_k4_scales(c.bytes, 4, scale, min);
    for (int e = 0; e < 256; ++e) {
      const int q = uniform(rng, 0, 15);
      put_bits(c.bytes, 16 + k4_nibble_byte(e), k4_nibble_shift(e), q);
      c.expected.push_back(mul(mul(d, scale[e / 32]), q) - mul(dmin, min[e / 32]));
    }
    return c;
  });
}

TEST(DequantizeBlocks, Q5_K) {
  // f16 d | f16 dmin | 12 bytes scales | 32 bytes high bits (byte e % 32, bit e / 32) |
  // 128 bytes nibbles as Q4_K. value = d * scale * q - dmin * min
  check_blocks(DType::Q5_K, 256, 176, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(176), {}};
    const float d = kScales[b], dmin = kMins[b];
    put_f16(c.bytes, 0, d);
    put_f16(c.bytes, 2, dmin);
    int scale[8], min[8];
    for (int s = 0; s < 8; ++s) {
      scale[s] = uniform(rng, 0, 63);
      min[s] = uniform(rng, 0, 63);
    }
    put_k4_scales(c.bytes, 4, scale, min);
    for (int e = 0; e < 256; ++e) {
      const int q = uniform(rng, 0, 31);
      put_bits(c.bytes, 16 + e % 32, e / 32, q >> 4);
      put_bits(c.bytes, 48 + k4_nibble_byte(e), k4_nibble_shift(e), q & 15);
      c.expected.push_back(mul(mul(d, scale[e / 32]), q) - mul(dmin, min[e / 32]));
    }
    return c;
  });
}

TEST(DequantizeBlocks, Q6_K) {
  // 128 bytes low nibbles | 64 bytes high bit pairs | 16 int8 scales | f16 d.
  // Element e = 128 h + 32 g + l: low nibble in byte 64 h + 32 (g % 2) + l (high nibble when
  // g >= 2), high bits at bit 2 g of byte 128 + 32 h + l. q = stored - 32, value = d * scale * q
  check_blocks(DType::Q6_K, 256, 210, 3, [](int b, std::mt19937& rng) {
    Case c{Bytes(210), {}};
    const float d = kScales[b];
    put_f16(c.bytes, 208, d);
    int scale[16];
    for (int s = 0; s < 16; ++s) {
      scale[s] = uniform(rng, -128, 127);
      c.bytes[192 + s] = static_cast<uint8_t>(scale[s] & 0xff);
    }
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const int q = uniform(rng, -32, 31);
      const int stored = q + 32;
      put_bits(c.bytes, 64 * h + 32 * (g % 2) + l, 4 * (g / 2), stored & 15);
      put_bits(c.bytes, 128 + 32 * h + l, 2 * g, stored >> 4);
      c.expected.push_back(mul(mul(d, scale[e / 16]), q));
    }
    return c;
  });
}

// ---- All bits set: every field at its maximum ----------------------------------------------

// A block of 0xff bytes with the f16 fields at `f16_at` replaced by `f16_values`.
std::vector<float> decode_all_ones(DType type, size_t bytes, int64_t n,
                                   const std::vector<std::pair<size_t, float>>& f16_fields) {
  Bytes block(bytes, 0xff);
  for (auto [at, value] : f16_fields) put_f16(block, at, value);
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(type, block.data(), out.data(), n);
  return out;
}

void expect_all(const std::vector<float>& values, float expected, const char* what) {
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(values[i], expected) << what << " element " << i;
}

TEST(DequantizeAllBitsSet, EveryType) {
  // Q4_0: q = 15 -> 15 - 8 = 7
  expect_all(decode_all_ones(DType::Q4_0, 18, 32, {{0, 0.5f}}), 3.5f, "Q4_0");
  // Q4_1: q = 15 -> 15 d + m
  expect_all(decode_all_ones(DType::Q4_1, 20, 32, {{0, 0.5f}, {2, 1.0f}}), 8.5f, "Q4_1");
  // Q5_0: q = 31 -> 31 - 16 = 15
  expect_all(decode_all_ones(DType::Q5_0, 22, 32, {{0, 0.5f}}), 7.5f, "Q5_0");
  // Q5_1: q = 31 -> 31 d + m
  expect_all(decode_all_ones(DType::Q5_1, 24, 32, {{0, 0.5f}, {2, 1.0f}}), 16.5f, "Q5_1");
  // Q8_0: int8 0xff = -1
  expect_all(decode_all_ones(DType::Q8_0, 34, 32, {{0, 0.5f}}), -0.5f, "Q8_0");
  // Q2_K: scale 15, min 15, q 3 -> 1 * 15 * 3 - 0.5 * 15
  expect_all(decode_all_ones(DType::Q2_K, 84, 256, {{80, 1.0f}, {82, 0.5f}}), 37.5f, "Q2_K");
  // Q3_K: scale 63 - 32 = 31, q = 7 - 4 = 3
  expect_all(decode_all_ones(DType::Q3_K, 110, 256, {{108, 1.0f}}), 93.0f, "Q3_K");
  // Q4_K: scale 63, min 63, q 15 -> 63 * 15 - 0.5 * 63
  expect_all(decode_all_ones(DType::Q4_K, 144, 256, {{0, 1.0f}, {2, 0.5f}}), 913.5f, "Q4_K");
  // Q5_K: q 31 -> 63 * 31 - 0.5 * 63
  expect_all(decode_all_ones(DType::Q5_K, 176, 256, {{0, 1.0f}, {2, 0.5f}}), 1921.5f, "Q5_K");
  // Q6_K: int8 scale -1, q 63 - 32 = 31
  expect_all(decode_all_ones(DType::Q6_K, 210, 256, {{208, 1.0f}}), -31.0f, "Q6_K");
}

// ---- One field set by hand ------------------------------------------------------------------
// Positions worked out on paper from the layouts; everything else in the block decodes to 0.

TEST(DequantizeOneElement, Q5_0HighBit) {
  Bytes block(22, 0);
  put_f16(block, 0, 0.5f);
  // Element 21 := 26 = 0b11010: high bit at qh bit 21 (byte 2 + 2, bit 5); low nibble 10 in the
  // high nibble of qs byte 5 (qs starts at byte 6). Every other element is q = 0 -> -16 * d.
  block[4] = 1 << 5;
  block[11] = 10 << 4;
  std::vector<float> out(32);
  dequantize_row(DType::Q5_0, block.data(), out.data(), 32);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(out[e], e == 21 ? 5.0f : -8.0f) << e;
}

TEST(DequantizeOneElement, Q2_K) {
  Bytes block(84, 0);
  put_f16(block, 80, 1.0f);
  put_f16(block, 82, 0.25f);
  // Element 77 (sub-block 4, half 0, group 2, l = 13) := 3 at qs byte 13 bits 4-5;
  // sub-block 4: scale 9, min 5.
  block[4] = 9 | (5 << 4);
  block[16 + 13] = 3 << 4;
  std::vector<float> out(256);
  dequantize_row(DType::Q2_K, block.data(), out.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const float expected = e == 77 ? 27.0f - 1.25f : (e >= 64 && e < 80 ? -1.25f : 0.0f);
    EXPECT_EQ(out[e], expected) << e;
  }
}

TEST(DequantizeOneElement, Q3_K) {
  Bytes block(110, 0);
  put_f16(block, 108, 1.0f);
  // All high bits set: q = low2, so zero low bits decode to 0 whatever the scale.
  for (int i = 0; i < 32; ++i) block[i] = 0xff;
  // Element 150 (half 1, group 0, l = 22) := -3: clear hmask byte 22 bit 4, low2 = 1 at qs byte
  // 32 + 22 bits 0-1.
  block[22] = 0xff & ~(1 << 4);
  block[32 + 32 + 22] = 1;
  // Sub-block 9 scale raw 50 = 0b110010 (signed 18): low nibble 2 in the high nibble of byte 1,
  // high bits 3 at bits 4-5 of byte 8 + 1.
  block[96 + 1] = 2 << 4;
  block[96 + 9] = 3 << 4;
  std::vector<float> out(256);
  dequantize_row(DType::Q3_K, block.data(), out.data(), 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(out[e], e == 150 ? -54.0f : 0.0f) << e;
}

// IQ4_NL and IQ4_XS index one 16-value grid (ggml's kvalues_iq4nl), written here from the
// format's definition rather than taken from the decoder's table.
constexpr float kIq4Grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

TEST(DequantizeOneElement, IQ4_NL) {
  Bytes block(18, 0);
  put_f16(block, 0, 0.5f);
  // Every element q = 0 -> -127; element 3 := 12 (low nibble of qs byte 3), element 16 + 9 := 15
  // (high nibble of qs byte 9).
  block[2 + 3] = 12;
  block[2 + 9] = 15 << 4;
  std::vector<float> out(32);
  dequantize_row(DType::IQ4_NL, block.data(), out.data(), 32);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(out[e], 0.5f * (e == 3 ? 53.0f : e == 25 ? 113.0f : -127.0f)) << e;
  // Each index once: byte j holds j (low) and 15 - j (high).
  for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
  dequantize_row(DType::IQ4_NL, block.data(), out.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 0.5f * kIq4Grid[j]) << j;
    EXPECT_EQ(out[16 + j], 0.5f * kIq4Grid[15 - j]) << j;
  }
}

TEST(DequantizeOneElement, IQ4_XS) {
  Bytes block(136, 0);
  put_f16(block, 0, 0.25f);
  // Sub-block 5 scale raw 41 = 0b101001 (signed 9): low nibble 9 in the high nibble of scales_l
  // byte 2, high bits 2 at scales_h bits 10-11. Every other scale raw 0 (signed -32).
  block[4 + 2] = 9 << 4;
  block[2 + 1] = 2 << 2;
  // Element 5 * 32 + 16 + 7 := index 14 (high nibble of sub-block 5's qs byte 7); every other
  // index 8 (value 1): element 0 of sub-block 0 decodes to 0.25 * -32 * 1.
  for (int i = 8; i < 136; ++i) block[i] = 0x88;
  block[8 + 16 * 5 + 7] = 0x08 | 14 << 4;
  std::vector<float> out(256);
  dequantize_row(DType::IQ4_XS, block.data(), out.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const float scale = e / 32 == 5 ? 9.0f : -32.0f;
    EXPECT_EQ(out[e], 0.25f * scale * (e == 5 * 32 + 23 ? 89.0f : 1.0f)) << e;
  }
}

TEST(DequantizeOneElement, Q4_KAndQ5_K) {
  for (DType type : {DType::Q4_K, DType::Q5_K}) {
    const bool five_bit = type == DType::Q5_K;
    Bytes block(five_bit ? 176 : 144, 0);
    put_f16(block, 0, 1.0f);
    put_f16(block, 2, 1.0f);
    // Sub-block 6 scale 45 = 0b101101: low nibble 13 in byte 8 + 2, high bits 2 at bits 6-7 of
    // byte 2. Sub-block 7 min 50 = 0b110010: low nibble 2 in the high nibble of byte 8 + 3, high
    // bits 3 at bits 6-7 of byte 4 + 3.
    block[4 + 10] = 13;
    block[4 + 2] = 2 << 6;
    block[4 + 11] = 2 << 4;
    block[4 + 7] = 3 << 6;
    // Element 209 (sub-block 6: chunk 3, low nibbles, l = 17) := 11, plus 16 for Q5_K through
    // qh byte 17 bit 6.
    const size_t qs = five_bit ? 48 : 16;
    block[qs + 96 + 17] = 11;
    if (five_bit) block[16 + 17] = 1 << 6;
    std::vector<float> out(256);
    dequantize_row(type, block.data(), out.data(), 256);
    const float element_209 = 45.0f * (five_bit ? 27.0f : 11.0f);
    for (int e = 0; e < 256; ++e) {
      const float expected = e == 209 ? element_209 : (e >= 224 ? -50.0f : 0.0f);
      EXPECT_EQ(out[e], expected) << dtype_name(type) << " element " << e;
    }
  }
}

TEST(DequantizeOneElement, Q6_K) {
  Bytes block(210, 0);
  put_f16(block, 208, 0.5f);
  // High bit pairs 0b10 everywhere: stored 32 -> q = 0.
  for (int i = 128; i < 192; ++i) block[i] = 0xaa;
  // Element 200 (half 1, group 2, l = 8) := stored 45 = 0b10'1101 (q = 13): low nibble 13 in the
  // high nibble of ql byte 64 + 8; sub-block 12 scale -7.
  block[72] = 13 << 4;
  block[192 + 12] = static_cast<uint8_t>(-7 & 0xff);
  std::vector<float> out(256);
  dequantize_row(DType::Q6_K, block.data(), out.data(), 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(out[e], e == 200 ? -45.5f : 0.0f) << e;
}

// ---- Plain floats ---------------------------------------------------------------------------

TEST(DequantizeFloats, F32F16Bf16DecodeLikeHalfH) {
  const uint16_t halves[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8400, 0x3555, 0x7c00, 0x0000};
  Bytes f16(1), bf16(1), f32(1);  // one leading byte: misaligned
  for (uint16_t h : halves) {
    f16.push_back(static_cast<uint8_t>(h & 0xff));
    f16.push_back(static_cast<uint8_t>(h >> 8));
    bf16.push_back(static_cast<uint8_t>(h & 0xff));
    bf16.push_back(static_cast<uint8_t>(h >> 8));
    const uint32_t bits = bits_from_f32(f16_to_f32(h));
    for (int k = 0; k < 4; ++k) f32.push_back(static_cast<uint8_t>(bits >> (8 * k)));
  }
  std::vector<float> a(8), b(8), c(8);
  dequantize_row(DType::F16, f16.data() + 1, a.data(), 8);
  dequantize_row(DType::BF16, bf16.data() + 1, b.data(), 8);
  dequantize_row(DType::F32, f32.data() + 1, c.data(), 8);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(bits_from_f32(a[i]), bits_from_f32(f16_to_f32(halves[i]))) << i;
    EXPECT_EQ(bits_from_f32(b[i]), static_cast<uint32_t>(halves[i]) << 16) << i;
    EXPECT_EQ(bits_from_f32(c[i]), bits_from_f32(f16_to_f32(halves[i]))) << i;
  }
  EXPECT_EQ(a[0], 1.0f);
  EXPECT_EQ(b[0], 0.0078125f);  // bf16 0x3c00 = 2^(0x78 - 127)
}

// ---- Bad input --------------------------------------------------------------------------------

TEST(DequantizeErrors, PartialBlockIsRejected) {
  Bytes block(18, 0);
  std::vector<float> out(64);
  EXPECT_THROW(dequantize_row(DType::Q4_0, block.data(), out.data(), 31), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_K, block.data(), out.data(), 32), Error);
  EXPECT_THROW(dequantize_row(DType::Q8_0, block.data(), out.data(), -32), Error);
  try {
    dequantize_row(DType::Q6_K, block.data(), out.data(), 100);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("Q6_K"), std::string::npos) << message;
    EXPECT_NE(message.find("100"), std::string::npos) << message;
  }
}

TEST(DequantizeErrors, NonWeightTypesAreRejected) {
  Bytes bytes(1024, 0);
  std::vector<float> out(256);
  for (DType type : {DType::Q8_K, DType::Q8_1, DType::I32, DType::F64}) {
    try {
      dequantize_row(type, bytes.data(), out.data(), traits(type).block_elements);
      FAIL() << "no error for " << dtype_name(type);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dtype_name(type)), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(dequantize_row(static_cast<DType>(4), bytes.data(), out.data(), 1), Error);
}

TEST(DequantizeErrors, EmptyRowIsFine) {
  dequantize_row(DType::Q4_K, nullptr, nullptr, 0);
}

}  // namespace
}  // namespace orchard
