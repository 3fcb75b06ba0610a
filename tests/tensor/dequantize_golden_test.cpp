// Every tensor of every golden GGUF (made by llama.cpp from the same weights as *-f32.gguf),
// dequantized, must land near the f32 original: each element within one quantization step of
// its block and a small relative RMS error per tensor. A wrong bit layout moves values by about
// the size of the weights (relative RMS near 1 or above), far outside these bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "tensor/dequantize.h"
#include "test_paths.h"

namespace orchard {
namespace {

struct Bounds {
  int bits;
  // Symmetric formats put 0 at a quant level and step by about max|x| / 2^(bits - 1);
  // the others span [min, max] of the block in 2^bits - 1 steps.
  bool symmetric;
  // About 1.4x what correct decoding of these Gaussian-like random weights gives (Q2_K: 0.30,
  // Q3_K: 0.15, 4-bit: 0.07-0.09, 5-bit: 0.04, Q6_K: 0.018, Q8_0: 0.005).
  double max_relative_rms;
};

Bounds bounds_of(DType type) {
  switch (type) {
    case DType::Q8_0: return {8, true, 0.01};
    case DType::Q6_K: return {6, true, 0.03};
    case DType::Q5_0: return {5, true, 0.06};
    case DType::Q5_1: return {5, false, 0.06};
    case DType::Q5_K: return {5, false, 0.06};
    case DType::Q4_0: return {4, true, 0.12};
    case DType::Q4_1: return {4, false, 0.12};
    case DType::Q4_K: return {4, false, 0.12};
    case DType::Q3_K: return {3, true, 0.22};
    case DType::Q2_K: return {2, false, 0.40};
    default: ADD_FAILURE() << "no bounds for " << dtype_name(type); return {1, false, 0};
  }
}

// Symmetric formats reach only 2^(bits-1) - 1 steps on the side opposite the extreme value, so
// values there can be a full step off; the f16 rounding of the block scale adds up to 2^-11
// relative per quant level.
constexpr double kStepSlack = 1.02;

double block_step(const Bounds& b, const float* x, int64_t n) {
  float lo = x[0], hi = x[0], amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    amax = std::max(amax, std::fabs(x[i]));
  }
  return b.symmetric ? amax / std::ldexp(1.0, b.bits - 1) : (hi - lo) / (std::ldexp(1.0, b.bits) - 1);
}

std::vector<float> dequantize_tensor(const GgufTensor& t) {
  const int64_t row = t.shape[0];
  const int64_t rows = t.element_count() / row;
  const size_t stride = row_bytes(t.type, row);
  std::vector<float> out(static_cast<size_t>(t.element_count()));
  for (int64_t r = 0; r < rows; ++r) dequantize_row(t.type, t.data + r * stride, out.data() + r * row, row);
  return out;
}

struct GoldenCase {
  std::string file;                      // e.g. "llama-q4_k_m"
  std::set<std::string> expected_types;  // the types its tensors use, F32 included
};

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.file; }

class DequantizeGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(DequantizeGolden, EveryTensorLandsNearTheF32Weights) {
  const GoldenCase& c = GetParam();
  const std::string arch = c.file.substr(0, c.file.find('-'));
  auto reference = GgufFile::open(test::shared_path("golden/" + arch + "-f32.gguf"));
  auto file = GgufFile::open(test::shared_path("golden/" + c.file + ".gguf"));

  std::set<std::string> seen_types;
  for (const GgufTensor& t : file->tensors()) {
    SCOPED_TRACE(c.file + " " + t.name + " (" + std::string(dtype_name(t.type)) + ")");
    seen_types.insert(std::string(dtype_name(t.type)));
    const GgufTensor* r = reference->find_tensor(t.name);
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->type, DType::F32);
    ASSERT_EQ(r->shape, t.shape);
    std::vector<float> want(static_cast<size_t>(r->element_count()));
    std::memcpy(want.data(), r->data, want.size() * sizeof(float));
    const std::vector<float> got = dequantize_tensor(t);

    if (t.type == DType::F32 || t.type == DType::F16 || t.type == DType::BF16) {
      // Plain floats: the file holds the f32 weights rounded to nearest even.
      for (size_t i = 0; i < want.size(); ++i) {
        float rounded = want[i];
        if (t.type == DType::F16) rounded = f16_to_f32(f32_to_f16(want[i]));
        if (t.type == DType::BF16) rounded = bf16_to_f32(f32_to_bf16(want[i]));
        ASSERT_EQ(got[i], rounded) << "element " << i;
      }
      continue;
    }

    const Bounds bounds = bounds_of(t.type);
    const int64_t block = traits(t.type).block_elements;
    double error_sq = 0, weight_sq = 0;
    for (size_t start = 0; start < want.size(); start += block) {
      const double step = block_step(bounds, &want[start], block);
      for (size_t i = start; i < start + block; ++i) {
        const double error = got[i] - want[i];
        error_sq += error * error;
        weight_sq += static_cast<double>(want[i]) * want[i];
        ASSERT_LE(std::fabs(error), kStepSlack * step) << "element " << i << ": " << got[i] << " vs " << want[i];
      }
    }
    EXPECT_LT(std::sqrt(error_sq / weight_sq), bounds.max_relative_rms);
  }
  EXPECT_EQ(seen_types, c.expected_types);
}

std::vector<GoldenCase> golden_cases() {
  const std::map<std::string, std::set<std::string>> types = {
      {"f16", {"F32", "F16"}},
      {"bf16", {"F32", "BF16"}},
      {"q8_0", {"F32", "Q8_0"}},
      {"q4_0", {"F32", "Q4_0", "Q6_K"}},
      {"q4_1", {"F32", "Q4_1", "Q6_K"}},
      {"q5_0", {"F32", "Q5_0", "Q6_K"}},
      {"q5_1", {"F32", "Q5_1", "Q6_K"}},
      {"q2_k", {"F32", "Q2_K", "Q3_K", "Q6_K"}},
      {"q3_k_m", {"F32", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}},
      {"q4_k_m", {"F32", "Q4_K", "Q6_K"}},
      {"q5_k_m", {"F32", "Q5_K", "Q6_K"}},
      {"q6_k", {"F32", "Q6_K"}},
  };
  std::vector<GoldenCase> cases;
  for (const char* arch : {"llama", "qwen2"}) {
    for (const auto& [suffix, expected] : types) cases.push_back({std::string(arch) + "-" + suffix, expected});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllFiles, DequantizeGolden, ::testing::ValuesIn(golden_cases()),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace orchard
