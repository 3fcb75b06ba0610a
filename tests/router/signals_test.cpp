// The router's confidence signals (src/router/signals.h, issue 19): the cascade's answer features
// on hand-made steps against hand-computed values, and the pre-mode prompt features through the
// Engine on stories260K against the model's own logits with a log-softmax computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_test_support.h"
#include "orchard/engine.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "router/config.h"
#include "router/signals.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard::router {
namespace {

TokenStep step(int32_t token, float chosen, std::vector<float> top) {
  TokenStep s;
  s.token = token;
  s.chosen = {token, chosen};
  for (size_t i = 0; i < top.size(); ++i) s.top.push_back({int32_t(i), top[i]});
  return s;
}

TEST(RouterSignals, AnswerFeaturesByHand) {
  const double ln2 = std::log(2.0), ln3 = std::log(3.0);
  std::vector<TokenStep> steps;
  // A prompt step and an end step without a token: both skipped.
  TokenStep prompt = step(7, -9.0f, {-9.0f, -9.5f});
  prompt.prompt = true;
  steps.push_back(prompt);
  // Two equal candidates: margin 0, renormalized probabilities 1/2, 1/2: entropy ln 2.
  steps.push_back(step(1, float(-ln2), {float(-ln2), float(-ln2)}));
  // Candidates 3:1 (logprobs -0.2 and -0.2 - ln 3): margin ln 3, probabilities 3/4, 1/4.
  steps.push_back(step(2, -0.2f, {-0.2f, float(-0.2 - ln3)}));
  TokenStep end;
  end.token = -1;
  end.stop = StopReason::end_of_sequence;
  steps.push_back(end);
  const AnswerSignals s = answer_signals(steps);
  EXPECT_EQ(s.tokens, 2);
  EXPECT_NEAR(s.mean_logprob, (-ln2 - 0.2) / 2, 1e-6);
  // Fewer than 8 steps: one window, the mean margin.
  EXPECT_NEAR(s.min_margin, ln3 / 2, 1e-6);
  const double h2 = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));  // 0.5623
  EXPECT_NEAR(s.mean_entropy, (ln2 + h2) / 2, 1e-6);
}

TEST(RouterSignals, MarginIsTheLowestWindowOfEight) {
  // Margins 1 x 8, then 0.2, 0.2: windows 1.0, (7 + 0.2) / 8 = 0.9, (6 + 0.4) / 8 = 0.8.
  std::vector<TokenStep> steps;
  for (int i = 0; i < 8; ++i) steps.push_back(step(i, 0.0f, {0.0f, -1.0f}));
  steps.push_back(step(8, -0.5f, {-0.2f, -0.4f, -3.0f}));
  steps.push_back(step(9, -0.5f, {-0.4f, -0.2f}));  // unsorted top: still top1 - top2 = 0.2
  const AnswerSignals s = answer_signals(steps);
  EXPECT_EQ(s.tokens, 10);
  EXPECT_NEAR(s.min_margin, 0.8, 1e-6);
  EXPECT_NEAR(s.mean_logprob, -1.0 / 10, 1e-6);
  // The dip first: windows 0.8, 0.9, 1.0.
  std::rotate(steps.begin(), steps.begin() + 8, steps.end());
  EXPECT_NEAR(answer_signals(steps).min_margin, 0.8, 1e-6);
}

TEST(RouterSignals, AnswerEdgeCases) {
  EXPECT_EQ(answer_signals({}).tokens, 0);
  std::vector<TokenStep> one_top = {step(1, -0.1f, {-0.1f})};
  EXPECT_THROW(answer_signals(one_top), Error);
}

