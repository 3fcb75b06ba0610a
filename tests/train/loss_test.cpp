// The training losses: the oracle values of shared/train (the engine's reference forward feeding
// them), gradients against finite differences, RKL / JSD against their definitions written out as
// explicit distributions, JSD(beta)'s limits, and refusals of bad input.
#include "train/loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "orchard/model.h"
#include "test_paths.h"

namespace orchard::train {
namespace {

// ---- 1. The oracle loss values -------------------------------------------------------------

nlohmann::json read_manifest() {
  std::ifstream in(test::shared_path("train/manifest.json"));
  if (!in) ADD_FAILURE() << "cannot open " << test::shared_path("train/manifest.json");
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

// The logits [n, V] of the model on `tokens`, from the engine's reference kernels (as
// `orchard logits --kernels reference` computes them), float32 KV cache.
std::vector<float> reference_logits(const std::string& model_path, const std::vector<int32_t>& tokens, int64_t* V) {
  auto model = Model::load(model_path, {.kernels = KernelChoice::reference});
  *V = model->config().n_vocab;
  Context context(model, {.n_ctx = 128, .kernels = KernelChoice::reference, .n_threads = 2, .kv_cache = KvCacheType::f32});
  return context.eval(tokens);
}

TEST(TrainLossOracle, ManifestLossesFromTheReferenceForward) {
  const nlohmann::json manifest = read_manifest();
  const double T = manifest.at("hyperparameters").at("kd_temperature").get<double>();
  const int64_t top_k = manifest.at("hyperparameters").at("kd_top_k").get<int64_t>();
  struct Forward {
    std::vector<float> logits;
    int64_t V = 0;
  };
  std::map<std::string, Forward> forwards;  // one forward per model and token list
  int checked_sft = 0, checked_kd = 0;
  for (const auto& c : manifest.at("cases")) {
    const std::string kind = c.at("kind");
    if (kind != "sft" && kind != "kd") continue;
    const std::string name = c.at("case");
    const std::vector<int32_t> tokens = c.at("tokens").get<std::vector<int32_t>>();
    const int64_t n = static_cast<int64_t>(tokens.size());
    const std::string model = c.at("model");
    const std::string key = model + "#" + std::to_string(n);
    if (!forwards.contains(key)) {
      Forward f;
      f.logits = reference_logits(test::shared_path(model), tokens, &f.V);
      forwards[key] = std::move(f);
    }
    const Forward& f = forwards[key];
    ASSERT_EQ(static_cast<int64_t>(f.logits.size()), n * f.V) << name;
    const double expected = c.at("loss").get<double>();
    double got = 0;
    if (kind == "sft") {
      // Our own reading of the definition: row j-1 predicts tokens[j] for j >= n/2 (real division).
      std::vector<int32_t> targets(n, -1);
      std::vector<uint8_t> mask(n, 0);
      std::vector<int64_t> rows;
      for (int64_t j = 1; j < n; ++j)
        if (2 * j >= n) {
          targets[j - 1] = tokens[j];
          mask[j - 1] = 1;
          rows.push_back(j - 1);
        }
      EXPECT_EQ(rows, c.at("sft_logit_rows").get<std::vector<int64_t>>()) << name;
      got = cross_entropy(f.logits, n, f.V, targets, mask, {});
      ++checked_sft;
    } else {
      const auto ids2 = c.at("teacher_topk_ids").get<std::vector<std::vector<int32_t>>>();
      const auto probs2 = c.at("teacher_topk_probs").get<std::vector<std::vector<double>>>();
      ASSERT_EQ(static_cast<int64_t>(ids2.size()), n) << name;
      std::vector<int32_t> ids;
      std::vector<float> probs;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(static_cast<int64_t>(ids2[i].size()), top_k) << name;
        ids.insert(ids.end(), ids2[i].begin(), ids2[i].end());
        for (double p : probs2[i]) probs.push_back(static_cast<float>(p));
      }
      got = distill_loss(f.logits, n, f.V, {.k = top_k, .ids = ids, .probs = probs},
                         {.divergence = Divergence::forward_kl, .temperature = T}, {}, {});
      ++checked_kd;
    }
    const double rel = std::fabs(got - expected) / std::fabs(expected);
    std::printf("  %-16s loss %.10f  manifest %.10f  rel %.2e\n", name.c_str(), got, expected, rel);
    EXPECT_LE(rel, 1e-5) << name << ": " << got << " vs " << expected;
  }
  EXPECT_EQ(checked_sft, 4);
  EXPECT_EQ(checked_kd, 3);
}

// ---- 2. Gradients, definitions, limits -----------------------------------------------------

constexpr int64_t kN = 5, kV = 37, kK = 4;

struct Problem {
  std::vector<float> logits;  // multiples of 2^-10, so z +- 2h below is exact in float32
  std::vector<int32_t> targets, ids;
  std::vector<float> probs;
  TeacherTopK teacher() const { return {.k = kK, .ids = ids, .probs = probs}; }
};

Problem random_problem(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> logit(-3 * 1024, 3 * 1024);
  std::uniform_real_distribution<double> u(0.05, 1.0);
  Problem p;
  for (int64_t i = 0; i < kN * kV; ++i) p.logits.push_back(static_cast<float>(logit(rng) / 1024.0));
  for (int64_t i = 0; i < kN; ++i) {
    p.targets.push_back(static_cast<int32_t>(rng() % kV));
    std::vector<int32_t> all(kV);
    for (int32_t j = 0; j < kV; ++j) all[j] = j;
    std::shuffle(all.begin(), all.end(), rng);
    double w[kK], sum = 0;
    for (int64_t c = 0; c < kK; ++c) sum += w[c] = u(rng);
    for (int64_t c = 0; c < kK; ++c) {
      p.ids.push_back(all[c]);
      p.probs.push_back(static_cast<float>(w[c] / sum));
    }
  }
  return p;
}

using LossFn = std::function<double(std::span<const float>, std::span<float>)>;

// Fourth-order central differences in double (h = 2^-10, exact steps) against the gradient.
void check_gradient(const LossFn& loss, std::vector<float> z, const std::string& what) {
  std::vector<float> grad(z.size());
  loss(z, grad);
  const double h = 1.0 / 1024;
  double scale = 0;
  for (float g : grad) scale = std::max(scale, static_cast<double>(std::fabs(g)));
  ASSERT_GT(scale, 1e-3) << what;
  double worst = 0;
  for (size_t j = 0; j < z.size(); ++j) {
    const float z0 = z[j];
    auto at = [&](double step) {
      z[j] = static_cast<float>(z0 + step);
      return loss(z, {});
    };
    const double fd = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h);
    z[j] = z0;
    worst = std::max(worst, std::fabs(fd - grad[j]));
  }
  EXPECT_LE(worst, 1e-6 * scale) << what << ": worst |fd - grad| " << worst << ", largest |grad| " << scale;
}

TEST(TrainLossGradient, EveryLossAgainstFiniteDifferences) {
  const Problem p = random_problem(7);
  const std::vector<uint8_t> mask = {1, 0, 1, 1, 0};
  const std::vector<uint8_t> none;
  for (const auto* m : {&none, &mask}) {
    const std::string tag = m->empty() ? " (no mask)" : " (mask)";
    check_gradient([&](auto z, auto g) { return cross_entropy(z, kN, kV, p.targets, *m, g); }, p.logits, "CE" + tag);
    const std::vector<std::pair<std::string, KdOptions>> kds = {
        {"FKL T=2", {.divergence = Divergence::forward_kl, .temperature = 2}},
        {"FKL T=0.7", {.divergence = Divergence::forward_kl, .temperature = 0.7}},
        {"RKL T=2", {.divergence = Divergence::reverse_kl, .temperature = 2}},
        {"RKL T=1.3", {.divergence = Divergence::reverse_kl, .temperature = 1.3}},
        {"JSD 0.5", {.divergence = Divergence::jsd, .temperature = 2, .beta = 0.5}},
        {"JSD 0.1 T=0.9", {.divergence = Divergence::jsd, .temperature = 0.9, .beta = 0.1}},
        {"JSD 0.9", {.divergence = Divergence::jsd, .temperature = 1.5, .beta = 0.9}}};
    for (const auto& [name, o] : kds) {
      check_gradient([&](auto z, auto g) { return distill_loss(z, kN, kV, p.teacher(), o, *m, g); }, p.logits, name + tag);
      check_gradient([&](auto z, auto g) { return distill_mix(z, kN, kV, 0.35, p.teacher(), o, *m, p.targets, none, g); },
                     p.logits, "mix 0.35 " + name + tag);
    }
  }
}

// Explicit distributions, computed by another route than loss.cpp: softmax without a shift, the
// restriction taken from the full softmax, KL as sum a log(a / b).
std::vector<double> softmax(const float* z, int64_t V, double T) {
  std::vector<double> q(V);
  double sum = 0;
  for (int64_t j = 0; j < V; ++j) sum += q[j] = std::exp(z[j] / T);
  for (double& x : q) x /= sum;
  return q;
}
double kl(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t c = 0; c < a.size(); ++c) s += a[c] * std::log(a[c] / b[c]);
  return s;
}
struct Rows {
  std::vector<double> p, r, q_at_k;
};
Rows distributions(const Problem& pr, int64_t i, double T) {
  const std::vector<double> q = softmax(pr.logits.data() + i * kV, kV, T);
  Rows rows;
  double mass = 0;
  for (int64_t c = 0; c < kK; ++c) mass += q[pr.ids[i * kK + c]];
  for (int64_t c = 0; c < kK; ++c) {
    rows.p.push_back(pr.probs[i * kK + c]);
    rows.q_at_k.push_back(q[pr.ids[i * kK + c]]);
    rows.r.push_back(q[pr.ids[i * kK + c]] / mass);
  }
  return rows;
}

