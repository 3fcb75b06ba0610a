// The router's confidence signals (issue 19, docs/router.md). `pre` mode judges a prompt before
// anything is generated, from what the local model's prefill gives almost for free: over the
// prompt's last tokens their surprisal (-log p, nats), each position's entropy and top choice, and
// the distribution of the answer's first token; a ridge model fitted on the device's own traffic
// (fit_pre_model) turns them into a predicted confidence of the device's answer. `cascade` mode
// judges the local model's answer from its generated steps' log-probabilities. Both sets of
// features are pure functions over TokenSteps (tests hand-make the steps); the prompt's steps come
// from the public Engine API (StreamOptions::prompt_logprobs), as the server's echo scoring does.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/engine.h"

namespace orchard::router {

// The last this-many prompt tokens are scored: the end of a prompt is the question, and the
// window bounds the signal's cost (only these positions get logits; StreamOptions::
// prompt_logprobs_last). Each scored position costs an output matmul over the vocabulary,
// 151,936 x 896 on the Qwen2.5-0.5B shape, ~1.2% of a 128-token prefill by count: 64 positions
// added 15-25% to the time to first token of a 128-token prompt, 16 about 5-7%, 8 about 2-5%
// (bench/router_overhead.py, medians of 3 noisy runs). The quality curve passes at 8 and 16 alike
// (docs/router.md).
inline constexpr int64_t kPreWindow = 8;
// Generated steps of a cascade answer are judged over windows of this many tokens (the lowest
// window mean of the margin: one confused stretch in a long answer is not averaged away).
inline constexpr size_t kMarginWindow = 8;
// How many top log-probabilities a cascade answer's steps need (StreamOptions::top_logprobs).
inline constexpr int kCascadeTopLogprobs = 5;

// How many top log-probabilities each scored prompt position (and the position after the prompt)
// is read with: the entropy and the top-1 features need the head of each distribution.
inline constexpr int kPreTopLogprobs = 5;
// The per-position features of the prompt's last this-many scored positions (the end of a prompt is
// where its continuation starts: a finished sentence and a half-written one differ there).
inline constexpr size_t kPreLastPositions = 4;

// The prompt's features, all from the local prefill: over the last <= kPreWindow scored positions
// (each predicts the prompt token at it), and at the position after the prompt (the distribution
// of the answer's first token, which the prefill computes anyway). Entropies are of the top
// kPreTopLogprobs renormalized, as the cascade's (answer_signals).
struct PreSignals {
  double mean_surprisal = 0;  // over the scored tokens; 0 when none
  double max_surprisal = 0;
  int64_t prompt_tokens = 0;
  int64_t scored_tokens = 0;  // min(kPreWindow, prompt_tokens - 1): the first token has no prediction
  double mean_entropy = 0;       // of each scored position's distribution
  double mean_top1_logprob = 0;  // the most likely token's log-probability, averaged
  double top1_rate = 0;          // share of scored positions whose prompt token was the most likely
  // The scored positions counted from the end: [0] predicts the prompt's last token. 0 where the
  // prompt has fewer scored positions.
  std::array<double, kPreLastPositions> surprisal_last{};
  std::array<double, kPreLastPositions> entropy_last{};
  // After the prompt: the first answer token's distribution. 0 when the engine gave none (a prompt
  // that fills the context, or a step without a top list).
  double next_entropy = 0;
  double next_top1_logprob = 0;
  double next_margin = 0;  // top1 - top2 log-probability
};

// From the log-probabilities of the prompt's tokens 1..n-1 (token 0 has none), in order: the
// surprisal features only (mean, max, the last positions'); the others stay 0.
PreSignals pre_signals_from_logprobs(std::span<const float> prompt_logprobs, int64_t prompt_tokens);

// From a job's steps: the prompt steps (TokenStep::prompt, each with its `top` list of >= 1
// entries; an orchard::Error otherwise) and the first generated step, whose `top` (>= 2 entries)
// gives the next_* features. `prompt_tokens` is the prompt's length.
PreSignals pre_signals_from_steps(std::span<const TokenStep> steps, int64_t prompt_tokens);

// Runs the prompt through `engine` (one job: the prefill with the top kPreTopLogprobs of the last
// kPreWindow positions only (StreamOptions::prompt_logprobs_last), and one greedy step read from
// the last position's logits, which the prefill computes in any case) and computes the features. Throws orchard::Error when the prompt does not
// fit the engine's context or the job fails.
PreSignals compute_pre_signals(Engine& engine, std::span<const int32_t> prompt);

struct AnswerSignals {
  double mean_logprob = 0;  // of the chosen tokens
  double min_margin = 0;    // lowest mean (top1 - top2 logprob) over windows of kMarginWindow steps
  double mean_entropy = 0;  // entropy (nats) of each step's top-k renormalized, averaged
  int64_t tokens = 0;       // generated steps judged
};

// Over the generated steps (prompt steps and steps without a token are skipped). The margin and
// entropy need each judged step's `top` with at least 2 entries (an orchard::Error otherwise:
// the job asked for too few). An answer of fewer than kMarginWindow steps is one window; an empty
// answer gives zeros and tokens = 0.
AnswerSignals answer_signals(std::span<const TokenStep> steps);

// Calibration: the threshold that sends `fraction` of `values` (one pre signal per prompt) to the
// cloud, the cloud taking the values strictly above it. With n values sorted and k = round(F * n):
// the midpoint between the (n-k)-th and (n-k+1)-th smallest (so that new prompts near the edge
// fall on either side alike); k = 0: the largest value; k = n: 1 below the smallest. Ties at
// the edge round toward the device: equal values get one route, so fewer than k may go when the
// value at the edge is repeated. Throws orchard::Error for no values or F outside [0, 1].
double threshold_for_fraction(std::vector<double> values, double fraction);

// The pre features by name, for the configuration's fitted model ("pre.features"): mean_surprisal,
// max_surprisal, prompt_tokens, mean_entropy, mean_top1_logprob, top1_rate, surprisal_last1..4,
// entropy_last1..4, next_entropy, next_top1_logprob, next_margin.
const std::vector<std::string>& pre_feature_names();
// The feature's value; std::nullopt for an unknown name.
std::optional<double> pre_feature(const PreSignals& s, std::string_view name);

// The fitted `pre` model: predicted confidence = bias + sum of weight * feature (raw feature
// values: the standardization is folded into the weights). No weights: the rule before the model,
// the mean surprisal itself is the score.
struct PreModel {
  std::vector<std::pair<std::string, double>> weights;  // names from pre_feature_names(), each once
  double bias = 0;
  bool fitted() const { return !weights.empty(); }
};

// The score `pre` compares with its threshold (higher: less sure, the cloud above the threshold):
// minus the model's predicted confidence, or the mean surprisal when the model is not fitted.
// Throws orchard::Error for a weight whose name is no feature.
double pre_score(const PreSignals& s, const PreModel& model);

// Ridge regression of `y` on the columns of `x` (one row per sample, every row the same width),
// each column standardized over the rows (mean 0, population standard deviation 1; a constant
// column gets weight 0), the target centred, the penalty `lambda` * |w|^2 on the standardized
// weights; returned on the raw scale: y ~ bias + sum_j weights[j] * x[j]. lambda = 0 is least
// squares (an orchard::Error when the columns are collinear). Throws for no rows, unequal widths,
// a row count other than y's, a negative or non-finite lambda or value.
struct LinearFit {
  std::vector<double> weights;
  double bias = 0;
};
LinearFit fit_ridge(const std::vector<std::vector<double>>& x, std::span<const double> y, double lambda);

// The self-supervised fit of `pre` ("calibration on the device's own traffic", docs/router.md):
// per prompt its features and the confidence of the device's own answer (answer_signals'
// mean_logprob), ridge over the named features. Throws for an unknown name, a repeated one, or no
// names.
PreModel fit_pre_model(std::span<const PreSignals> signals, std::span<const double> confidence,
                       const std::vector<std::string>& features, double lambda);

nlohmann::json to_json(const PreSignals& s);
nlohmann::json to_json(const AnswerSignals& s);

}  // namespace orchard::router