TEST(RouterSignals, PreFeaturesByHand) {
  // 14 log-probabilities: the first 6 are outside the 8-token window.
  static_assert(kPreWindow == 8);
  std::vector<float> lp(14, -1.0f);
  for (int i = 0; i < 6; ++i) lp[i] = -50.0f;
  lp[13] = -3.0f;
  const PreSignals s = pre_signals_from_logprobs(lp, 15);
  EXPECT_EQ(s.scored_tokens, 8);
  EXPECT_EQ(s.prompt_tokens, 15);
  EXPECT_NEAR(s.mean_surprisal, (7 * 1.0 + 3.0) / 8, 1e-9);
  EXPECT_NEAR(s.max_surprisal, 3.0, 1e-9);
  const PreSignals none = pre_signals_from_logprobs({}, 1);
  EXPECT_EQ(none.scored_tokens, 0);
  EXPECT_EQ(none.mean_surprisal, 0);
}

TokenStep prompt_step(int32_t token, float chosen, std::vector<float> top) {
  TokenStep s = step(token, chosen, std::move(top));
  s.prompt = true;
  return s;
}

// The prompt features from hand-made steps, each against a value worked out here.
TEST(RouterSignals, PreFeaturesFromStepsByHand) {
  const double ln2 = std::log(2.0), ln3 = std::log(3.0);
  const double h31 = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));  // candidates 3:1
  std::vector<TokenStep> steps = {
      prompt_step(1, -1.0f, {-1.0f, -1.0f}),                 // a tie with the top: a hit; entropy ln 2
      prompt_step(2, -2.0f, {-0.2f, float(-0.2 - ln3)}),     // not the top; entropy h(3/4, 1/4)
      prompt_step(3, -0.5f, {-0.5f}),                        // the top, alone: entropy 0
      step(5, -0.1f, {-0.1f, -2.1f, -3.0f}),                 // the first answer token
      step(6, -9.0f, {-9.0f, -9.5f}),                        // later steps: ignored
  };
  const PreSignals s = pre_signals_from_steps(steps, 4);
  EXPECT_EQ(s.prompt_tokens, 4);
  EXPECT_EQ(s.scored_tokens, 3);
  EXPECT_NEAR(s.mean_surprisal, 3.5 / 3, 1e-6);
  EXPECT_NEAR(s.max_surprisal, 2.0, 1e-6);
  EXPECT_NEAR(s.mean_entropy, (ln2 + h31) / 3, 1e-6);
  EXPECT_NEAR(s.mean_top1_logprob, -1.7 / 3, 1e-6);
  EXPECT_NEAR(s.top1_rate, 2.0 / 3, 1e-12);
  // From the end: the last prompt step first; the fourth position does not exist.
  EXPECT_NEAR(s.surprisal_last[0], 0.5, 1e-6);
  EXPECT_NEAR(s.surprisal_last[1], 2.0, 1e-6);
  EXPECT_NEAR(s.surprisal_last[2], 1.0, 1e-6);
  EXPECT_EQ(s.surprisal_last[3], 0);
  EXPECT_NEAR(s.entropy_last[0], 0.0, 1e-9);
  EXPECT_NEAR(s.entropy_last[1], h31, 1e-6);
  EXPECT_NEAR(s.entropy_last[2], ln2, 1e-6);
  EXPECT_EQ(s.entropy_last[3], 0);
  // The next token: probabilities proportional to 1, e^-2, e^-2.9.
  const double z = 1 + std::exp(-2.0) + std::exp(-2.9);
  double h = 0;
  for (double l : {0.0, -2.0, -2.9}) h -= std::exp(l) / z * (l - std::log(z));
  EXPECT_NEAR(s.next_entropy, h, 1e-6);
  EXPECT_NEAR(s.next_top1_logprob, -0.1, 1e-6);
  EXPECT_NEAR(s.next_margin, 2.0, 1e-6);
  // to_json shows every feature by name.
  const nlohmann::json j = to_json(s);
  for (const std::string& name : pre_feature_names()) EXPECT_TRUE(j.contains(name)) << name;
  EXPECT_NEAR(j["entropy_last2"].get<double>(), h31, 1e-6);
  EXPECT_EQ(j["prompt_tokens"], 4);

  // Only the last 8 positions count: 6 misses with surprisal 50 before 8 hits of surprisal 1.
  std::vector<TokenStep> long_steps;
  for (int i = 0; i < 6; ++i) long_steps.push_back(prompt_step(i, -50.0f, {-1.0f, -50.0f}));
  for (int i = 0; i < 8; ++i) long_steps.push_back(prompt_step(i, -1.0f, {-1.0f, -2.0f}));
  const PreSignals l = pre_signals_from_steps(long_steps, 15);
  EXPECT_EQ(l.scored_tokens, 8);
  EXPECT_EQ(l.top1_rate, 1.0);
  EXPECT_NEAR(l.mean_surprisal, 1.0, 1e-9);
  EXPECT_NEAR(l.mean_top1_logprob, -1.0, 1e-9);
  // No answer step (the end of sequence at once carries no top list): the next features are 0.
  EXPECT_EQ(l.next_entropy, 0);
  EXPECT_EQ(l.next_margin, 0);
  // A prompt step without its top list: the job asked for too few.
  std::vector<TokenStep> bare = {prompt_step(1, -1.0f, {})};
  EXPECT_THROW(pre_signals_from_steps(bare, 2), Error);
}