TEST(TrainLossDefinition, ValuesMatchExplicitDistributions) {
  const Problem pr = random_problem(11);
  const std::vector<uint8_t> mask = {0, 1, 1, 0, 1};
  for (double T : {1.0, 2.0, 0.6}) {
    for (double beta : {0.5, 0.2, 0.85}) {
      double fkl = 0, rkl = 0, jsd = 0, ce = 0;
      int count = 0;
      for (int64_t i = 0; i < kN; ++i) {
        if (!mask[i]) continue;
        ++count;
        const Rows d = distributions(pr, i, T);
        fkl += kl(d.p, d.q_at_k);  // sum p log(p / q) with q the full-vocabulary student at K
        rkl += kl(d.r, d.p);
        std::vector<double> m(kK);
        for (int64_t c = 0; c < kK; ++c) m[c] = beta * d.p[c] + (1 - beta) * d.r[c];
        jsd += beta * kl(d.p, m) + (1 - beta) * kl(d.r, m);
        ce -= std::log(softmax(pr.logits.data() + i * kV, kV, 1.0)[pr.targets[i]]);
      }
      fkl *= T * T / count, rkl *= T * T / count, jsd *= T * T / count, ce /= count;
      const auto kd = [&](Divergence dv) {
        return distill_loss(pr.logits, kN, kV, pr.teacher(), {.divergence = dv, .temperature = T, .beta = beta}, mask, {});
      };
      EXPECT_NEAR(kd(Divergence::forward_kl), fkl, 1e-12 * fkl) << "T " << T;
      EXPECT_NEAR(kd(Divergence::reverse_kl), rkl, 1e-12 * rkl) << "T " << T;
      EXPECT_NEAR(kd(Divergence::jsd), jsd, 1e-12 * jsd) << "T " << T << " beta " << beta;
      EXPECT_NEAR(cross_entropy(pr.logits, kN, kV, pr.targets, mask, {}), ce, 1e-12 * ce);
      const double mixed = distill_mix(pr.logits, kN, kV, 0.3, pr.teacher(),
                                       {.divergence = Divergence::reverse_kl, .temperature = T}, mask, pr.targets, mask, {});
      EXPECT_NEAR(mixed, 0.3 * rkl + 0.7 * ce, 1e-12 * mixed);
    }
  }
}

