// The router's confidence signals (src/router/signals.h, issue 19): the cascade's answer features
// on hand-made steps against hand-computed values, and the pre-mode prompt features through the
// Engine on stories260K against the model's own logits with a log-softmax computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_test_support.h"
#include "orchard/engine.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
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
  // 70 log-probabilities: the first 6 are outside the 64-token window.
  std::vector<float> lp(70, -1.0f);
  for (int i = 0; i < 6; ++i) lp[i] = -50.0f;
  lp[69] = -3.0f;
  const PreSignals s = pre_signals_from_logprobs(lp, 71);
  EXPECT_EQ(s.scored_tokens, 64);
  EXPECT_EQ(s.prompt_tokens, 71);
  EXPECT_NEAR(s.mean_surprisal, (63 * 1.0 + 3.0) / 64, 1e-9);
  EXPECT_NEAR(s.max_surprisal, 3.0, 1e-9);
  const PreSignals none = pre_signals_from_logprobs({}, 1);
  EXPECT_EQ(none.scored_tokens, 0);
  EXPECT_EQ(none.mean_surprisal, 0);
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
    const size_t n = std::min<size_t>(ref.size(), 64);
    double sum = 0, mx = 0;
    for (size_t i = ref.size() - n; i < ref.size(); ++i) {
      sum += -ref[i];
      mx = std::max(mx, -ref[i]);
    }
    const PreSignals s = compute_pre_signals(engine, tokens);
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
  for (const double fraction : {0.25, 0.5}) {
    test::CliResult r = test::run_cli({"router", "calibrate", "--model", model, "--prompts", file, "--cloud-fraction",
                                       std::to_string(fraction), "--config", base, "--out", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json summary = nlohmann::json::parse(r.out);
    EXPECT_EQ(summary["prompts"], 20);
    int cloud = 0;
    for (const std::string& p : prompts) {
      r = test::run_cli({"router", "explain", "--model", model, "--prompt", p, "--config", out});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      cloud += nlohmann::json::parse(r.out)["route"] == "cloud";
    }
    EXPECT_EQ(cloud, int(std::lround(fraction * 20))) << fraction;
    EXPECT_EQ(summary["to_cloud"], cloud);
  }
  // Bad lines name the file and line.
  const std::string bad = dir.write("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"text\": \"no\"}\n");
  test::expect_one_line_error(test::run_cli({"router", "calibrate", "--model", model, "--prompts", bad,
                                             "--cloud-fraction", "0.5", "--out", out}),
                              "bad.jsonl:2");
  test::expect_one_line_error(test::run_cli({"router", "calibrate", "--model", model, "--prompts", file,
                                             "--cloud-fraction", "0.5", "--mode", "cascade", "--out", out}),
                              "--mode");
}

}  // namespace
}  // namespace orchard::router