// Ridge on a target that is exactly linear in two features: least squares (lambda 0) recovers the
// coefficients; a constant column gets weight 0; with one feature and lambda > 0 the closed form
// w = sum((x - mean)(y - mean)) / (var(x) * (n + lambda)) (population variance) worked out by hand.
TEST(RouterSignals, RidgeFit) {
  const std::vector<std::vector<double>> x = {{0, 0, 7}, {1, 0, 7}, {0, 1, 7}, {1, 1, 7}, {2, 3, 7}, {-1, 4, 7}};
  std::vector<double> y;
  for (const auto& r : x) y.push_back(2 + 3 * r[0] - 0.5 * r[1]);
  LinearFit f = fit_ridge(x, y, 0.0);
  ASSERT_EQ(f.weights.size(), 3u);
  EXPECT_NEAR(f.weights[0], 3.0, 1e-9);
  EXPECT_NEAR(f.weights[1], -0.5, 1e-9);
  EXPECT_EQ(f.weights[2], 0.0);
  EXPECT_NEAR(f.bias, 2.0, 1e-9);
  // A small penalty shrinks the weights toward 0, a little.
  f = fit_ridge(x, y, 1e-3);
  EXPECT_LT(std::abs(f.weights[0]), 3.0);
  EXPECT_NEAR(f.weights[0], 3.0, 1e-2);

  // x = 1 2 3 4 (mean 2.5, population variance 1.25), y = 1 3 2 6 (mean 3):
  // sum((x - 2.5)(y - 3)) = 3 + 0 - 0.5 + 4.5 = 7; lambda 2: w = 7 / (1.25 * (4 + 2)) = 14/15,
  // bias = 3 - 14/15 * 2.5 = 2/3.
  const std::vector<std::vector<double>> x1 = {{1}, {2}, {3}, {4}};
  const std::vector<double> y1 = {1, 3, 2, 6};
  f = fit_ridge(x1, y1, 2.0);
  EXPECT_NEAR(f.weights[0], 14.0 / 15, 1e-12);
  EXPECT_NEAR(f.bias, 2.0 / 3, 1e-12);
  f = fit_ridge(x1, y1, 0.0);  // least squares: 7 / 5
  EXPECT_NEAR(f.weights[0], 1.4, 1e-12);

  // Collinear columns have no least-squares answer; any penalty gives one.
  const std::vector<std::vector<double>> twice = {{1, 2}, {2, 4}, {3, 6}};
  const std::vector<double> y3 = {1, 2, 3.5};
  EXPECT_THROW(fit_ridge(twice, y3, 0.0), Error);
  EXPECT_NO_THROW(fit_ridge(twice, y3, 1.0));
  EXPECT_THROW(fit_ridge({}, {}, 1.0), Error);
  EXPECT_THROW(fit_ridge(x1, y3, 1.0), Error);  // 4 rows, 3 targets
  EXPECT_THROW(fit_ridge({{1}, {1, 2}}, std::vector<double>{1, 2}, 1.0), Error);
  EXPECT_THROW(fit_ridge(x1, y1, -1.0), Error);
}