TEST(TrainLossDefinition, JsdLimitsAreTheTwoKls) {
  const Problem pr = random_problem(23);
  const double T = 1.5;
  const auto jsd = [&](double beta) {
    return distill_loss(pr.logits, kN, kV, pr.teacher(), {.divergence = Divergence::jsd, .temperature = T, .beta = beta}, {}, {});
  };
  const double rkl =
      distill_loss(pr.logits, kN, kV, pr.teacher(), {.divergence = Divergence::reverse_kl, .temperature = T}, {}, {});
  // KL(p || r): the forward KL of a student whose logits outside K are so low that its full
  // softmax equals its restriction to K (exp(-1000 / T) is below 1e-289).
  std::vector<float> restricted(pr.logits.size(), -1000.0f);
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t c = 0; c < kK; ++c) restricted[i * kV + pr.ids[i * kK + c]] = pr.logits[i * kV + pr.ids[i * kK + c]];
  const double fkl_restricted =
      distill_loss(restricted, kN, kV, pr.teacher(), {.divergence = Divergence::forward_kl, .temperature = T}, {}, {});
  EXPECT_NEAR(jsd(0.0), 0.0, 1e-15);  // m = r (or p): zero up to rounding of two routes to log r
  EXPECT_NEAR(jsd(1.0), 0.0, 1e-15);
  const double eps = 1e-6;
  EXPECT_NEAR(jsd(eps) / eps, fkl_restricted, 1e-4 * fkl_restricted);
  EXPECT_NEAR(jsd(1 - eps) / eps, rkl, 1e-4 * rkl);
  // Far from the ends it differs from both by more than that.
  EXPECT_GT(std::fabs(jsd(0.01) / 0.01 - fkl_restricted), 1e-3 * fkl_restricted);
  EXPECT_GT(std::fabs(jsd(0.99) / 0.01 - rkl), 1e-3 * rkl);
}

