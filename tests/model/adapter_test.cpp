// LoRA adapters at inference (orchard/adapter.h): an unmerged adapter's logits against the model
// with the adapter merged into its float32 weights by the trainer's independent writer
// (train::merge_adapter_into_gguf), for PEFT folders and GGUF LoRAs written by the trainer, on
// a llama GGUF (stories260K: q/k rows permuted) and a Qwen2 one; rsLoRA and the multiplier;
// batch invariance with mixed adapters on every ISA path; a quantized base against its merged
// float32 copy; limited-memory mode bitwise equal to mapped; refusals naming the file.
#include "orchard/adapter.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "flash/residency.h"
#include "formats/gguf_writer.h"
#include "golden.h"
#include "kernels/kernels.h"
#include "model/adapter_impl.h"
#include "model/transformer.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "train/adapter_io.h"

namespace orchard {
namespace {

using train::Lora;
using train::LoraAdapter;
using train::LoraTarget;

const std::vector<LoraTarget> kAll = {LoraTarget::q,    LoraTarget::k,  LoraTarget::v,   LoraTarget::o,
                                      LoraTarget::gate, LoraTarget::up, LoraTarget::down};
const std::string kStories = "models/stories260K/stories260K.gguf";
const std::string kQwen = "golden/qwen2-f32.gguf";

std::shared_ptr<const Model> load(const std::string& relative, KernelChoice kernels) {
  static std::map<std::pair<std::string, KernelChoice>, std::shared_ptr<const Model>> cache;
  auto& slot = cache[{relative, kernels}];
  if (!slot) slot = Model::load(test::shared_path(relative), {.kernels = kernels});
  return slot;
}

// [out, in] of a target, written out here from the configuration.
std::pair<int64_t, int64_t> out_in(const ModelConfig& c, LoraTarget t) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  switch (t) {
    case LoraTarget::q: return {q, c.dim};
    case LoraTarget::k:
    case LoraTarget::v: return {kv, c.dim};
    case LoraTarget::o: return {c.dim, q};
    case LoraTarget::gate:
    case LoraTarget::up: return {c.ffn_dim, c.dim};
    case LoraTarget::down: return {c.dim, c.ffn_dim};
  }
  return {0, 0};
}

// Random A and B (B nonzero, unlike a fresh adapter's) with float values, in the model's rows.
Lora random_lora(const ModelConfig& c, int64_t rank, double alpha, std::vector<LoraTarget> targets, uint32_t seed,
                 float range = 0.08f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-range, range);
  Lora lora;
  lora.config = {.rank = rank, .alpha = alpha, .targets = std::move(targets)};
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (LoraTarget t : lora.config.targets) {
      const auto [out, in] = out_in(c, t);
      LoraAdapter a{.layer = l, .target = t, .in = in, .out = out, .a = {}, .b = {}};
      for (int64_t i = 0; i < rank * in; ++i) a.a.push_back(u(rng));
      for (int64_t i = 0; i < out * rank; ++i) a.b.push_back(u(rng));
      lora.adapters.push_back(std::move(a));
    }
  return lora;
}

std::vector<int32_t> tokens_for(const ModelConfig& c, uint32_t seed, size_t n = 12) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(c.n_vocab));
  return t;
}

// Every position's logits of `tokens` run as one prefill, with `adapter` (or the base).
std::vector<float> logits(const Model& model, const Kernels& kernels, const std::vector<int32_t>& tokens,
                          const Adapter* adapter, int threads = 1) {
  Transformer t(model.impl(), kernels, 64, threads, 1);
  std::vector<float> out(tokens.size() * static_cast<size_t>(model.config().n_vocab));
  const SequenceTokens entry{.sequence = 0, .start = 0, .tokens = tokens, .all_logits = true, .adapter = adapter};
  t.forward(std::span<const SequenceTokens>(&entry, 1), out.data());
  return out;
}

const Kernels& kernels_of(KernelChoice k) { return k == KernelChoice::fast ? select_kernels(k) : reference_kernels(); }

double fast_tolerance(const std::string& model) {
  for (const test::GoldenCase& g : test::golden_cases())
    if ("golden/" + g.model == model) return g.fast_tolerance_kl;
  return 1e-5;  // stories260K: the floor the golden manifest gives every type
}

