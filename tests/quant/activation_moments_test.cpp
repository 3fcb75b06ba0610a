// The weight-only estimate of activation statistics, checked against the statistics measured by
// running the model (collect_importance) on the golden models.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/divergence.h"
#include "orchard/model.h"
#include "quant/activation_moments.h"
#include "quant/importance.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::shared_ptr<const Model> golden_model(const std::string& arch) {
  return Model::load(test::shared_path("golden/" + arch + "-f32.gguf"));
}

const char* kMatrices[] = {"token_embd.weight",        "blk.0.attn_q.weight",   "blk.0.attn_output.weight",
                           "blk.0.ffn_gate.weight",    "blk.0.ffn_down.weight", "blk.1.attn_v.weight",
                           "blk.1.attn_output.weight", "blk.1.ffn_up.weight",   "blk.1.ffn_down.weight"};

TEST(QuantActivationMoments, CoversEveryMatrixWithPositiveFiniteMoments) {
  for (const std::string arch : {"qwen2", "llama"}) {
    auto model = golden_model(arch);
    const ImportanceTable t = estimate_activation_moments(*model);
    for (const char* name : kMatrices) {
      const std::vector<float>* s = t.find(name);
      if (arch == "llama" && std::string(name) == "token_embd.weight") {
        EXPECT_FALSE(s);  // untied: the embedding is a lookup, not a matrix product
        continue;
      }
      ASSERT_TRUE(s) << arch << " " << name;
      for (float v : *s) {
        ASSERT_TRUE(std::isfinite(v) && v > 0) << arch << " " << name;
      }
    }
    if (arch == "llama") {
      EXPECT_TRUE(t.find("output.weight"));
    }
  }
}

// Root mean square of log(a_i / mean a) - log(b_i / mean b): how far apart two column profiles
// are, whatever their overall scale.
double log_profile_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= double(a.size());
  mb /= double(b.size());
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::log(a[i] / ma) - std::log(b[i] / mb);
    sum += d * d;
  }
  return std::sqrt(sum / double(a.size()));
}

// The estimate must be closer to the measured column statistics than the uniform guess (all
// columns alike) the scale search would otherwise use. On qwen2 the value bias and the offsets
// it adds to the residual make the columns of attn_output, ffn_down and the second layer's
// inputs differ by factors of 10-50, which the uniform guess misses.
TEST(QuantActivationMoments, TracksMeasuredStatisticsBetterThanUniform) {
  for (const std::string arch : {"qwen2", "llama"}) {
    auto model = golden_model(arch);
    const ImportanceTable estimate = estimate_activation_moments(*model);
    const TokenSequences tokens = random_sequences(1024, 1, 2048, 7);
    const ImportanceTable measured = collect_importance(model, tokens[0], 512);
    for (const char* name : kMatrices) {
      const std::vector<float>* e = estimate.find(name);
      const std::vector<float>* m = measured.find(name);
      if (!e || !m) continue;
      ASSERT_EQ(e->size(), m->size()) << name;
      const std::vector<float> uniform(m->size(), 1.0f);
      const double d_estimate = log_profile_distance(*e, *m), d_uniform = log_profile_distance(uniform, *m);
      EXPECT_LT(d_estimate, d_uniform) << arch << " " << name;
      if (arch == "qwen2" && std::string(name).find("ffn_down") != std::string::npos) {
        EXPECT_LT(d_estimate, 0.5 * d_uniform) << arch << " " << name;
      }
    }
  }
}

}  // namespace
}  // namespace orchard
