// The engine against the golden float64 reference: every manifest case, in one batch and one
// token at a time through the KV cache.
#include <gtest/gtest.h>

#include <map>

#include "golden.h"
#include "orchard/model.h"
#include "test_paths.h"

namespace orchard {
namespace {

constexpr double kReferenceKernelKlBound = 1e-8;

std::shared_ptr<const Model> load_golden(const std::string& name) {
  static std::map<std::string, std::shared_ptr<const Model>> cache;
  auto& slot = cache[name];
  if (!slot) slot = Model::load(test::shared_path("golden/" + name));
  return slot;
}

class GoldenLogits : public ::testing::TestWithParam<test::GoldenCase> {};

TEST_P(GoldenLogits, WholeSequenceMatchesReference) {
  const test::GoldenCase& c = GetParam();
  auto model = load_golden(c.model);
  EXPECT_EQ(model->config().architecture, c.arch);
  const auto tokens = test::golden_sequence(c.sequence);
  const auto reference = test::read_f32_file(test::shared_path("golden/" + c.reference));
  Context context(model, {.kernels = KernelChoice::reference});
  const auto logits = context.eval(tokens);
  const double kl = test::mean_kl_divergence(reference, logits, model->config().n_vocab);
  EXPECT_LE(kl, kReferenceKernelKlBound) << c.model << " on " << c.sequence;
}

TEST_P(GoldenLogits, TokenByTokenDecodeMatchesReference) {
  const test::GoldenCase& c = GetParam();
  auto model = load_golden(c.model);
  const auto tokens = test::golden_sequence(c.sequence);
  const auto reference = test::read_f32_file(test::shared_path("golden/" + c.reference));
  Context context(model, {.kernels = KernelChoice::reference});
  std::vector<float> logits;
  for (int32_t token : tokens) {
    const auto step = context.eval(std::span<const int32_t>(&token, 1));
    logits.insert(logits.end(), step.begin(), step.end());
  }
  EXPECT_EQ(context.n_past(), static_cast<int64_t>(tokens.size()));
  const double kl = test::mean_kl_divergence(reference, logits, model->config().n_vocab);
  EXPECT_LE(kl, kReferenceKernelKlBound) << c.model << " on " << c.sequence;
}

INSTANTIATE_TEST_SUITE_P(Manifest, GoldenLogits, ::testing::ValuesIn(test::golden_cases()),
                         [](const auto& info) { return info.param.label(); });

}  // namespace
}  // namespace orchard