// The oracle: `lora` merged into a copy of the base GGUF by the trainer, loaded as a model.
std::shared_ptr<const Model> merged_by_trainer(const std::string& base, const Lora& lora, const test::TempDir& dir,
                                               KernelChoice kernels) {
  const std::string path = dir.file("merged-" + std::to_string(std::rand()) + ".gguf");
  train::merge_adapter_into_gguf(test::shared_path(base), lora, path);
  return Model::load(path, {.kernels = kernels});
}

// The delta's two steps on awkward shapes (lengths below, at and past the 16 lanes and the
// 256-output blocks) against a double-precision sum written here; the outputs split into
// arbitrary ranges (as the workers split them) bitwise equal to one call; four rows at once
// bitwise each row alone.
TEST(Adapter, DeltaRowMatchesDoubleOnAwkwardShapes) {
  std::mt19937 rng(71);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const int64_t in : {1, 15, 16, 17, 33, 100})
    for (const int64_t out : {1, 7, 256, 300})
      for (const int64_t rank : {1, 3, 16}) {
        AdapterMatrices m{.layer = 0, .target = AdapterTarget::q, .in = in, .out = out, .a = {}, .b = {}};
        for (int64_t i = 0; i < rank * in; ++i) m.a.push_back(u(rng));
        for (int64_t i = 0; i < out * rank; ++i) m.b.push_back(u(rng));
        m.bt.resize(m.b.size());
        for (int64_t o = 0; o < out; ++o)
          for (int64_t k = 0; k < rank; ++k) m.bt[static_cast<size_t>(k * out + o)] = m.b[static_cast<size_t>(o * rank + k)];
        std::vector<float> x(static_cast<size_t>(in)), y0(static_cast<size_t>(out));
        for (float& v : x) v = u(rng);
        for (float& v : y0) v = u(rng);
        const float scale = 0.37f;
        std::vector<float> y = y0;
        add_lora_delta_row(m, scale, x.data(), y.data());
        for (int64_t o = 0; o < out; ++o) {
          double expected = 0, magnitude = 0;
          for (int64_t k = 0; k < rank; ++k) {
            double ax = 0, ax_abs = 0;
            for (int64_t i = 0; i < in; ++i) {
              ax += static_cast<double>(m.a[static_cast<size_t>(k * in + i)]) * x[static_cast<size_t>(i)];
              ax_abs += std::abs(static_cast<double>(m.a[static_cast<size_t>(k * in + i)]) * x[static_cast<size_t>(i)]);
            }
            expected += static_cast<double>(m.b[static_cast<size_t>(o * rank + k)]) * ax;
            magnitude += std::abs(static_cast<double>(m.b[static_cast<size_t>(o * rank + k)])) * ax_abs;
          }
          expected = y0[static_cast<size_t>(o)] + scale * expected;
          // float32 sums: a few ulps of the terms' magnitudes.
          EXPECT_NEAR(y[static_cast<size_t>(o)], expected, 1e-6 * (in + rank + 4) * (scale * magnitude + 1))
              << "in " << in << " out " << out << " rank " << rank << " output " << o;
        }
        std::vector<float> us(static_cast<size_t>(rank));
        for (int64_t k = 0; k < rank; ++k) us[static_cast<size_t>(k)] = lora_a_dot(m, k, x.data());
        std::vector<float> split = y0;
        for (int64_t o = 0; o < out;) {
          const int64_t e = std::min(out, o + 1 + static_cast<int64_t>(rng() % 300));
          lora_add_b(m, us.data(), scale, o, e, split.data());
          o = e;
        }
        EXPECT_EQ(std::memcmp(split.data(), y.data(), y.size() * sizeof(float)), 0)
            << "in " << in << " out " << out << " rank " << rank;
        // Four rows at once (lora_a_dot4, lora_add_b4): bitwise each row alone.
        std::vector<std::vector<float>> xs(4, std::vector<float>(static_cast<size_t>(in))), ys(4, y0), alone(4, y0);
        for (auto& row : xs)
          for (float& v : row) v = u(rng);
        const float* const x4[4] = {xs[0].data(), xs[1].data(), xs[2].data(), xs[3].data()};
        float* const y4[4] = {ys[0].data(), ys[1].data(), ys[2].data(), ys[3].data()};
        std::vector<float> u4(static_cast<size_t>(4 * rank));
        for (int64_t k = 0; k < rank; ++k) lora_a_dot4(m, k, x4, &u4[static_cast<size_t>(k)], rank);
        lora_add_b4(m, u4.data(), rank, scale, 0, out, y4);
        for (size_t r = 0; r < 4; ++r) {
          add_lora_delta_row(m, scale, xs[r].data(), alone[r].data());
          for (int64_t k = 0; k < rank; ++k)
            EXPECT_EQ(u4[r * static_cast<size_t>(rank) + static_cast<size_t>(k)], lora_a_dot(m, k, xs[r].data()));
          EXPECT_EQ(std::memcmp(ys[r].data(), alone[r].data(), y0.size() * sizeof(float)), 0)
              << "four rows: in " << in << " out " << out << " rank " << rank << " row " << r;
        }
      }
}