// fit_pre_model over named features; pre_score is minus the predicted confidence.
TEST(RouterSignals, FitPreModel) {
  std::vector<PreSignals> signals;
  std::vector<double> confidence;
  for (int i = 0; i < 8; ++i) {
    PreSignals s;
    s.mean_surprisal = 1 + 0.5 * i;
    s.next_entropy = double((i * 3) % 5);
    s.entropy_last[2] = 4.0;  // constant: weight 0
    signals.push_back(s);
    confidence.push_back(-1 - 0.25 * s.mean_surprisal + 0.5 * s.next_entropy);
  }
  const PreModel m = fit_pre_model(signals, confidence, {"next_entropy", "mean_surprisal", "entropy_last3"}, 0.0);
  ASSERT_EQ(m.weights.size(), 3u);
  EXPECT_EQ(m.weights[0].first, "next_entropy");
  EXPECT_NEAR(m.weights[0].second, 0.5, 1e-9);
  EXPECT_EQ(m.weights[1].first, "mean_surprisal");
  EXPECT_NEAR(m.weights[1].second, -0.25, 1e-9);
  EXPECT_EQ(m.weights[2].second, 0.0);
  EXPECT_NEAR(m.bias, -1.0, 1e-9);
  PreSignals probe;
  probe.mean_surprisal = 4;
  probe.next_entropy = 1;
  EXPECT_NEAR(pre_score(probe, m), -(-1 - 1 + 0.5), 1e-9);
  EXPECT_EQ(pre_score(probe, PreModel{}), 4.0);  // no model: the mean surprisal
  EXPECT_THROW(fit_pre_model(signals, confidence, {"mean_suprisal"}, 1.0), Error);
  EXPECT_THROW(fit_pre_model(signals, confidence, {"next_entropy", "next_entropy"}, 1.0), Error);
  EXPECT_THROW(fit_pre_model(signals, confidence, {}, 1.0), Error);
  PreModel bad;
  bad.weights = {{"perplexity", 1.0}};
  EXPECT_THROW(pre_score(probe, bad), Error);
  EXPECT_EQ(pre_feature_names().size(), 17u);
  EXPECT_FALSE(pre_feature(probe, "perplexity").has_value());
  EXPECT_EQ(pre_feature(probe, "next_entropy"), 1.0);
}