// ---- 3. Bad input --------------------------------------------------------------------------

template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TrainLossRefuses, BadInput) {
  Problem pr = random_problem(3);
  const KdOptions fkl{};
  std::vector<float> grad(kN * kV);
  Problem bad_id = pr;
  bad_id.ids[2 * kK + 1] = kV;
  expect_error([&] { distill_loss(bad_id.logits, kN, kV, bad_id.teacher(), fkl, {}, grad); }, "teacher id 37 at position 2");
  bad_id.ids[2 * kK + 1] = -1;
  expect_error([&] { distill_loss(bad_id.logits, kN, kV, bad_id.teacher(), fkl, {}, grad); }, "outside the vocabulary");
  Problem repeated = pr;
  repeated.ids[kK + 3] = repeated.ids[kK];
  expect_error([&] { distill_loss(repeated.logits, kN, kV, repeated.teacher(), fkl, {}, grad); }, "repeats at position 1");
  const std::vector<uint8_t> empty_mask(kN, 0);
  expect_error([&] { cross_entropy(pr.logits, kN, kV, pr.targets, empty_mask, grad); }, "mask counts no position");
  expect_error([&] { distill_loss(pr.logits, kN, kV, pr.teacher(), fkl, empty_mask, grad); }, "mask counts no position");
  const std::vector<uint8_t> short_mask(kN - 1, 1);
  expect_error([&] { cross_entropy(pr.logits, kN, kV, pr.targets, short_mask, grad); }, "mask has 4 entries for 5 positions");
  Problem nan = pr;
  nan.logits[3 * kV + 5] = NAN;
  expect_error([&] { cross_entropy(nan.logits, kN, kV, nan.targets, {}, grad); }, "row 3, column 5 is NaN");
  expect_error([&] { distill_loss(nan.logits, kN, kV, nan.teacher(), fkl, {}, grad); }, "row 3, column 5 is NaN");
  const std::vector<uint8_t> skip_row3 = {1, 1, 1, 0, 1};
  expect_error([&] { cross_entropy(nan.logits, kN, kV, nan.targets, skip_row3, grad); }, "is NaN");
  nan.logits[3 * kV + 5] = INFINITY;
  expect_error([&] { cross_entropy(nan.logits, kN, kV, nan.targets, {}, grad); }, "row 3, column 5 is infinite");
  Problem bad_target = pr;
  bad_target.targets[4] = kV;
  expect_error([&] { cross_entropy(bad_target.logits, kN, kV, bad_target.targets, {}, grad); }, "target 37 at row 4");
  Problem bad_p = pr;
  bad_p.probs[0] = -0.1f;
  expect_error([&] { distill_loss(bad_p.logits, kN, kV, bad_p.teacher(), fkl, {}, grad); }, "probability -0.1 at position 0");
  bad_p = pr;
  bad_p.probs[kK] *= 2;
  expect_error([&] { distill_loss(bad_p.logits, kN, kV, bad_p.teacher(), fkl, {}, grad); }, "at position 1 sum to");
  bad_p = pr;
  bad_p.probs[1] += bad_p.probs[0];
  bad_p.probs[0] = 0;
  EXPECT_NO_THROW(distill_loss(bad_p.logits, kN, kV, bad_p.teacher(), fkl, {}, grad));  // a zero p is fine for FKL
  expect_error([&] { distill_loss(bad_p.logits, kN, kV, bad_p.teacher(), {.divergence = Divergence::reverse_kl}, {}, grad); },
               "reverse KL is infinite");
  expect_error([&] { distill_loss(pr.logits, kN, kV, pr.teacher(), {.temperature = 0}, {}, grad); }, "temperature 0");
  expect_error([&] { distill_loss(pr.logits, kN, kV, pr.teacher(), {.divergence = Divergence::jsd, .beta = 1.5}, {}, grad); },
               "beta 1.5");
  expect_error([&] { distill_mix(pr.logits, kN, kV, -0.5, pr.teacher(), fkl, {}, pr.targets, {}, grad); }, "alpha -0.5");
  expect_error([&] { cross_entropy(std::span<const float>(pr.logits).first(10), kN, kV, pr.targets, {}, grad); },
               "logits hold 10 values");
  expect_error([&] { cross_entropy(pr.logits, kN, kV, pr.targets, {}, std::span<float>(grad).first(3)); },
               "gradient holds 3 values");
  expect_error([&] { distill_loss(pr.logits, kN, kV, {.k = kK, .ids = pr.ids, .probs = std::span<const float>(pr.probs).first(4)},
                                  fkl, {}, grad); },
               "teacher probabilities hold 4 values");
}

}  // namespace
}  // namespace orchard::train