// (a) For a llama GGUF (q/k permuted) and a Qwen2 one, all seven targets: the PEFT folder and the
// GGUF LoRA the trainer writes, applied unmerged, give the merged model's logits.
TEST(Adapter, UnmergedEqualsTrainerMergedPeftAndGguf) {
  for (const std::string& model_path : {kStories, kQwen}) {
    SCOPED_TRACE(model_path);
    const ModelConfig c = load(model_path, KernelChoice::reference)->config();
    for (const TensorSummary& t : load(model_path, KernelChoice::reference)->tensors())
      if (t.name.find("attn_q.weight") != std::string::npos) {
        ASSERT_EQ(t.type, "F32") << "the oracle merges float bases";
      }
    const Lora lora = random_lora(c, 4, 6.0, kAll, 11);
    test::TempDir dir;
    train::save_peft_adapter(lora, c, dir.file("peft"));
    train::save_gguf_adapter(lora, c, dir.file("lora.gguf"));
    const std::vector<int32_t> tokens = tokens_for(c, 5);
    for (const KernelChoice k : {KernelChoice::reference, KernelChoice::fast}) {
      SCOPED_TRACE(k == KernelChoice::fast ? "fast" : "reference");
      auto model = load(model_path, k);
      const std::vector<float> expected = logits(*merged_by_trainer(model_path, lora, dir, k), kernels_of(k), tokens, nullptr);
      const std::vector<float> base = logits(*model, kernels_of(k), tokens, nullptr);
      // The adapter must matter far more than the bound, or the comparison says nothing.
      const double bound = k == KernelChoice::reference ? 1e-8 : fast_tolerance(model_path);
      EXPECT_GT(test::mean_kl_divergence(expected, base, c.n_vocab), 100 * bound);
      for (const std::string& file : {dir.file("peft"), dir.file("lora.gguf")}) {
        auto adapter = Adapter::load(*model, file);
        EXPECT_EQ(adapter->rank(), 4);
        EXPECT_EQ(adapter->path(), file);
        EXPECT_LE(test::mean_kl_divergence(expected, logits(*model, kernels_of(k), tokens, adapter.get()), c.n_vocab),
                  bound)
            << file;
      }
    }
  }
}

// rsLoRA scales by alpha / sqrt(r), and the multiplier scales that: both against the trainer's
// merge with the alpha that gives the same alpha / r.
TEST(Adapter, RsLoraAndMultiplierScale) {
  const ModelConfig c = load(kQwen, KernelChoice::reference)->config();
  auto model = load(kQwen, KernelChoice::reference);
  const Lora lora = random_lora(c, 9, 4.0, {LoraTarget::q, LoraTarget::v, LoraTarget::down}, 3);
  test::TempDir dir;
  train::save_peft_adapter(lora, c, dir.file("peft"));
  nlohmann::json j = nlohmann::json::parse(test::read_text(dir.file("peft/adapter_config.json")));
  j["use_rslora"] = true;
  dir.write("peft/adapter_config.json", j.dump());
  const std::vector<int32_t> tokens = tokens_for(c, 8);
  for (const float multiplier : {1.0f, -0.75f}) {
    Lora same = lora;
    same.config.alpha = 4.0 * std::sqrt(9.0) * multiplier;  // alpha'/9 = multiplier * 4/sqrt(9)
    if (multiplier < 0) {  // the trainer's merge takes alpha > 0: negate B instead
      same.config.alpha = -same.config.alpha;
      for (LoraAdapter& a : same.adapters)
        for (double& b : a.b) b = -b;
    }
    auto adapter = Adapter::load(*model, dir.file("peft"), multiplier);
    EXPECT_NEAR(adapter->impl().scale, multiplier * 4.0 / 3.0, 1e-6);
    const std::vector<float> expected =
        logits(*merged_by_trainer(kQwen, same, dir, KernelChoice::reference), reference_kernels(), tokens, nullptr);
    EXPECT_LE(test::mean_kl_divergence(expected, logits(*model, reference_kernels(), tokens, adapter.get()), c.n_vocab),
              1e-8)
        << multiplier;
  }
}

