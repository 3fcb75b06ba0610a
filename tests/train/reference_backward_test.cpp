// The reference backward pass against shared/train's float64 PyTorch gradients (every trainable
// tensor of every sft and kd case within the manifest's relative-L2 bound, the loss within its relative
// bound), and against central finite differences of its own forward in double on a few weights.
#include "train/reference_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oracle_files.h"
#include "test_paths.h"
#include "train/loss.h"
#include "train/reference_layers.h"

namespace orchard::train {
namespace {

// One sft or kd case of the manifest: the loss within loss_rel, every trainable tensor's gradient
// within gradient_rel_l2_per_tensor of the oracle, and no tensor of ours the oracle lacks.
void check_case(const nlohmann::json& manifest, const nlohmann::json& c) {
  const double grad_bound = manifest.at("tolerances").at("gradient_rel_l2_per_tensor").get<double>();
  const double loss_bound = manifest.at("tolerances").at("loss_rel").get<double>();
  const auto start = std::chrono::steady_clock::now();
  const std::string name = c.at("case");
  const std::string kind = c.at("kind");
  const ReferenceModel model = load_reference_model(test::shared_path(c.at("model").get<std::string>()));
  const std::vector<int32_t> tokens = c.at("tokens").get<std::vector<int32_t>>();
  const int64_t n = static_cast<int64_t>(tokens.size()), V = model.config.n_vocab;
  ReferenceParams grads = zeros_like(model.params);
  double loss = 0;
  if (kind == "sft") {
    std::vector<int32_t> targets;
    std::vector<uint8_t> mask;
    sft_targets(tokens, targets, mask);
    std::vector<int64_t> rows;
    for (size_t i = 0; i < mask.size(); ++i)
      if (mask[i]) rows.push_back(static_cast<int64_t>(i));
    EXPECT_EQ(rows, c.at("sft_logit_rows").get<std::vector<int64_t>>()) << name;
    loss = reference_cross_entropy_gradients(model, tokens, targets, mask, grads);
  } else {
    const double T = manifest.at("hyperparameters").at("kd_temperature").get<double>();
    const int64_t k = manifest.at("hyperparameters").at("kd_top_k").get<int64_t>();
    std::vector<int32_t> ids;
    std::vector<float> probs;
    for (const auto& row : c.at("teacher_topk_ids")) for (int32_t id : row.get<std::vector<int32_t>>()) ids.push_back(id);
    for (const auto& row : c.at("teacher_topk_probs"))
      for (double p : row.get<std::vector<double>>()) probs.push_back(static_cast<float>(p));
    ASSERT_EQ(static_cast<int64_t>(ids.size()), n * k) << name;
    const TeacherTopK teacher{.k = k, .ids = ids, .probs = probs};
    loss = reference_loss_gradients(
        model, tokens,
        [&](std::span<const float> logits, std::span<float> dlogits) {
          return distill_loss(logits, n, V, teacher, {.divergence = Divergence::forward_kl, .temperature = T}, {},
                              dlogits);
        },
        grads);
  }
  const double expected_loss = c.at("loss").get<double>();
  const double loss_rel = std::fabs(loss - expected_loss) / std::fabs(expected_loss);
  EXPECT_LE(loss_rel, loss_bound) << name << ": loss " << loss << " vs " << expected_loss;

  std::map<std::string, NamedTensor> ours;
  for (NamedTensor& t : named_tensors(grads, model.config)) ours[t.name] = t;
  const std::string grad_file = test::shared_path("train/" + c.at("grad_file").get<std::string>());
  double worst = 0;
  std::string worst_name;
  int checked = 0;
  for (const auto& t : c.at("tensors")) {
    if (!t.at("trainable").get<bool>()) continue;
    const std::string tname = t.at("name");
    auto it = ours.find(tname);
    if (it == ours.end()) {
      ADD_FAILURE() << name << ": no gradient for trainable tensor " << tname;
      continue;
    }
    EXPECT_EQ(it->second.shape, t.at("shape").get<std::vector<int64_t>>()) << name << " " << tname;
    const uint64_t count = t.at("n_elements").get<uint64_t>();
    ASSERT_EQ(it->second.values->size(), count) << name << " " << tname;
    const std::vector<float> ref = read_floats(grad_file, t.at("offset").get<uint64_t>(), count);
    double diff = 0, norm = 0;
    for (uint64_t i = 0; i < count; ++i) {
      const double d = (*it->second.values)[i] - ref[i];
      diff += d * d;
      norm += static_cast<double>(ref[i]) * ref[i];
    }
    ASSERT_GT(norm, 0) << name << " " << tname;
    const double rel = std::sqrt(diff / norm);
    EXPECT_LE(rel, grad_bound) << name << " " << tname;
    if (rel > worst) worst = rel, worst_name = tname;
    ours.erase(it);
    ++checked;
  }
  EXPECT_TRUE(ours.empty()) << name << ": " << ours.size() << " of our tensors are not in the manifest, e.g. "
                            << (ours.empty() ? "" : ours.begin()->first);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("  %-16s loss %.10f (rel %.2e), %d tensors, worst rel L2 %.2e (%s), %.2f s\n", name.c_str(), loss,
              loss_rel, checked, worst, worst_name.c_str(), seconds);
}

TEST(TrainReferenceBackward, SftGradientsMatchTheOracle) {
  const nlohmann::json manifest = read_manifest();
  int cases = 0;
  for (const auto& c : manifest.at("cases"))
    if (c.at("kind") == "sft") check_case(manifest, c), ++cases;
  EXPECT_EQ(cases, 4);
}

// The same backward from the top-k forward KL's logit gradient (T = 2).
TEST(TrainReferenceBackward, KdGradientsMatchTheOracle) {
  const nlohmann::json manifest = read_manifest();
  int cases = 0;
  for (const auto& c : manifest.at("cases"))
    if (c.at("kind") == "kd") check_case(manifest, c), ++cases;
  EXPECT_EQ(cases, 3);
}

// d/dw of L = sum(C ⊙ logits) with a fixed random C [T, V]: the backward from dlogits = C against
// fourth-order central differences of the double forward, at the largest-gradient coordinate and
// a few random ones of tensors that exercise biases (qwen2), q/k norm (qwen3) and the llama3 RoPE
// factors with adjacent pairs (llama).
TEST(TrainReferenceBackward, FiniteDifferencesOfTheForward) {
  const char* models[] = {"golden/llama-f32.gguf", "golden/qwen2-f32.gguf", "golden/qwen3-f32.gguf"};
  const std::vector<int32_t> tokens = {1, 17, 300, 42, 900, 5, 77, 512};
  for (const char* path : models) {
    ReferenceModel model = load_reference_model(test::shared_path(path));
    const int64_t T = static_cast<int64_t>(tokens.size()), V = model.config.n_vocab;
    std::mt19937 rng(7);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> C(static_cast<size_t>(T * V));
    for (double& x : C) x = normal(rng);
    const auto loss = [&] {
      Activations acts;
      reference_forward(model, tokens, acts);
      double s = 0;
      for (size_t i = 0; i < C.size(); ++i) s += C[i] * acts.logits[i];
      return s;
    };
    Activations acts;
    reference_forward(model, tokens, acts);
    ReferenceParams grads = zeros_like(model.params);
    reference_backward(model, acts, C, grads);

    std::vector<NamedTensor> g = named_tensors(grads, model.config);
    std::vector<NamedTensor> w = named_tensors(model.params, model.config);
    int checked = 0;
    for (size_t ti = 0; ti < g.size(); ++ti) {
      const std::string& name = g[ti].name;
      const bool wanted = name == "token_embd.weight" || name == "output_norm.weight" ||
                          name.find("blk.1.") == 0 || name.find("blk.0.attn_q") == 0 ||
                          name.find("blk.0.attn_k") == 0;
      if (!wanted) continue;
      std::vector<double>& values = *w[ti].values;
      const std::vector<double>& grad = *g[ti].values;
      size_t biggest = 0;
      for (size_t i = 0; i < grad.size(); ++i)
        if (std::fabs(grad[i]) > std::fabs(grad[biggest])) biggest = i;
      std::uniform_int_distribution<size_t> pick(0, grad.size() - 1);
      for (size_t i : {biggest, pick(rng)}) {
        if (std::fabs(grad[i]) < 0.05 * std::fabs(grad[biggest])) continue;
        const double h = 1e-4 * std::max(1.0, std::fabs(values[i])), saved = values[i];
        double f[4];
        const double steps[4] = {-2, -1, 1, 2};
        for (int s = 0; s < 4; ++s) {
          values[i] = saved + steps[s] * h;
          f[s] = loss();
        }
        values[i] = saved;
        const double fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
        const double rel = std::fabs(fd - grad[i]) / std::fabs(grad[biggest]);
        EXPECT_LE(rel, 1e-6) << path << " " << name << "[" << i << "]: backward " << grad[i] << ", differences " << fd;
        ++checked;
      }
    }
    std::printf("  %s: %d coordinates against finite differences\n", path, checked);
    EXPECT_GE(checked, 15) << path;
  }
}


// The double forward against the golden reference logits (a float64 numpy forward over the exactly
// dequantized GGUF weights, stored as float32): f32 models and quantized ones (the weights reach
// the reference through the engine's dequantization).
TEST(TrainReferenceBackward, ForwardMatchesTheGoldenLogits) {
  std::ifstream in(test::shared_path("golden/manifest.json"));
  ASSERT_TRUE(in.good()) << "cannot open " << test::shared_path("golden/manifest.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json golden = nlohmann::json::parse(text.str());
  const std::vector<int32_t> tokens = golden.at("sequences").at("long").get<std::vector<int32_t>>();
  for (const char* name : {"llama-f32", "qwen2-f32", "qwen3-f32", "llama-q4_0", "qwen3-q8_0"}) {
    const ReferenceModel model = load_reference_model(test::shared_path(std::string("golden/") + name + ".gguf"));
    Activations acts;
    reference_forward(model, tokens, acts);
    const std::vector<float> ref = read_floats(test::shared_path(std::string("golden/") + name + ".long.ref.f32"), 0,
                                               acts.logits.size());
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(acts.logits[i] - ref[i]));
    std::printf("  %-12s logits max abs difference %.2e\n", name, worst);
    EXPECT_LE(worst, 1e-4) << name;
  }
}

// A refused token: a clear error, not a read outside the embedding.
TEST(TrainReferenceBackward, RefusesTokensOutsideTheVocabulary) {
  const ReferenceModel model = load_reference_model(test::shared_path("models/stories260K/stories260K.gguf"));
  Activations acts;
  const std::vector<int32_t> bad = {1, 512};
  EXPECT_THROW(reference_forward(model, bad, acts), Error);
}

// Each layer's backward against central differences of its forward on awkward shapes: RoPE over
// part of a head (rope_dims < head_dim) in both styles, attention with 3 query heads per KV head
// and an odd head size, rmsnorm and swiglu on odd lengths. L = sum(C ⊙ out) for a random C.
TEST(TrainReferenceBackward, LayerBackwardsAgainstFiniteDifferences) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto random = [&](int64_t n) {
    std::vector<double> v(static_cast<size_t>(n));
    for (double& x : v) x = normal(rng);
    return v;
  };
  // d(sum C ⊙ f(inputs))/d(input) by differences, for every element of `x`.
  const auto differences = [](std::vector<double>& x, const std::function<double()>& loss) {
    std::vector<double> g(x.size());
    const double h = 1e-4;
    for (size_t i = 0; i < x.size(); ++i) {
      const double saved = x[i];
      double f[4];
      const double steps[4] = {-2, -1, 1, 2};
      for (int s = 0; s < 4; ++s) {
        x[i] = saved + steps[s] * h;
        f[s] = loss();
      }
      x[i] = saved;
      g[i] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
    }
    return g;
  };
  const auto expect_close = [](const std::vector<double>& got, const std::vector<double>& want, const char* what) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      diff += (got[i] - want[i]) * (got[i] - want[i]);
      norm += want[i] * want[i];
    }
    EXPECT_GT(norm, 0) << what;
    EXPECT_LE(std::sqrt(diff / norm), 1e-8) << what;
  };
  const auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
  };

  {  // matmul with bias: T 3, I 5, O 7
    const int64_t T = 3, I = 5, O = 7;
    auto x = random(T * I), W = random(O * I), b = random(O), C = random(T * O);
    std::vector<double> out(static_cast<size_t>(T * O));
    const auto loss = [&] {
      matmul_forward(out.data(), x.data(), W.data(), b.data(), T, I, O);
      return dot(C, out);
    };
    std::vector<double> dx(x.size()), dW(W.size()), db(b.size());
    matmul_backward(dx.data(), dW.data(), db.data(), C.data(), x.data(), W.data(), T, I, O);
    expect_close(dx, differences(x, loss), "matmul dx");
    expect_close(dW, differences(W, loss), "matmul dW");
    expect_close(db, differences(b, loss), "matmul db");
  }
  {  // rmsnorm, n 13
    const int64_t n = 13;
    auto x = random(n), w = random(n), C = random(n);
    std::vector<double> out(static_cast<size_t>(n));
    const auto loss = [&] {
      rmsnorm_forward(out.data(), x.data(), w.data(), n, 1e-5);
      return dot(C, out);
    };
    std::vector<double> dx(x.size()), dw(w.size());
    rmsnorm_backward(dx.data(), dw.data(), C.data(), x.data(), w.data(), n, 1e-5);
    expect_close(dx, differences(x, loss), "rmsnorm dx");
    expect_close(dw, differences(w, loss), "rmsnorm dw");
  }
  for (RopeStyle style : {RopeStyle::neox, RopeStyle::interleaved}) {  // 6 of 10 dimensions rotate
    const int64_t hd = 10, rope_dims = 6;
    auto x = random(hd), C = random(hd), cos = random(rope_dims / 2), sin = random(rope_dims / 2);
    for (size_t i = 0; i < cos.size(); ++i) {  // real angles
      const double a = cos[i];
      cos[i] = std::cos(a);
      sin[i] = std::sin(a);
    }
    std::vector<double> out;
    const auto loss = [&] {
      out = x;
      rope_forward(out.data(), rope_dims, style, cos.data(), sin.data());
      return dot(C, out);
    };
    std::vector<double> dx = C;
    rope_backward(dx.data(), rope_dims, style, cos.data(), sin.data());
    expect_close(dx, differences(x, loss), style == RopeStyle::neox ? "rope neox" : "rope interleaved");
  }
  {  // attention: T 4, 6 query heads over 2 KV heads, head_dim 3
    const int64_t T = 4, H = 6, KV = 2, hd = 3;
    auto q = random(T * H * hd), k = random(T * KV * hd), v = random(T * KV * hd), C = random(T * H * hd);
    std::vector<double> out(q.size()), probs(static_cast<size_t>(H * T * T));
    const double scale = 1.0 / std::sqrt(3.0);
    const auto loss = [&] {
      attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), T, H, KV, hd, scale);
      return dot(C, out);
    };
    loss();
    std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
    attention_backward(dq.data(), dk.data(), dv.data(), C.data(), probs.data(), q.data(), k.data(), v.data(), T, H, KV,
                       hd, scale);
    expect_close(dq, differences(q, loss), "attention dq");
    expect_close(dk, differences(k, loss), "attention dk");
    expect_close(dv, differences(v, loss), "attention dv");
  }
  {  // swiglu, n 9
    const int64_t n = 9;
    auto g = random(n), u = random(n), C = random(n);
    std::vector<double> out(static_cast<size_t>(n));
    const auto loss = [&] {
      swiglu_forward(out.data(), g.data(), u.data(), n);
      return dot(C, out);
    };
    std::vector<double> dg(g.size()), du(u.size());
    swiglu_backward(dg.data(), du.data(), C.data(), g.data(), u.data(), n);
    expect_close(dg, differences(g, loss), "swiglu dgate");
    expect_close(du, differences(u, loss), "swiglu dup");
  }
}

}  // namespace
}  // namespace orchard::train
