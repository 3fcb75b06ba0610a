// LoRA on the reference path against shared/train's lora cases (llama, qwen2, qwen3: rank 4,
// alpha 8 on attn_q and attn_v): the loss with the stored init adapters and without them (zero
// adapters, which must give the plain sft loss), and every lora_a / lora_b gradient within the
// manifest's relative-L2 bound of the float64 PyTorch oracle.
#include "train/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oracle_files.h"
#include "test_paths.h"
#include "train/loss.h"

namespace orchard::train {
namespace {

double rel_error(double x, double ref) { return std::fabs(x - ref) / std::fabs(ref); }

TEST(TrainLora, GradientsMatchTheOracle) {
  const nlohmann::json manifest = read_manifest();
  const double grad_bound = manifest.at("tolerances").at("gradient_rel_l2_per_tensor").get<double>();
  const double loss_bound = manifest.at("tolerances").at("loss_rel").get<double>();
  int cases = 0;
  for (const auto& c : manifest.at("cases")) {
    if (c.at("kind") != "lora") continue;
    ++cases;
    const std::string name = c.at("case");
    const nlohmann::json& cfg = c.at("lora");
    const ReferenceModel model = load_reference_model(test::shared_path(c.at("model").get<std::string>()));
    LoraConfig config;
    config.rank = cfg.at("rank").get<int64_t>();
    config.alpha = cfg.at("alpha").get<double>();
    EXPECT_DOUBLE_EQ(config.scale(), cfg.at("scale").get<double>()) << name;
    EXPECT_EQ(cfg.at("targets").get<std::vector<std::string>>(),
              (std::vector<std::string>{"blk.*.attn_q.weight", "blk.*.attn_v.weight"}))
        << name;
    config.targets = {LoraTarget::q, LoraTarget::v};
    Lora lora = zero_lora(model, config);

    const std::vector<int32_t> tokens = c.at("tokens").get<std::vector<int32_t>>();
    const int64_t n = static_cast<int64_t>(tokens.size()), V = model.config.n_vocab;
    std::vector<int32_t> targets;
    std::vector<uint8_t> mask;
    sft_targets(tokens, targets, mask);
    const LogitLoss ce = [&](std::span<const float> logits, std::span<float> dlogits) {
      return cross_entropy(logits, n, V, targets, mask, dlogits);
    };

    // Zero adapters: the plain sft loss.
    Lora grads;
    const double loss0 = lora_loss_gradients(model, lora, tokens, ce, grads);
    const double ref0 = c.at("loss_without_adapter").get<double>();
    EXPECT_LE(rel_error(loss0, ref0), loss_bound) << name << ": loss without adapter " << loss0 << " vs " << ref0;

    // The stored init adapters, by name, and every stored tensor is one of ours.
    const std::string init_file = test::shared_path("train/" + cfg.at("init_file").get<std::string>());
    std::vector<NamedTensor> ours = lora_tensors(lora);
    ASSERT_EQ(ours.size(), cfg.at("init_tensors").size()) << name;
    for (size_t i = 0; i < ours.size(); ++i) {
      const auto& t = cfg.at("init_tensors")[i];
      ASSERT_EQ(ours[i].name, t.at("name").get<std::string>()) << name;
      ASSERT_EQ(ours[i].shape, t.at("shape").get<std::vector<int64_t>>()) << name << " " << ours[i].name;
      const uint64_t count = t.at("n_elements").get<uint64_t>();
      ASSERT_EQ(ours[i].values->size(), count) << name << " " << ours[i].name;
      const std::vector<float> init = read_floats(init_file, t.at("offset").get<uint64_t>(), count);
      for (uint64_t k = 0; k < count; ++k) (*ours[i].values)[k] = init[k];
    }
    const double loss = lora_loss_gradients(model, lora, tokens, ce, grads);
    const double ref = c.at("loss").get<double>();
    const double loss_rel = rel_error(loss, ref);
    EXPECT_LE(loss_rel, loss_bound) << name << ": loss " << loss << " vs " << ref;
    EXPECT_GT(std::fabs(loss - loss0), 10 * loss_bound * std::fabs(ref)) << name << ": the adapters change nothing";

    const std::string grad_file = test::shared_path("train/" + c.at("grad_file").get<std::string>());
    std::vector<NamedTensor> g = lora_tensors(grads);
    ASSERT_EQ(g.size(), c.at("tensors").size()) << name;
    double worst = 0;
    std::string worst_name;
    for (size_t i = 0; i < g.size(); ++i) {
      const auto& t = c.at("tensors")[i];
      ASSERT_EQ(g[i].name, t.at("name").get<std::string>()) << name;
      EXPECT_TRUE(t.at("trainable").get<bool>()) << name << " " << g[i].name;
      const uint64_t count = t.at("n_elements").get<uint64_t>();
      ASSERT_EQ(g[i].values->size(), count) << name << " " << g[i].name;
      const std::vector<float> expected = read_floats(grad_file, t.at("offset").get<uint64_t>(), count);
      double diff = 0, norm = 0;
      for (uint64_t k = 0; k < count; ++k) {
        const double d = (*g[i].values)[k] - expected[k];
        diff += d * d;
        norm += static_cast<double>(expected[k]) * expected[k];
      }
      ASSERT_GT(norm, 0) << name << " " << g[i].name;
      const double rel = std::sqrt(diff / norm);
      EXPECT_LE(rel, grad_bound) << name << " " << g[i].name;
      if (rel > worst) worst = rel, worst_name = g[i].name;
    }
    std::printf("  %-16s loss %.10f (rel %.2e), without adapter rel %.2e, %zu tensors, worst rel L2 %.2e (%s)\n",
                name.c_str(), loss, loss_rel, rel_error(loss0, ref0), g.size(), worst, worst_name.c_str());
  }
  EXPECT_EQ(cases, 3);
}

TEST(TrainLora, BadConfigurationsAreRefused) {
  EXPECT_THROW(parse_lora_target("qkv"), Error);
  const ReferenceModel model = load_reference_model(test::shared_path("golden/llama-f32.gguf"));
  EXPECT_THROW(zero_lora(model, {.rank = 0, .alpha = 8, .targets = {LoraTarget::q}}), Error);
  EXPECT_THROW(zero_lora(model, {.rank = 4, .alpha = 0, .targets = {LoraTarget::q}}), Error);
  EXPECT_THROW(zero_lora(model, {.rank = 4, .alpha = 8, .targets = {LoraTarget::q, LoraTarget::q}}), Error);
  // Shapes of every projection: o and down write into the residual stream.
  Lora all = zero_lora(model, {.rank = 2, .alpha = 4, .targets = {LoraTarget::o, LoraTarget::down, LoraTarget::k}});
  const int64_t D = static_cast<int64_t>(model.params.layers[0].attn_norm.size());
  EXPECT_EQ(all.adapters[0].out, D);
  EXPECT_EQ(all.adapters[1].out, D);
  EXPECT_EQ(all.adapters[2].in, D);
  EXPECT_EQ(all.adapters[1].in * D, static_cast<int64_t>(model.params.layers[0].w_down.size()));
}

}  // namespace
}  // namespace orchard::train