// (b) Mixed adapters and the base in one batch: every sequence's logits bitwise those it has
// alone, token by token, on one thread; on the reference kernels and every ISA path.
TEST(Adapter, MixedBatchesAreBitwiseAlone) {
  for (const std::string& model_path : {kStories, std::string("golden/qwen2-q8_0.gguf")}) {
    SCOPED_TRACE(model_path);
    const ModelConfig c = load(model_path, KernelChoice::reference)->config();
    test::TempDir dir;
    train::save_peft_adapter(random_lora(c, 3, 5.0, kAll, 21), c, dir.file("one"));
    train::save_gguf_adapter(random_lora(c, 8, 8.0, {LoraTarget::q, LoraTarget::o, LoraTarget::up}, 22), c,
                             dir.file("two.gguf"));
    std::vector<std::vector<int32_t>> seqs;
    for (uint32_t s = 0; s < 7; ++s) seqs.push_back(tokens_for(c, 100 + s, 3 + (s * 5) % 9));
    std::vector<std::pair<std::string, const Kernels*>> kernel_sets = {{"reference", &reference_kernels()}};
    for (Isa isa : supported_isas()) kernel_sets.push_back({std::string(isa_name(isa)), &fast_kernels(isa)});
    for (const auto& [name, kernels] : kernel_sets) {
      SCOPED_TRACE(name);
      auto model = load(model_path, name == "reference" ? KernelChoice::reference : KernelChoice::fast);
      const std::shared_ptr<const Adapter> adapters[] = {Adapter::load(*model, dir.file("one")),
                                                         Adapter::load(*model, dir.file("two.gguf"), 0.5f), nullptr};
      auto adapter_of = [&](size_t s) { return adapters[s % 3].get(); };
      const int64_t n_vocab = c.n_vocab;
      // Alone, one token per pass.
      std::vector<std::vector<float>> expected(seqs.size());
      {
        Transformer t(model->impl(), *kernels, 32, 1, static_cast<int64_t>(seqs.size()));
        for (size_t s = 0; s < seqs.size(); ++s)
          for (size_t i = 0; i < seqs[s].size(); ++i) {
            std::vector<float> row(static_cast<size_t>(n_vocab));
            const SequenceTokens e{.sequence = static_cast<int64_t>(s), .start = static_cast<int64_t>(i),
                                   .tokens = std::span<const int32_t>(&seqs[s][i], 1), .all_logits = true,
                                   .adapter = adapter_of(s)};
            t.forward(std::span<const SequenceTokens>(&e, 1), row.data());
            expected[s].insert(expected[s].end(), row.begin(), row.end());
          }
      }
      // Together: chunks of 1 to 4 tokens of every open sequence per pass, on two threads.
      Transformer t(model->impl(), *kernels, 32, 2, static_cast<int64_t>(seqs.size()));
      std::vector<size_t> done(seqs.size(), 0);
      std::vector<std::vector<float>> actual(seqs.size());
      for (int pass = 0;; ++pass) {
        std::vector<SequenceTokens> batch;
        for (size_t s = 0; s < seqs.size(); ++s) {
          const size_t n = std::min<size_t>(seqs[s].size() - done[s], 1 + (s + static_cast<size_t>(pass)) % 4);
          if (n == 0) continue;
          batch.push_back({.sequence = static_cast<int64_t>(s), .start = static_cast<int64_t>(done[s]),
                           .tokens = std::span<const int32_t>(&seqs[s][done[s]], n), .all_logits = true,
                           .adapter = adapter_of(s)});
          done[s] += n;
        }
        if (batch.empty()) break;
        int64_t rows = 0;
        for (const SequenceTokens& e : batch) rows += static_cast<int64_t>(e.tokens.size());
        std::vector<float> out(static_cast<size_t>(rows * n_vocab));
        t.forward(batch, out.data());
        int64_t r = 0;
        for (const SequenceTokens& e : batch) {
          auto& dst = actual[static_cast<size_t>(e.sequence)];
          dst.insert(dst.end(), out.begin() + r * n_vocab, out.begin() + (r + static_cast<int64_t>(e.tokens.size())) * n_vocab);
          r += static_cast<int64_t>(e.tokens.size());
        }
      }
      for (size_t s = 0; s < seqs.size(); ++s) {
        ASSERT_EQ(actual[s].size(), expected[s].size());
        EXPECT_EQ(std::memcmp(actual[s].data(), expected[s].data(), actual[s].size() * sizeof(float)), 0)
            << "sequence " << s << " (adapter " << s % 3 << ")";
      }
      // And the adapters do change the logits (the base's sequence 2 is not what adapter 0 gives it).
      const std::vector<float> base = logits(*model, *kernels, seqs[0], nullptr);
      EXPECT_NE(std::memcmp(base.data(), expected[0].data(), base.size() * sizeof(float)), 0);
    }
  }
}