// log p(token_i | tokens_<i) from Context::eval's logits, in double.
std::vector<double> reference_logprobs(const std::shared_ptr<const Model>& model, const std::vector<int32_t>& tokens) {
  Context ctx(model);
  const std::vector<float> logits = ctx.eval(tokens);
  const size_t V = size_t(model->config().n_vocab);
  std::vector<double> out;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const float* row = logits.data() + (i - 1) * V;
    double mx = row[0];
    for (size_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
    double z = 0;
    for (size_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
    out.push_back(double(row[tokens[i]]) - mx - std::log(z));
  }
  return out;
}

TEST(RouterSignals, PreFeaturesOnStories260K) {
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  Engine engine(model, tokenizer);
  for (const std::string& text :
       {std::string("Once upon a time, there was a little girl named Lily. She loved to play outside."),
        std::string("Tom and his dog went to the park. They saw a big red ball. Tom wanted to kick the ball, but the "
                    "dog ran fast and took it first. Tom laughed and ran after the dog, and they played until "
                    "the sun went down and mom called them home for dinner.")}) {
    const std::vector<int32_t> tokens = tokenizer->encode(text, tokenizer->adds_bos());
    const std::vector<double> ref = reference_logprobs(model, tokens);
    const size_t n = std::min<size_t>(ref.size(), size_t(kPreWindow));
    double sum = 0, mx = 0;
    for (size_t i = ref.size() - n; i < ref.size(); ++i) {
      sum += -ref[i];
      mx = std::max(mx, -ref[i]);
    }
    const PreSignals s = compute_pre_signals(engine, tokens);
    // The top-5 features from the logits here: rows i - 1 for the scored tokens, the last row for
    // the token after the prompt.
    Context ctx(model);
    const std::vector<float> logits = ctx.eval(tokens);
    const size_t V = size_t(model->config().n_vocab);
    ASSERT_EQ(logits.size(), tokens.size() * V);
    auto top5 = [&](size_t row) {
      std::vector<double> lp(V);
      double mx = -1e300, z = 0;
      for (size_t v = 0; v < V; ++v) mx = std::max(mx, double(logits[row * V + v]));
      for (size_t v = 0; v < V; ++v) z += std::exp(double(logits[row * V + v]) - mx);
      for (size_t v = 0; v < V; ++v) lp[v] = double(logits[row * V + v]) - mx - std::log(z);
      std::sort(lp.begin(), lp.end(), std::greater<>());
      lp.resize(5);
      return lp;
    };
    auto entropy = [](const std::vector<double>& top) {
      double z = 0, h = 0;
      for (double l : top) z += std::exp(l - top[0]);
      for (double l : top) h -= std::exp(l - top[0]) / z * (l - top[0] - std::log(z));
      return h;
    };
    double ent_sum = 0, top1_sum = 0, hits = 0;
    for (size_t i = ref.size() - n; i < ref.size(); ++i) {
      const std::vector<double> top = top5(i);  // row i predicts token i + 1, ref[i]
      ent_sum += entropy(top);
      top1_sum += top[0];
      hits += ref[i] >= top[0] - 1e-4 ? 1 : 0;
      if (ref.size() - 1 - i == 1) {
        EXPECT_NEAR(s.entropy_last[1], entropy(top), 2e-3) << text;
        EXPECT_NEAR(s.surprisal_last[1], -ref[i], 2e-3 * std::max(1.0, -ref[i])) << text;
      }
    }
    EXPECT_NEAR(s.mean_entropy, ent_sum / double(n), 2e-3) << text;
    EXPECT_NEAR(s.mean_top1_logprob, top1_sum / double(n), 2e-3) << text;
    EXPECT_NEAR(s.top1_rate, hits / double(n), 1.5 / double(n)) << text;  // a near-tie may flip one
    const std::vector<double> next = top5(tokens.size() - 1);
    EXPECT_NEAR(s.next_entropy, entropy(next), 2e-3) << text;
    EXPECT_NEAR(s.next_top1_logprob, next[0], 2e-3) << text;
    EXPECT_NEAR(s.next_margin, next[0] - next[1], 2e-3) << text;
    EXPECT_EQ(s.prompt_tokens, int64_t(tokens.size()));
    EXPECT_EQ(s.scored_tokens, int64_t(n));
    EXPECT_NEAR(s.mean_surprisal, sum / double(n), 2e-3 * std::max(1.0, sum / double(n))) << text;
    EXPECT_NEAR(s.max_surprisal, mx, 2e-3 * std::max(1.0, mx)) << text;
    EXPECT_GT(s.mean_surprisal, 0.1);
  }
  const std::vector<int32_t> long_prompt_check = tokenizer->encode(
      "Tom and his dog went to the park. They saw a big red ball. Tom wanted to kick the ball, but the dog ran "
      "fast and took it first. Tom laughed and ran after the dog, and they played until the sun went down and "
      "mom called them home for dinner.",
      tokenizer->adds_bos());
  EXPECT_GT(long_prompt_check.size(), 65u);  // the second prompt exercises the window
}

TEST(RouterSignals, ThresholdForFraction) {
  // Sorted: 1 2 3 4 5 6 7 8 9 10. F = 0.3: k = 3, between 7 and 8.
  const std::vector<double> v = {5, 3, 9, 1, 10, 2, 8, 4, 7, 6};
  EXPECT_DOUBLE_EQ(threshold_for_fraction(v, 0.3), 7.5);
  EXPECT_DOUBLE_EQ(threshold_for_fraction(v, 0.0), 10);  // nothing above the largest
  EXPECT_DOUBLE_EQ(threshold_for_fraction(v, 1.0), 0);   // everything above 1 - 1
  EXPECT_DOUBLE_EQ(threshold_for_fraction(v, 0.04), 10);  // round(0.4) = 0
  // Ties at the edge round toward the device: 1 1 2 2 2 2 with F = 0.5 (k = 3, the edge between
  // two 2s) sends none, not 3 of the four tied 2s.
  EXPECT_DOUBLE_EQ(threshold_for_fraction({2, 1, 2, 2, 1, 2}, 0.5), 2);
  EXPECT_DOUBLE_EQ(threshold_for_fraction({1, 1, 2, 2, 2, 2, 2, 3}, 0.5), 2);  // 1 of 8 above
  EXPECT_THROW(threshold_for_fraction({}, 0.5), Error);
  EXPECT_THROW(threshold_for_fraction(v, 1.5), Error);
}

// `orchard router calibrate` sends the requested fraction of its prompts to the cloud: counted by
// asking `orchard router explain` with the written configuration about each prompt.
TEST(RouterCalibrateCli, SendsTheRequestedFraction) {
  const std::string model = test::shared_path("models/stories260K/stories260K.gguf");
  const std::vector<std::string> prompts = {
      "Once upon a time, there was a little girl named Lily.", "The dog ran to the park.",
      "She loved to play outside in the sun.", "Quantum chromodynamics of the xylophone.",
      "Tom had a big red ball.", "The cat sat on the mat and looked at the bird.",
      "zebra zebra zebra lattice cryptography", "Mom said it was time for bed.",
      "They played together all day long.", "A tiny frog jumped over the log.",
      "Invoice 2231: remit payment by wire", "The sun was hot and the sky was blue.",
      "Ben wanted to fly like a bird.", "Kernel panic: not syncing, VFS unable to mount root",
      "The little boat sailed on the lake.", "Sue found a shiny stone in the garden.",
      "Hello, how are you today?", "They ate cake and laughed.", "The bear was hungry.",
      "Compile with -O2 -march=native and link against libm."};
  test::TempDir dir;
  std::string jsonl;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const nlohmann::json line = i % 2 ? nlohmann::json{{"prompt", prompts[i]}}
                                      : nlohmann::json{{"messages", {{{"role", "user"}, {"content", prompts[i]}}}}};
    jsonl += line.dump() + "\n";
  }
  const std::string file = dir.write("prompts.jsonl", jsonl);
  const std::string base = dir.write("base.json", R"({"default_class": "private-cloud-allowed"})");
  const std::string out = dir.file("calibrated.json");
  // The fitted model (the default) and the surprisal rule alike: explain with the written
  // configuration sends round(F * n) of the prompts to the cloud.
  for (const std::string rule : {"fitted", "surprisal"}) {
    for (const double fraction : {0.25, 0.5}) {
      test::CliResult r = test::run_cli({"router", "calibrate", "--model", model, "--prompts", file, "--cloud-fraction",
                                         std::to_string(fraction), "--config", base, "--out", out, "--pre-rule", rule,
                                         "--max-tokens", "16"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const nlohmann::json summary = nlohmann::json::parse(r.out);
      EXPECT_EQ(summary["prompts"], 20);
      const nlohmann::json written = nlohmann::json::parse(test::read_text(out));
      EXPECT_EQ(written["mode"], "pre");
      EXPECT_EQ(written["pre"].contains("features"), rule == "fitted");
      if (rule == "fitted") {
        EXPECT_EQ(written["pre"]["features"].size(), 17u);
      }
      int cloud = 0;
      for (const std::string& p : prompts) {
        r = test::run_cli({"router", "explain", "--model", model, "--prompt", p, "--config", out});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const nlohmann::json j = nlohmann::json::parse(r.out);
        cloud += j["route"] == "cloud";
        if (rule == "surprisal") {
          EXPECT_EQ(j["pre_score"], j["signals"]["mean_surprisal"]);
        }
      }
      EXPECT_EQ(cloud, int(std::lround(fraction * 20))) << rule << " " << fraction;
      EXPECT_EQ(summary["to_cloud"], cloud);
    }
  }
  // A subset of features.
  test::CliResult r = test::run_cli({"router", "calibrate", "--model", model, "--prompts", file, "--cloud-fraction",
                                     "0.3", "--out", out, "--features", "next_entropy,mean_surprisal", "--max-tokens", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(out))["pre"]["features"].size(), 2u);
  test::expect_one_line_error(test::run_cli({"router", "calibrate", "--model", model, "--prompts", file,
                                             "--cloud-fraction", "0.3", "--out", out, "--features", "perplexity"}),
                              "perplexity");

  // The cascade: the threshold on the device answers' mean logprob (the cloud below it), counted
  // here from the answers the engine gives for each prompt.
  r = test::run_cli({"router", "calibrate", "--model", model, "--prompts", file, "--cloud-fraction", "0.25",
                     "--config", base, "--out", out, "--mode", "cascade", "--max-tokens", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json summary = nlohmann::json::parse(r.out);
  const RouterConfig cascade = load_router_config(out);
  EXPECT_EQ(cascade.mode, RouterMode::cascade);
  EXPECT_EQ(cascade.cascade_signal, CascadeSignal::mean_logprob);
  EXPECT_EQ(cascade.default_class, PrivacyClass::private_cloud_allowed);  // the base's keys kept
  auto m = Model::load(model);
  auto tok = load_model_tokenizer(*m);
  Engine engine(m, tok);
  int escalated = 0, answered = 0;
  for (const std::string& p : prompts) {
    GenerationJob job;
    job.prompt = tok->encode(p, tok->adds_bos());
    job.options.sampling.temperature = 0;
    job.options.max_tokens = 16;
    job.options.top_logprobs = kCascadeTopLogprobs;
    double sum = 0;
    int n = 0;
    job.on_step = [&](const TokenStep& st) {
      if (!st.prompt && !st.top.empty()) sum += st.chosen.logprob, ++n;
      return true;
    };
    ASSERT_TRUE(engine.run(std::move(job)).error.empty());
    if (n == 0) continue;
    ++answered;
    escalated += sum / n < cascade.cascade_threshold;
  }
  EXPECT_EQ(summary["prompts"], answered);
  EXPECT_EQ(escalated, int(std::lround(0.25 * answered)));
  EXPECT_EQ(summary["to_cloud"], escalated);
  // The entropy variant escalates the high values.
  r = test::run_cli({"router", "calibrate", "--model", model, "--prompts", file, "--cloud-fraction", "0.25", "--out",
                     out, "--mode", "cascade", "--signal", "mean_entropy", "--max-tokens", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(load_router_config(out).cascade_signal, CascadeSignal::mean_entropy);
  EXPECT_EQ(nlohmann::json::parse(r.out)["to_cloud"], int(std::lround(0.25 * answered)));

  // Bad lines name the file and line.
  const std::string bad = dir.write("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"text\": \"no\"}\n");
  test::expect_one_line_error(test::run_cli({"router", "calibrate", "--model", model, "--prompts", bad,
                                             "--cloud-fraction", "0.5", "--out", out}),
                              "bad.jsonl:2");
  test::expect_one_line_error(test::run_cli({"router", "calibrate", "--model", model, "--prompts", file,
                                             "--cloud-fraction", "0.5", "--mode", "always", "--out", out}),
                              "--mode");
}

}  // namespace
}  // namespace orchard::router
