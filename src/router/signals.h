// The router's confidence signals (issue 19, docs/router.md). `pre` mode judges a prompt before
// anything is generated, from what the local model's prefill gives almost for free: the surprisal
// (-log p, nats) of the prompt's own last tokens under the local model, and the prompt's length.
// `cascade` mode judges the local model's answer from its generated steps' log-probabilities.
// The answer's features are pure functions over TokenSteps (tests hand-make the steps); the
// prompt's come from the public Engine API (StreamOptions::prompt_logprobs), as the server's echo
// scoring does.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/engine.h"

namespace orchard::router {

// The last this-many prompt tokens are scored: the end of a prompt is the question, and the
// window bounds the signal's cost on long prompts (only these positions' log-softmax is read).
inline constexpr int64_t kPreWindow = 64;
// Generated steps of a cascade answer are judged over windows of this many tokens (the lowest
// window mean of the margin: one confused stretch in a long answer is not averaged away).
inline constexpr size_t kMarginWindow = 8;
// How many top log-probabilities a cascade answer's steps need (StreamOptions::top_logprobs).
inline constexpr int kCascadeTopLogprobs = 5;

struct PreSignals {
  double mean_surprisal = 0;  // over the scored tokens; 0 when none
  double max_surprisal = 0;
  int64_t prompt_tokens = 0;
  int64_t scored_tokens = 0;  // min(kPreWindow, prompt_tokens - 1): the first token has no prediction
};

// From the log-probabilities of the prompt's tokens 1..n-1 (token 0 has none), in order.
PreSignals pre_signals_from_logprobs(std::span<const float> prompt_logprobs, int64_t prompt_tokens);

// Runs the prompt through `engine` (one job, no token generated) and reads its tokens'
// log-probabilities. Throws orchard::Error when the prompt does not fit the engine's context or
// the job fails.
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

nlohmann::json to_json(const PreSignals& s);
nlohmann::json to_json(const AnswerSignals& s);

}  // namespace orchard::router