// (c) Over quantized bases: the unmerged adapter against merge_adapters' float32 copy (the
// dequantized base plus the delta, summed in double), on both kernel sets.
TEST(Adapter, QuantizedBaseMatchesMergedCopy) {
  for (const std::string& model_path : {std::string("golden/qwen2-q4_0.gguf"), std::string("golden/llama-q8_0.gguf")}) {
    SCOPED_TRACE(model_path);
    for (const KernelChoice k : {KernelChoice::reference, KernelChoice::fast}) {
      SCOPED_TRACE(k == KernelChoice::fast ? "fast" : "reference");
      auto model = load(model_path, k);
      const ModelConfig& c = model->config();
      test::TempDir dir;
      train::save_peft_adapter(random_lora(c, 5, 10.0, kAll, 31), c, dir.file("peft"));
      auto adapter = Adapter::load(*model, dir.file("peft"));
      const std::shared_ptr<const Adapter> list[] = {adapter};
      auto merged = merge_adapters(model, list, k);
      for (const TensorSummary& t : merged->tensors())
        if (t.name.find("ffn_up.weight") != std::string::npos) {
          EXPECT_EQ(t.type, "F32");
        }
      const std::vector<int32_t> tokens = tokens_for(c, 9);
      const std::vector<float> expected = logits(*merged, kernels_of(k), tokens, nullptr);
      const std::vector<float> actual = logits(*model, kernels_of(k), tokens, adapter.get());
      // The quantized matmul quantizes activations where the float32 one does not (fast), so the
      // fast bound is the model's; the reference kernels compute both in float.
      const double bound = k == KernelChoice::reference ? 1e-8 : fast_tolerance(model_path);
      EXPECT_LE(test::mean_kl_divergence(expected, actual, c.n_vocab), bound);
      EXPECT_GT(test::mean_kl_divergence(expected, logits(*model, kernels_of(k), tokens, nullptr), c.n_vocab), 100 * bound);
    }
  }
}

// merge_adapters on a float base against the trainer's merge: the same sum, two implementations.
TEST(Adapter, MergeMatchesTrainerMerge) {
  auto model = load(kStories, KernelChoice::reference);
  const ModelConfig& c = model->config();
  const Lora lora = random_lora(c, 4, 6.0, kAll, 41);
  test::TempDir dir;
  train::save_gguf_adapter(lora, c, dir.file("a.gguf"));
  const std::shared_ptr<const Adapter> list[] = {Adapter::load(*model, dir.file("a.gguf"))};
  const std::vector<int32_t> tokens = tokens_for(c, 2);
  const std::vector<float> expected =
      logits(*merged_by_trainer(kStories, lora, dir, KernelChoice::reference), reference_kernels(), tokens, nullptr);
  EXPECT_LE(test::mean_kl_divergence(expected, logits(*merge_adapters(model, list), reference_kernels(), tokens, nullptr),
                                     c.n_vocab),
            1e-10);
}

