#include "tensor/quantize_reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "orchard/error.h"
#include "tensor/dequantize.h"
#include "test_paths.h"

namespace orchard {
namespace {

// Rows with blocks of different character: Gaussian at several scales, all zeros, one nonzero,
// all equal, and a block whose largest magnitude is negative.
std::vector<float> test_row() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> x;
  for (float scale : {1.0f, 1e-3f, 250.0f, 0.02f}) {
    for (int j = 0; j < 32; ++j) x.push_back(scale * normal(rng));
  }
  x.insert(x.end(), 32, 0.0f);
  for (int j = 0; j < 32; ++j) x.push_back(j == 5 ? -3.0f : 0.0f);
  x.insert(x.end(), 32, 0.7f);
  for (int j = 0; j < 32; ++j) x.push_back(j == 31 ? -9.0f : 8.0f * std::sin(static_cast<float>(j)));
  return x;
}

float max_abs(const float* x) {
  float m = 0;
  for (int j = 0; j < 32; ++j) m = std::max(m, std::fabs(x[j]));
  return m;
}

TEST(QuantizeReference, Q8_0RoundTripIsWithinHalfAStep) {
  const std::vector<float> x = test_row();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(n / 32 * 34));
  quantize_row_q8_0(x.data(), q.data(), n);
  std::vector<float> y(x.size());
  dequantize_row(DType::Q8_0, q.data(), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float step = max_abs(&x[b * 32]) / 127.0f;
    // Half a step, plus what rounding d to f16 (relative 2^-11) costs at |q| <= 127.
    const float tolerance = step * (0.5f + 127.0f / 2048.0f);
    for (int64_t i = b * 32; i < b * 32 + 32; ++i) ASSERT_LE(std::fabs(y[i] - x[i]), tolerance) << i;
  }
}

TEST(QuantizeReference, Q4_0RoundTripIsWithinHalfAStep) {
  const std::vector<float> x = test_row();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(n / 32 * 18));
  quantize_row_q4_0(x.data(), q.data(), n);
  std::vector<float> y(x.size());
  dequantize_row(DType::Q4_0, q.data(), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float extreme = 0;  // the signed value of largest magnitude
    for (int64_t i = b * 32; i < b * 32 + 32; ++i) {
      if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
    }
    const float step = std::fabs(extreme) / 8.0f;
    const float f16_slop = step * 8.0f / 2048.0f;
    for (int64_t i = b * 32; i < b * 32 + 32; ++i) {
      // The extreme maps to quant 0 (8 steps on its side); the other side only reaches 7 steps,
      // so values beyond 7.5 steps there are off by up to a full step.
      const bool capped = x[i] * extreme < 0 && std::fabs(x[i]) > 7.5f * step;
      const float tolerance = (capped ? step : 0.5f * step) + f16_slop;
      ASSERT_LE(std::fabs(y[i] - x[i]), tolerance) << i;
    }
  }
}

TEST(QuantizeReference, Q8_0KnownBlock) {
  // max |x| = 127 makes d = 1 exactly; halves round away from zero.
  float x[32] = {127.0f, -127.0f, 2.5f, -2.5f, 0.49f, -0.51f, 100.4f};
  uint8_t block[34];
  quantize_row_q8_0(x, block, 32);
  EXPECT_EQ(block[0] | (block[1] << 8), 0x3c00);  // f16 1.0
  const int8_t expected[7] = {127, -127, 3, -3, 0, -1, 100};
  for (int j = 0; j < 7; ++j) EXPECT_EQ(static_cast<int8_t>(block[2 + j]), expected[j]) << j;
  for (int j = 7; j < 32; ++j) EXPECT_EQ(block[2 + j], 0) << j;
}

TEST(QuantizeReference, Q4_0KnownBlock) {
  // The largest magnitude is -8, so d = -8 / -8 = 1 and quant = round(x) + 8, capped at 15.
  float x[32] = {-8.0f, 7.0f, 7.9f, 0.5f, -0.5f, -3.2f};
  x[16] = 2.0f;
  x[17] = -7.6f;
  uint8_t block[18];
  quantize_row_q4_0(x, block, 32);
  EXPECT_EQ(block[0] | (block[1] << 8), 0x3c00);
  const int low[6] = {0, 15, 15, 9, 8, 5};  // 7.9 -> 16 capped; +-0.5 round up
  for (int j = 0; j < 6; ++j) EXPECT_EQ(block[2 + j] & 15, low[j]) << j;
  EXPECT_EQ(block[2 + 0] >> 4, 10);  // x[16] = 2
  EXPECT_EQ(block[2 + 1] >> 4, 0);   // x[17] = -7.6 -> -8 + 8
  for (int j = 2; j < 16; ++j) EXPECT_EQ(block[2 + j] >> 4, 8) << j;
}

TEST(QuantizeReference, ZeroBlockDecodesToZero) {
  std::vector<float> x(32, 0.0f), y(32, 1.0f);
  uint8_t q8[34], q4[18];
  quantize_row_q8_0(x.data(), q8, 32);
  dequantize_row(DType::Q8_0, q8, y.data(), 32);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  quantize_row_q4_0(x.data(), q4, 32);
  dequantize_row(DType::Q4_0, q4, y.data(), 32);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(QuantizeReference, PartialBlockIsRejected) {
  std::vector<float> x(64);
  std::vector<uint8_t> out(64);
  EXPECT_THROW(quantize_row_q8_0(x.data(), out.data(), 33), Error);
  EXPECT_THROW(quantize_row_q4_0(x.data(), out.data(), 48), Error);
}

// llama.cpp made the golden Q8_0 and Q4_0 files from the f32 weights with its reference
// quantizers; ours must write the same bytes.
TEST(QuantizeReference, ReproducesLlamaCppQ8_0AndQ4_0Tensors) {
  for (const char* arch : {"llama", "qwen2"}) {
    auto f32 = GgufFile::open(test::shared_path(std::string("golden/") + arch + "-f32.gguf"));
    for (const char* suffix : {"q8_0", "q4_0"}) {
      const std::string name = std::string(arch) + "-" + suffix;
      auto file = GgufFile::open(test::shared_path("golden/" + name + ".gguf"));
      int compared = 0;
      for (const GgufTensor& t : file->tensors()) {
        if (t.type != DType::Q8_0 && t.type != DType::Q4_0) continue;
        const GgufTensor* r = f32->find_tensor(t.name);
        ASSERT_NE(r, nullptr) << t.name;
        std::vector<float> x(static_cast<size_t>(r->element_count()));
        std::memcpy(x.data(), r->data, x.size() * sizeof(float));
        std::vector<uint8_t> q(t.nbytes);
        const int64_t n = static_cast<int64_t>(x.size());
        if (t.type == DType::Q8_0) quantize_row_q8_0(x.data(), q.data(), n);
        else quantize_row_q4_0(x.data(), q.data(), n);
        EXPECT_EQ(std::memcmp(q.data(), t.data, q.size()), 0) << name << " " << t.name;
        ++compared;
      }
      EXPECT_GT(compared, 10) << name;
    }
  }
}

}  // namespace
}  // namespace orchard
