// The searched quantizers against round-to-nearest and against llama.cpp's own quantizations of
// the same golden weights: their error must be lower, and their blocks must decode (through the
// independent dequantizer) to values close to the input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "quant/scale_search.h"
#include "tensor/dequantize.h"
#include "tensor/quantize_reference.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed, bool heavy_tails = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) {
    v = normal(rng);
    if (heavy_tails) v = v * v * v;  // a few large weights among many small ones
  }
  return x;
}

double weighted_error(const std::vector<float>& x, const std::vector<float>& y, const float* w, int64_t row) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double(x[i]) - y[i];
    e += (w ? w[i % static_cast<size_t>(row)] : 1.0) * d * d;
  }
  return e;
}

std::vector<float> round_trip(DType type, const std::vector<float>& x, const float* importance, int64_t row) {
  std::vector<uint8_t> bytes(row_bytes(type, row));
  std::vector<float> y(x.size());
  for (size_t r = 0; r < x.size() / static_cast<size_t>(row); ++r) {
    quantize_row_search(type, x.data() + r * row, importance, bytes.data(), row);
    dequantize_row(type, bytes.data(), y.data() + r * row, row);
  }
  return y;
}

std::vector<float> round_trip_reference(DType type, const std::vector<float>& x) {
  std::vector<uint8_t> bytes(row_bytes(type, static_cast<int64_t>(x.size())));
  if (type == DType::Q4_0) quantize_row_q4_0(x.data(), bytes.data(), static_cast<int64_t>(x.size()));
  else quantize_row_q8_0(x.data(), bytes.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(type, bytes.data(), y.data(), static_cast<int64_t>(x.size()));
  return y;
}

class SearchVsRoundToNearest : public testing::TestWithParam<bool> {};

TEST_P(SearchVsRoundToNearest, Q4_0ErrorIsClearlyLower) {
  const auto x = gaussian(4096, 1, GetParam());
  const double search = weighted_error(x, round_trip(DType::Q4_0, x, nullptr, 256), nullptr, 256);
  const double rtn = weighted_error(x, round_trip_reference(DType::Q4_0, x), nullptr, 256);
  // A brute-force search over 1600 steps per block reaches 0.886 (Gaussian) and 0.942 (heavy
  // tails) of round-to-nearest's error on such data.
  EXPECT_LT(search, (GetParam() ? 0.96 : 0.9) * rtn);
}

TEST_P(SearchVsRoundToNearest, Q8_0ErrorIsNotHigher) {
  const auto x = gaussian(4096, 2, GetParam());
  const double search = weighted_error(x, round_trip(DType::Q8_0, x, nullptr, 256), nullptr, 256);
  const double rtn = weighted_error(x, round_trip_reference(DType::Q8_0, x), nullptr, 256);
  EXPECT_LE(search, rtn);
}

INSTANTIATE_TEST_SUITE_P(Distributions, SearchVsRoundToNearest, testing::Values(false, true),
                         [](const auto& info) { return info.param ? "HeavyTails" : "Gaussian"; });

// Relative RMS error bounds that each type's bits allow on Gaussian data (4-bit: ~1/8 of the
// range per step), loose enough for any sound quantizer, tight enough to catch packing errors.
TEST(ScaleSearch, EveryTypeDecodesCloseToItsInput) {
  const auto x = gaussian(2048, 3);
  const std::pair<DType, double> bounds[] = {
      {DType::Q8_0, 0.01}, {DType::Q4_0, 0.13}, {DType::Q4_K, 0.13}, {DType::Q6_K, 0.035},
      {DType::F16, 0.001}, {DType::F32, 0.0}};
  const double energy = weighted_error(x, std::vector<float>(x.size(), 0.0f), nullptr, 256);
  for (auto [type, bound] : bounds) {
    const double rel = std::sqrt(weighted_error(x, round_trip(type, x, nullptr, 256), nullptr, 256) / energy);
    EXPECT_LE(rel, bound) << dtype_name(type);
    EXPECT_GT(rel + 1e-9, bound / 20) << dtype_name(type) << " suspiciously exact";
  }
}

TEST(ScaleSearch, ImportanceLowersTheWeightedError) {
  const int64_t row = 256;
  const auto x = gaussian(row * 16, 4);
  std::vector<float> importance(row);
  std::mt19937 rng(5);
  std::exponential_distribution<float> spread(1.0f);
  for (float& w : importance) w = std::pow(spread(rng), 3.0f);  // a few columns dominate
  for (DType type : {DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const double plain = weighted_error(x, round_trip(type, x, nullptr, row), importance.data(), row);
    const double weighted = weighted_error(x, round_trip(type, x, importance.data(), row), importance.data(), row);
    EXPECT_LT(weighted, 0.9 * plain) << dtype_name(type);
  }
}

TEST(ScaleSearch, ZeroAndConstantBlocks) {
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    for (float value : {0.0f, 0.5f, -2.0f}) {
      std::vector<float> x(256, value);
      const auto y = round_trip(type, x, nullptr, 256);
      for (float v : y) ASSERT_NEAR(v, value, 0.02 * std::fabs(value) + 1e-6) << dtype_name(type) << " " << value;
    }
  }
}

TEST(ScaleSearch, RejectsPartialBlocks) {
  std::vector<float> x(100);
  std::vector<uint8_t> out(1024);
  EXPECT_THROW(quantize_row_search(DType::Q4_0, x.data(), nullptr, out.data(), 100), Error);
  EXPECT_THROW(quantize_row_search(DType::Q4_K, x.data(), nullptr, out.data(), 96), Error);
}

// llama.cpp quantized the same golden weights; on every tensor it stored as `type`, the search
// must not do worse (llama.cpp's K-quants already search scales, its Q4_0/Q8_0 round to nearest).
struct LlamaCppCase {
  const char* base;
  const char* file;
  DType type;
  double max_ratio;  // our squared error / llama.cpp's, summed over the tensors
};

class AgainstLlamaCpp : public testing::TestWithParam<LlamaCppCase> {};

TEST_P(AgainstLlamaCpp, LowerErrorOnTheSameWeights) {
  const LlamaCppCase c = GetParam();
  auto f32 = GgufFile::open(test::shared_path(std::string("golden/") + c.base));
  auto quantized = GgufFile::open(test::shared_path(std::string("golden/") + c.file));
  double ours = 0, theirs = 0;
  int tensors = 0;
  for (const GgufTensor& t : quantized->tensors()) {
    if (t.type != c.type) continue;
    const GgufTensor* source = f32->find_tensor(t.name);
    ASSERT_NE(source, nullptr);
    const int64_t n = t.element_count(), row = t.shape[0];
    std::vector<float> x(static_cast<size_t>(n)), y(x.size());
    dequantize_row(DType::F32, source->data, x.data(), n);
    dequantize_row(t.type, t.data, y.data(), n);
    theirs += weighted_error(x, y, nullptr, row);
    ours += weighted_error(x, round_trip(c.type, x, nullptr, row), nullptr, row);
    ++tensors;
  }
  ASSERT_GT(tensors, 0);
  EXPECT_LT(ours, c.max_ratio * theirs) << ours / theirs;
}

INSTANTIATE_TEST_SUITE_P(GoldenLlama, AgainstLlamaCpp,
                         testing::Values(LlamaCppCase{"llama-f32.gguf", "llama-q4_0.gguf", DType::Q4_0, 0.92},
                                         LlamaCppCase{"llama-f32.gguf", "llama-q8_0.gguf", DType::Q8_0, 1.0},
                                         LlamaCppCase{"llama-f32.gguf", "llama-q4_k_m.gguf", DType::Q4_K, 1.0},
                                         LlamaCppCase{"llama-f32.gguf", "llama-q6_k.gguf", DType::Q6_K, 1.0},
                                         LlamaCppCase{"qwen2-f32.gguf", "qwen2-q4_0.gguf", DType::Q4_0, 0.92},
                                         LlamaCppCase{"qwen2-f32.gguf", "qwen2-q4_k_m.gguf", DType::Q4_K, 1.0},
                                         LlamaCppCase{"qwen2-f32.gguf", "qwen2-q4_k_m.gguf", DType::Q6_K, 1.0}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.file) + "_" + std::string(dtype_name(info.param.type));
                           for (char& c : name) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
}  // namespace orchard