// (d) Limited-memory mode: the adapter stays resident and its delta follows the streamed matmul;
// logits bitwise those of the mapped model with the same adapter.
TEST(Adapter, LimitedMemoryEqualsMapped) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  for (const KernelChoice k : {KernelChoice::reference, KernelChoice::fast}) {
    SCOPED_TRACE(k == KernelChoice::fast ? "fast" : "reference");
    auto mapped = Model::load(path, {.kernels = k, .measure_activation_levels = false});  // as streamed
    const ModelConfig& c = mapped->config();
    const uint64_t minimum = minimum_memory_budget(mapped->impl().weights, mapped->impl().files.front()->data(),
                                                   k == KernelChoice::fast);
    test::TempDir cache;
    auto streamed = Model::load(path, {.kernels = k, .memory_budget = minimum, .flash_layout_dir = cache.path()});
    train::save_peft_adapter(random_lora(c, 4, 8.0, kAll, 51), c, cache.file("peft"));
    const std::vector<int32_t> tokens = tokens_for(c, 4);
    const std::vector<float> expected =
        logits(*mapped, kernels_of(k), tokens, Adapter::load(*mapped, cache.file("peft")).get(), 2);
    Transformer t(streamed->impl(), kernels_of(k), 64, 2, 1);
    std::vector<float> actual(expected.size());
    const auto adapter = Adapter::load(*streamed, cache.file("peft"));
    const SequenceTokens e{.sequence = 0, .start = 0, .tokens = tokens, .all_logits = true, .adapter = adapter.get()};
    t.forward(std::span<const SequenceTokens>(&e, 1), actual.data());
    EXPECT_TRUE(t.flash_stats().active);
    EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)), 0);
  }
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

testing::AssertionResult names(const std::string& message, const std::string& file, const std::string& what) {
  if (message.find(file) != std::string::npos && message.find(what) != std::string::npos)
    return testing::AssertionSuccess();
  return testing::AssertionFailure() << "'" << message << "' lacks '" << file << "' or '" << what << "'";
}

// A GGUF LoRA written here tensor by tensor: (name, ne) float32 tensors filled with 0.01.
std::string write_gguf_lora(const test::TempDir& dir, const std::string& name, const std::string& arch,
                            const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors,
                            const std::string& type = "adapter") {
  GgufWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", type);
  w.set_string("adapter.type", "lora");
  w.set_f32("adapter.lora.alpha", 4.0f);
  for (const auto& [n, ne] : tensors) w.add_tensor(n, ne, DType::F32);
  const std::string path = dir.file(name);
  w.begin(path);
  for (const auto& [n, ne] : tensors) {
    const std::vector<float> v(static_cast<size_t>(ne[0] * ne[1]), 0.01f);
    w.write(v.data(), v.size() * sizeof(float));
  }
  w.finish();
  return path;
}

