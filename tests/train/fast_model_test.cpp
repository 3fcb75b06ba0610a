// The trainer's fast path against shared/train's float64 PyTorch gradients (every sft, kd and lora
// case, on the fast kernels and on the reference gemm), and against the double reference path
// (reference_model.h, lora.h) on batches of awkward lengths, with and without recomputation, over
// float and 4-bit bases.
#include "train/fast_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oracle_files.h"
#include "test_paths.h"
#include "train/loss.h"
#include "train/reference_model.h"

namespace orchard::train {
namespace {

double rel_l2(std::span<const float> x, std::span<const double> ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff += (x[i] - ref[i]) * (x[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

std::shared_ptr<const Model> load(const std::string& shared_relative) {
  return Model::load(test::shared_path(shared_relative), {.kernels = KernelChoice::reference});
}

TEST(TrainFastModel, GradientsMatchTheOracle) {
  const nlohmann::json manifest = read_manifest();
  const double grad_bound = manifest.at("tolerances").at("gradient_rel_l2_per_tensor").get<double>();
  const double loss_bound = manifest.at("tolerances").at("loss_rel").get<double>();
  const double T = manifest.at("hyperparameters").at("kd_temperature").get<double>();
  int cases = 0;
  for (KernelChoice kernels : {KernelChoice::fast, KernelChoice::reference})
    for (const auto& c : manifest.at("cases")) {
      const std::string kind = c.at("kind"), name = c.at("case");
      if (kind != "sft" && kind != "kd" && kind != "lora") continue;
      ++cases;
      const auto model = load(c.at("model").get<std::string>());
      FastModelOptions options{.kernels = kernels, .n_threads = 2};
      if (kind == "lora") {
        options.lora_rank = c.at("lora").at("rank").get<int64_t>();
        options.lora_alpha = c.at("lora").at("alpha").get<double>();
        options.lora_targets = {LoraTarget::q, LoraTarget::v};
      }
      FastModel fast(*model, options);
      if (kind == "lora") {
        const std::string init_file = test::shared_path("train/" + c.at("lora").at("init_file").get<std::string>());
        const auto& init = c.at("lora").at("init_tensors");
        ASSERT_EQ(fast.parameters().size(), init.size()) << name;
        for (size_t i = 0; i < init.size(); ++i) {
          Parameter& p = fast.parameters()[i];
          ASSERT_EQ(p.name, init[i].at("name").get<std::string>()) << name;
          const std::vector<float> v =
              read_floats(init_file, init[i].at("offset").get<uint64_t>(), init[i].at("n_elements").get<uint64_t>());
          ASSERT_EQ(v.size(), p.value.size()) << name << " " << p.name;
          std::copy(v.begin(), v.end(), p.value.begin());
        }
      }
      const std::vector<int32_t> tokens = c.at("tokens").get<std::vector<int32_t>>();
      const int64_t n = static_cast<int64_t>(tokens.size()), V = fast.config().n_vocab;
      std::vector<int32_t> targets, ids;
      std::vector<uint8_t> mask;
      std::vector<float> probs;
      sft_targets(tokens, targets, mask);
      if (kind == "kd") {
        for (const auto& row : c.at("teacher_topk_ids")) for (int32_t id : row.get<std::vector<int32_t>>()) ids.push_back(id);
        for (const auto& row : c.at("teacher_topk_probs"))
          for (double p : row.get<std::vector<double>>()) probs.push_back(static_cast<float>(p));
      }
      const int64_t k = kind == "kd" ? static_cast<int64_t>(ids.size()) / n : 0;
      const TeacherTopK teacher{.k = k, .ids = ids, .probs = probs};
      const std::vector<std::vector<int32_t>> batch = {tokens};
      const double loss = fast.loss_gradients(batch, [&](size_t, std::span<const float> logits, std::span<float> dl) {
        if (kind == "kd")
          return distill_loss(logits, n, V, teacher, {.divergence = Divergence::forward_kl, .temperature = T}, {}, dl);
        return cross_entropy(logits, n, V, targets, mask, dl);
      });
      const double expected = c.at("loss").get<double>();
      EXPECT_LE(std::fabs(loss - expected) / std::fabs(expected), loss_bound) << name << ": " << loss << " vs " << expected;

      std::map<std::string, const Parameter*> ours;
      for (const Parameter& p : fast.parameters()) ours[p.name] = &p;
      const std::string grad_file = test::shared_path("train/" + c.at("grad_file").get<std::string>());
      double worst = 0;
      std::string worst_name;
      for (const auto& t : c.at("tensors")) {
        if (!t.at("trainable").get<bool>()) continue;
        const std::string tname = t.at("name");
        auto it = ours.find(tname);
        if (it == ours.end()) {
          ADD_FAILURE() << name << ": no gradient for " << tname;
          continue;
        }
        const std::vector<float> ref = read_floats(grad_file, t.at("offset").get<uint64_t>(), t.at("n_elements").get<uint64_t>());
        ASSERT_EQ(ref.size(), it->second->grad.size()) << name << " " << tname;
        const std::vector<double> ref_d(ref.begin(), ref.end());
        const double rel = rel_l2(it->second->grad, ref_d);
        EXPECT_LE(rel, grad_bound) << name << " " << tname << " (" << (kernels == KernelChoice::fast ? "fast" : "reference") << ")";
        if (rel > worst) worst = rel, worst_name = tname;
        ours.erase(it);
      }
      EXPECT_TRUE(ours.empty()) << name << ": " << ours.size() << " parameters the oracle does not have";
      std::printf("  %-9s %-16s loss rel %.2e, worst gradient rel L2 %.2e (%s)\n",
                  kernels == KernelChoice::fast ? "fast" : "reference", name.c_str(),
                  std::fabs(loss - expected) / std::fabs(expected), worst, worst_name.c_str());
    }
  EXPECT_EQ(cases, 2 * 10);
}

// A batch of sequences of awkward lengths, cross-entropy on every row but the last with random
// targets: the fast path's loss and gradients against the sum of the reference path's per sequence.
struct AwkwardBatch {
  std::vector<std::vector<int32_t>> sequences;
  std::vector<std::vector<int32_t>> targets;
  std::vector<std::vector<uint8_t>> masks;

  AwkwardBatch(int64_t vocab, std::vector<int64_t> lengths, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(std::min<int64_t>(vocab, 4096)) - 1);
    for (int64_t T : lengths) {
      std::vector<int32_t> s(static_cast<size_t>(T)), t(static_cast<size_t>(T));
      std::vector<uint8_t> m(static_cast<size_t>(T), 1);
      for (int64_t i = 0; i < T; ++i) s[static_cast<size_t>(i)] = id(rng), t[static_cast<size_t>(i)] = id(rng);
      if (T > 1) m.back() = 0;
      sequences.push_back(s);
      targets.push_back(t);
      masks.push_back(m);
    }
  }
  double loss(size_t i, std::span<const float> logits, std::span<float> dl, int64_t V) const {
    return cross_entropy(logits, static_cast<int64_t>(sequences[i].size()), V, targets[i], masks[i], dl);
  }
};

TEST(TrainFastModel, MatchesTheReferenceOnAwkwardBatchesAndRecomputes) {
  for (const char* path : {"models/stories260K/stories260K.gguf", "golden/llama-f32.gguf", "golden/qwen2-f32.gguf",
                           "golden/qwen3-f32.gguf"}) {
    const std::string full = std::string(path).rfind("models/", 0) == 0 ? test::source_path(path) : test::shared_path(path);
    const auto model = Model::load(full, {.kernels = KernelChoice::reference});
    const ReferenceModel ref = load_reference_model(full);
    const int64_t V = ref.config.n_vocab;
    const AwkwardBatch batch(V, {1, 7, 13, 2}, 11);
    ReferenceParams ref_grads = zeros_like(ref.params);
    double ref_loss = 0;
    for (size_t s = 0; s < batch.sequences.size(); ++s)
      ref_loss += reference_loss_gradients(ref, batch.sequences[s],
                                           [&](std::span<const float> l, std::span<float> d) { return batch.loss(s, l, d, V); },
                                           ref_grads);
    std::vector<std::vector<float>> plain;
    for (bool recompute : {false, true}) {
      FastModel fast(*model, {.kernels = KernelChoice::fast, .n_threads = 2, .recompute = recompute});
      const double loss = fast.loss_gradients(
          batch.sequences, [&](size_t s, std::span<const float> l, std::span<float> d) { return batch.loss(s, l, d, V); });
      EXPECT_NEAR(loss, ref_loss, 1e-5 * std::fabs(ref_loss)) << path;
      std::map<std::string, const std::vector<double>*> by_name;
      for (const NamedTensor& t : named_tensors(ref_grads, ref.config)) by_name[t.name] = t.values;
      ASSERT_EQ(by_name.size(), fast.parameters().size()) << path;
      double worst = 0;
      for (size_t i = 0; i < fast.parameters().size(); ++i) {
        const Parameter& p = fast.parameters()[i];
        ASSERT_TRUE(by_name.count(p.name)) << path << " " << p.name;
        const double rel = rel_l2(p.grad, *by_name[p.name]);
        EXPECT_LE(rel, 2e-5) << path << " " << p.name;
        worst = std::max(worst, rel);
        if (!recompute) plain.emplace_back(p.grad.begin(), p.grad.end());
        else EXPECT_EQ(plain[i], std::vector<float>(p.grad.begin(), p.grad.end())) << path << " " << p.name << ": recomputation changed it";
      }
      if (!recompute) std::printf("  %-36s loss %.8f, worst gradient rel L2 vs double %.2e\n", path, loss, worst);
    }
  }
}

// LoRA on every projection over a 4-bit base (q4_0): the gradient flows through the dequantized
// base, as the reference computes it on the same dequantized weights.
TEST(TrainFastModel, LoraOverAFourBitBaseMatchesTheReference) {
  const std::string path = test::shared_path("golden/qwen2-q4_0.gguf");
  const auto model = Model::load(path, {.kernels = KernelChoice::reference});
  const ReferenceModel ref = load_reference_model(path);
  const int64_t V = ref.config.n_vocab;
  FastModelOptions options{.kernels = KernelChoice::fast, .n_threads = 2, .lora_rank = 3, .lora_alpha = 5};
  options.lora_targets = {LoraTarget::q, LoraTarget::k, LoraTarget::v, LoraTarget::o, LoraTarget::gate,
                          LoraTarget::up, LoraTarget::down};
  FastModel fast(*model, options);
  // Non-zero A and B, so that both adapter gradients and the adapters' forward contribution count.
  Lora lora = fast.lora();
  std::mt19937 rng(5);
  std::normal_distribution<double> normal(0, 0.05);
  for (LoraAdapter& a : lora.adapters) {
    for (double& v : a.a) v = static_cast<float>(normal(rng));
    for (double& v : a.b) v = static_cast<float>(normal(rng));
  }
  fast.set_lora(lora);
  const AwkwardBatch batch(V, {9, 3}, 3);
  const double loss = fast.loss_gradients(
      batch.sequences, [&](size_t s, std::span<const float> l, std::span<float> d) { return batch.loss(s, l, d, V); });
  Lora total;
  double ref_loss = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    Lora g;
    ref_loss += lora_loss_gradients(ref, lora, batch.sequences[s],
                                    [&](std::span<const float> l, std::span<float> d) { return batch.loss(s, l, d, V); }, g);
    if (total.adapters.empty()) total = g;
    else
      for (size_t i = 0; i < g.adapters.size(); ++i) {
        for (size_t j = 0; j < g.adapters[i].a.size(); ++j) total.adapters[i].a[j] += g.adapters[i].a[j];
        for (size_t j = 0; j < g.adapters[i].b.size(); ++j) total.adapters[i].b[j] += g.adapters[i].b[j];
      }
  }
  EXPECT_NEAR(loss, ref_loss, 1e-5 * std::fabs(ref_loss));
  const std::vector<NamedTensor> expected = lora_tensors(total);
  ASSERT_EQ(expected.size(), fast.parameters().size());
  double worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const Parameter& p = fast.parameters()[i];
    ASSERT_EQ(p.name, expected[i].name);
    const double rel = rel_l2(p.grad, *expected[i].values);
    EXPECT_LE(rel, 2e-5) << p.name;
    worst = std::max(worst, rel);
  }
  std::printf("  qwen2-q4_0 LoRA r3 on 7 projections: loss %.8f, worst adapter gradient rel L2 %.2e\n", loss, worst);
}

TEST(TrainFastModel, BadInputIsRefused) {
  const auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"), {.kernels = KernelChoice::reference});
  FastModel fast(*model, {.n_threads = 1});
  const auto loss = [](size_t, std::span<const float>, std::span<float>) { return 0.0; };
  const std::vector<std::vector<int32_t>> outside = {{1, 2, 512}};
  try {
    fast.loss_gradients(outside, loss);
    FAIL() << "a token outside the vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 512 at position 2"), std::string::npos) << e.what();
  }
  const std::vector<std::vector<int32_t>> empty = {{1, 2}, {}};
  EXPECT_THROW(fast.loss_gradients(empty, loss), Error);
  FastModelOptions twice{.lora_rank = 2};
  twice.lora_targets = {LoraTarget::q, LoraTarget::q};
  EXPECT_THROW(FastModel(*model, twice), Error);
  EXPECT_THROW(FastModel(*model, {.lora_rank = 100}), Error);
}

}  // namespace
}  // namespace orchard::train
