// RoPE on awkward shapes (odd head counts, rope_dims below head_dim, a single pair, an odd
// number of pairs), both pair layouts, every kernel table against a plain float64 definition
// written here from the formulas, not from the kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/rope.h"

namespace orchard {
namespace {

struct RopeShape {
  int64_t n_heads, head_dim, rope_dims;
};

// The tables to check: the reference one and the fast one of every ISA path this CPU runs.
std::vector<const Kernels*> every_table() {
  std::vector<const Kernels*> tables = {&reference_kernels()};
  for (Isa isa : supported_isas()) tables.push_back(&fast_kernels(isa));
  return tables;
}

// cos and sin of position * theta^(-2i/rope_dims) for each pair, rounded to float as the
// transformer hands them to the kernel.
void angles(int64_t position, int64_t rope_dims, std::vector<float>& cos, std::vector<float>& sin) {
  const int64_t half = rope_dims / 2;
  cos.resize(static_cast<size_t>(half));
  sin.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(position) * std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dims));
    cos[static_cast<size_t>(i)] = static_cast<float>(std::cos(angle));
    sin[static_cast<size_t>(i)] = static_cast<float>(std::sin(angle));
  }
}

// The definition in float64: pair i of a head is (i, i + rope_dims/2) for neox and (2i, 2i+1)
// for interleaved; (a, b) -> (a cos - b sin, a sin + b cos); everything past rope_dims stays.
std::vector<double> rotate_f64(const std::vector<float>& x, const RopeShape& s, RopeStyle style,
                               const std::vector<float>& cos, const std::vector<float>& sin) {
  std::vector<double> out(x.begin(), x.end());
  const int64_t half = s.rope_dims / 2;
  for (int64_t h = 0; h < s.n_heads; ++h) {
    const size_t base = static_cast<size_t>(h * s.head_dim);
    for (int64_t i = 0; i < half; ++i) {
      const size_t ia = base + static_cast<size_t>(style == RopeStyle::neox ? i : 2 * i);
      const size_t ib = base + static_cast<size_t>(style == RopeStyle::neox ? i + half : 2 * i + 1);
      const double a = x[ia], b = x[ib], c = cos[static_cast<size_t>(i)], sn = sin[static_cast<size_t>(i)];
      out[ia] = a * c - b * sn;
      out[ib] = a * sn + b * c;
    }
  }
  return out;
}

std::vector<float> random_heads(const RopeShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  std::vector<float> x(static_cast<size_t>(s.n_heads * s.head_dim));
  for (float& v : x) v = value(rng);
  return x;
}

class RopeShapes : public ::testing::TestWithParam<RopeStyle> {};

TEST_P(RopeShapes, EveryTableMatchesTheFloat64DefinitionAndLeavesTheRestAlone) {
  const RopeStyle style = GetParam();
  const std::vector<RopeShape> shapes = {
      {1, 2, 2},       // a single pair
      {3, 6, 6},       // odd head count, odd number of pairs
      {5, 10, 6},      // rope_dims < head_dim with an odd number of pairs
      {7, 64, 32},     // partial rotation, half the head
      {1, 64, 64},     // the common full rotation
      {9, 128, 128},   // large head, odd head count
      {3, 80, 16},     // few rotated dimensions in a wide head
  };
  const std::vector<const Kernels*> tables = every_table();
  uint32_t seed = 1;
  for (const RopeShape& s : shapes)
    for (int64_t position : {int64_t{0}, int64_t{1}, int64_t{17}, int64_t{4095}, int64_t{100000}}) {
      std::vector<float> cos, sin;
      angles(position, s.rope_dims, cos, sin);
      const std::vector<float> x = random_heads(s, seed++);
      const std::vector<double> want = rotate_f64(x, s, style, cos, sin);
      std::vector<float> first;  // the first table's result: the others must give the same bits
      for (const Kernels* k : tables) {
        std::vector<float> y = x;
        for (int64_t h = 0; h < s.n_heads; ++h) k->rope(y.data() + h * s.head_dim, s.rope_dims, style, cos.data(), sin.data());
        for (size_t j = 0; j < y.size(); ++j) {
          const int64_t d = static_cast<int64_t>(j) % s.head_dim;
          if (d >= s.rope_dims) {
            ASSERT_EQ(std::memcmp(&y[j], &x[j], sizeof(float)), 0)
                << k->name << ": dimension " << d << " past rope_dims " << s.rope_dims << " changed";
            continue;
          }
          // Two float products and a sum, each rounded once: a few ulps of the inputs' size.
          ASSERT_NEAR(y[j], want[j], 1e-6 * 8.0)
              << k->name << " heads " << s.n_heads << " head_dim " << s.head_dim << " rope_dims " << s.rope_dims
              << " position " << position << " index " << j;
        }
        if (first.empty()) first = y;
        else ASSERT_EQ(std::memcmp(first.data(), y.data(), y.size() * sizeof(float)), 0) << k->name << " differs from " << tables[0]->name;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Styles, RopeShapes, ::testing::Values(RopeStyle::neox, RopeStyle::interleaved),
                         [](const ::testing::TestParamInfo<RopeStyle>& info) {
                           return std::string(info.param == RopeStyle::neox ? "neox" : "interleaved");
                         });

// A quarter turn (cos 0, sin 1) maps (a, b) to (-b, a) exactly, which shows which values each
// style pairs without any rounding in the way.
TEST(Rope, QuarterTurnShowsThePairLayout) {
  const int64_t head_dim = 10, rope_dims = 6, half = rope_dims / 2;
  const std::vector<float> cos(static_cast<size_t>(half), 0.0f), sin(static_cast<size_t>(half), 1.0f);
  std::vector<float> x(static_cast<size_t>(head_dim));
  for (int64_t i = 0; i < head_dim; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i + 1);

  std::vector<float> neox = x;
  rope_rotate(neox.data(), rope_dims, RopeStyle::neox, cos.data(), sin.data());
  EXPECT_EQ(neox, (std::vector<float>{-4, -5, -6, 1, 2, 3, 7, 8, 9, 10}));

  std::vector<float> interleaved = x;
  rope_rotate(interleaved.data(), rope_dims, RopeStyle::interleaved, cos.data(), sin.data());
  EXPECT_EQ(interleaved, (std::vector<float>{-2, 1, -4, 3, -6, 5, 7, 8, 9, 10}));
}

// The reference and fast tables use the one definition, so the golden logits cannot drift
// apart at RoPE.
TEST(Rope, EveryTableUsesTheSharedDefinition) {
  for (const Kernels* k : every_table()) EXPECT_EQ(k->rope, &rope_rotate) << k->name;
}

}  // namespace
}  // namespace orchard