// (e) Bad input: each refused with an error naming the file and the problem.
TEST(Adapter, BadAdaptersAreRefusedByName) {
  auto llama = load(kStories, KernelChoice::reference);
  auto qwen = load(kQwen, KernelChoice::reference);
  const ModelConfig& c = llama->config();  // dim 64, 8 heads of 8, 4 kv heads, ffn 172
  test::TempDir dir;
  const Lora lora = random_lora(c, 2, 4.0, {LoraTarget::q, LoraTarget::v}, 61);
  train::save_peft_adapter(lora, c, dir.file("good"));
  train::save_gguf_adapter(lora, c, dir.file("good.gguf"));
  EXPECT_EQ(Adapter::load(*llama, dir.file("good"))->rank(), 2);
  EXPECT_EQ(Adapter::load(*llama, dir.file("good.gguf"))->rank(), 2);

  // Another architecture (GGUF says so), another shape (PEFT: only the shapes tell).
  EXPECT_TRUE(names(error_of([&] { Adapter::load(*qwen, dir.file("good.gguf")); }), "good.gguf", "architecture \"llama\""));
  EXPECT_TRUE(names(error_of([&] { Adapter::load(*qwen, dir.file("good")); }), "adapter_model.safetensors",
                    "but this model needs"));
  // An adapter loaded for one model, run on another.
  {
    auto adapter = Adapter::load(*llama, dir.file("good"));
    Transformer t(qwen->impl(), reference_kernels(), 16, 1, 1);
    const std::vector<int32_t> tokens = {1, 2};
    std::vector<float> out(2 * static_cast<size_t>(qwen->config().n_vocab));
    const SequenceTokens e{.sequence = 0, .start = 0, .tokens = tokens, .all_logits = true, .adapter = adapter.get()};
    EXPECT_TRUE(names(error_of([&] { t.forward(std::span<const SequenceTokens>(&e, 1), out.data()); }), "good",
                      "another shape"));
  }

  // PEFT config problems.
  const std::string config_text = test::read_text(dir.file("good/adapter_config.json"));
  auto peft_with = [&](const std::string& name, const std::string& config) {
    std::filesystem::create_directories(dir.file(name));
    std::filesystem::copy_file(dir.file("good/adapter_model.safetensors"), dir.file(name + "/adapter_model.safetensors"));
    dir.write(name + "/adapter_config.json", config);
    return error_of([&] { Adapter::load(*llama, dir.file(name)); });
  };
  auto edited = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json j = nlohmann::json::parse(config_text);
    j[key] = value;
    return j.dump();
  };
  EXPECT_TRUE(names(peft_with("badjson", "{\"r\": 2,"), "badjson/adapter_config.json", "not valid JSON"));
  EXPECT_TRUE(names(peft_with("dora", edited("use_dora", true)), "dora/adapter_config.json", "DoRA"));
  EXPECT_TRUE(names(peft_with("bias", edited("bias", "all")), "bias/adapter_config.json", "bias"));
  EXPECT_TRUE(names(peft_with("fifo", edited("fan_in_fan_out", true)), "fifo/adapter_config.json", "fan_in_fan_out"));
  EXPECT_TRUE(names(peft_with("rank", edited("r", 3)), "rank/adapter_model.safetensors", "(r = 3)"));
  EXPECT_TRUE(names(peft_with("unknown", edited("target_modules", {"q_proj", "lm_head"})), "unknown/adapter_config.json",
                    "target module 'lm_head'"));
  EXPECT_TRUE(names(peft_with("missing", edited("target_modules", {"q_proj", "v_proj", "k_proj"})),
                    "missing/adapter_model.safetensors", "missing tensor"));
  EXPECT_TRUE(names(peft_with("extra", edited("target_modules", {"q_proj"})), "extra/adapter_model.safetensors",
                    "unexpected tensor"));
  EXPECT_TRUE(names(error_of([&] { Adapter::load(*llama, dir.file("nothing-here")); }), "nothing-here", "no such adapter"));

  // GGUF LoRA problems: rank mismatch, a missing partner, an unknown tensor, a shape that does
  // not fit, not an adapter at all.
  const std::string attn_q = "blk.0.attn_q.weight";
  EXPECT_TRUE(names(error_of([&] {
                      Adapter::load(*llama, write_gguf_lora(dir, "rank.gguf", "llama",
                                                            {{attn_q + ".lora_a", {64, 2}}, {attn_q + ".lora_b", {3, 64}}}));
                    }),
                    "rank.gguf", "rank mismatch"));
  EXPECT_TRUE(names(error_of([&] {
                      Adapter::load(*llama, write_gguf_lora(dir, "half.gguf", "llama", {{attn_q + ".lora_a", {64, 2}}}));
                    }),
                    "half.gguf", "missing tensor blk.0.attn_q.weight.lora_b"));
  EXPECT_TRUE(names(error_of([&] {
                      Adapter::load(*llama, write_gguf_lora(dir, "extra.gguf", "llama",
                                                            {{attn_q + ".lora_a", {64, 2}},
                                                             {attn_q + ".lora_b", {2, 64}},
                                                             {"token_embd.weight.lora_a", {64, 2}}}));
                    }),
                    "extra.gguf", "unexpected tensor token_embd.weight.lora_a"));
  EXPECT_TRUE(names(error_of([&] {
                      Adapter::load(*llama, write_gguf_lora(dir, "shape.gguf", "llama",
                                                            {{attn_q + ".lora_a", {64, 2}}, {attn_q + ".lora_b", {2, 65}}}));
                    }),
                    "shape.gguf", "model's weight is [out 64, in 64]"));
  EXPECT_TRUE(names(error_of([&] {
                      Adapter::load(*llama, write_gguf_lora(dir, "layer.gguf", "llama",
                                                            {{"blk.9.attn_q.weight.lora_a", {64, 2}},
                                                             {"blk.9.attn_q.weight.lora_b", {2, 64}}}));
                    }),
                    "layer.gguf", "the model has 5 layers"));
  EXPECT_TRUE(names(error_of([&] { Adapter::load(*llama, test::shared_path(kStories)); }), "stories260K.gguf",
                    "not a GGUF adapter"));
}

}  // namespace
}  // namespace orchard
