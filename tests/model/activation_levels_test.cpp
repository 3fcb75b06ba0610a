// The per-matrix choice of activation levels (model/activation_levels.h): the KL it estimates for
// the matrices it puts on one level is what they do to the logits, on tokens other than the
// calibration's; the budget bounds it; the choice is the same on every load.
#include <gtest/gtest.h>

#include <random>

#include "golden.h"
#include "kernels/kernels.h"
#include "model/activation_levels.h"
#include "model/transformer.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::unique_ptr<Model::Impl> packed_model(const std::string& name) {
  std::unique_ptr<Model::Impl> impl = read_model(test::shared_path("golden/" + name));
  pack_weights(*impl);  // chooses with the default budget
  return impl;
}

std::vector<bool> flags(Model::Impl& impl, const std::vector<MatrixLevel>& levels) {
  std::vector<bool> out;
  for (const MatrixLevel& l : levels) out.push_back(impl.packed.find(*l.matrix)->single_level);
  return out;
}

// Logits of every position of the golden short sequence on the model's current choice.
std::vector<float> logits_of(const Model::Impl& impl) {
  const std::vector<int32_t> tokens = test::golden_sequence("short");
  Transformer t(impl, select_kernels(KernelChoice::fast), static_cast<int64_t>(tokens.size()));
  std::vector<float> logits(tokens.size() * static_cast<size_t>(impl.config.n_vocab));
  t.forward(tokens, 0, true, logits.data());
  return logits;
}

void set_all(Model::Impl& impl, const std::vector<MatrixLevel>& levels, bool single) {
  for (const MatrixLevel& l : levels) impl.packed.find(*l.matrix)->single_level = single;
}

TEST(ActivationLevels, TheEstimatedKlIsWhatTheChoiceDoesToTheLogits) {
  for (const char* name : {"qwen3-q4_0.gguf", "qwen2-q4_0.gguf", "llama-q8_0.gguf"}) {
    SCOPED_TRACE(name);
    std::unique_ptr<Model::Impl> impl = packed_model(name);
    // A budget below what one level everywhere costs on these models, so that the choice is a mix.
    const double budget = 1e-4;
    const std::vector<MatrixLevel> levels = choose_activation_levels(*impl, budget);
    ASSERT_FALSE(levels.empty());
    double estimated = 0;
    int single = 0;
    for (const MatrixLevel& l : levels) {
      EXPECT_GE(l.error, 0.0);
      EXPECT_GE(l.kl, 0.0);
      if (l.single_level) estimated += l.kl, ++single;
    }
    EXPECT_LE(estimated, budget);
    EXPECT_GT(single, 0);
    EXPECT_LT(single, static_cast<int>(levels.size()));
    const std::vector<bool> chosen = flags(*impl, levels);
    const std::vector<float> mixed = logits_of(*impl);
    set_all(*impl, levels, false);
    const std::vector<float> two = logits_of(*impl);
    set_all(*impl, levels, true);
    const std::vector<float> one = logits_of(*impl);
    const double kl_mixed = test::mean_kl_divergence(two, mixed, impl->config.n_vocab);
    const double kl_one = test::mean_kl_divergence(two, one, impl->config.n_vocab);
    // Other tokens than the calibration's: the estimate holds within a factor of 3, and the
    // choice costs a fraction of one level everywhere.
    EXPECT_LE(kl_mixed, 3 * budget) << "estimated " << estimated;
    EXPECT_LT(kl_mixed, 0.5 * kl_one);
    EXPECT_GT(kl_one, budget);  // else the mix above tests nothing
    // Measured again on a fresh load: the same choice.
    std::unique_ptr<Model::Impl> again = packed_model(name);
    EXPECT_EQ(flags(*again, choose_activation_levels(*again, budget)), chosen);
  }
}

TEST(ActivationLevels, NoBudgetKeepsTwoLevelsAndALargeOneTakesOneEverywhere) {
  std::unique_ptr<Model::Impl> impl = packed_model("qwen3-q4_0.gguf");
  std::vector<MatrixLevel> levels = choose_activation_levels(*impl, 0.0);
  for (const MatrixLevel& l : levels) EXPECT_FALSE(impl->packed.find(*l.matrix)->single_level) << l.matrix->name;
  levels = choose_activation_levels(*impl, 1.0);
  for (const MatrixLevel& l : levels) EXPECT_TRUE(impl->packed.find(*l.matrix)->single_level) << l.matrix->name;
  // 2 layers x 7 matrices and the output: every packed matrix is measured.
  EXPECT_EQ(levels.size(), impl->weights.layers.size() * 7 + 1);
}

}  // namespace
}  // namespace orchard
