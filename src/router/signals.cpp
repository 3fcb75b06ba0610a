#include "router/signals.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"

namespace orchard::router {

PreSignals pre_signals_from_logprobs(std::span<const float> prompt_logprobs, int64_t prompt_tokens) {
  PreSignals s;
  s.prompt_tokens = prompt_tokens;
  const size_t n = std::min<size_t>(prompt_logprobs.size(), size_t(kPreWindow));
  const std::span<const float> tail = prompt_logprobs.subspan(prompt_logprobs.size() - n);
  double sum = 0;
  for (float lp : tail) {
    const double surprisal = -double(lp);
    sum += surprisal;
    s.max_surprisal = std::max(s.max_surprisal, surprisal);
  }
  s.scored_tokens = int64_t(n);
  s.mean_surprisal = n ? sum / double(n) : 0.0;
  return s;
}

PreSignals compute_pre_signals(Engine& engine, std::span<const int32_t> prompt) {
  if (prompt.empty()) fail("router signals: empty prompt");
  GenerationJob job;
  job.prompt.assign(prompt.begin(), prompt.end());
  job.options.sampling.temperature = 0;
  job.options.max_tokens = 0;        // the prefill's logits are all it needs
  job.options.prompt_logprobs = 0;   // the chosen (prompt) token's logprob, no top list
  std::vector<float> logprobs;
  logprobs.reserve(prompt.size());
  job.on_step = [&](const TokenStep& step) {
    if (step.prompt) logprobs.push_back(step.chosen.logprob);
    return true;
  };
  const JobSummary summary = engine.run(std::move(job));
  if (!summary.error.empty()) fail("router signals: ", summary.error);
  if (logprobs.size() + 1 != prompt.size())
    fail("router signals: the engine gave ", logprobs.size(), " prompt log-probabilities for ", prompt.size(),
         " tokens");
  return pre_signals_from_logprobs(logprobs, int64_t(prompt.size()));
}

AnswerSignals answer_signals(std::span<const TokenStep> steps) {
  AnswerSignals s;
  std::vector<double> margins;
  double logprob_sum = 0, entropy_sum = 0;
  for (const TokenStep& step : steps) {
    if (step.prompt || step.token < 0) continue;
    if (step.top.size() < 2)
      fail("router signals: a generated step has ", step.top.size(), " top log-probabilities, the cascade needs >= 2");
    logprob_sum += step.chosen.logprob;
    // The top list comes sorted from the engine; a hand-made or reordered one is sorted here.
    float first = -std::numeric_limits<float>::infinity(), second = first;
    for (const TokenLogprob& t : step.top) {
      if (t.logprob > first) {
        second = first;
        first = t.logprob;
      } else if (t.logprob > second) {
        second = t.logprob;
      }
    }
    margins.push_back(double(first) - double(second));
    // Entropy of the top-k renormalized: p_i = exp(l_i - max) / sum_j exp(l_j - max).
    double z = 0;
    for (const TokenLogprob& t : step.top) z += std::exp(double(t.logprob) - first);
    double h = 0;
    for (const TokenLogprob& t : step.top) {
      const double p = std::exp(double(t.logprob) - first) / z;
      if (p > 0) h -= p * std::log(p);
    }
    entropy_sum += h;
  }
  const size_t n = margins.size();
  s.tokens = int64_t(n);
  if (n == 0) return s;
  s.mean_logprob = logprob_sum / double(n);
  s.mean_entropy = entropy_sum / double(n);
  const size_t w = std::min(n, kMarginWindow);
  double window = 0;
  for (size_t i = 0; i < w; ++i) window += margins[i];
  double lowest = window;
  for (size_t i = w; i < n; ++i) {
    window += margins[i] - margins[i - w];
    lowest = std::min(lowest, window);
  }
  s.min_margin = lowest / double(w);
  return s;
}

double threshold_for_fraction(std::vector<double> values, double fraction) {
  if (values.empty()) fail("router calibrate: no values");
  if (!(fraction >= 0 && fraction <= 1)) fail("router calibrate: the cloud fraction must be in [0, 1], got ", fraction);
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const size_t k = std::min(n, size_t(std::llround(fraction * double(n))));
  if (k == 0) return values.back();
  if (k == n) return values.front() - 1.0;
  return values[n - k - 1] + (values[n - k] - values[n - k - 1]) / 2;
}

nlohmann::json to_json(const PreSignals& s) {
  return {{"mean_surprisal", s.mean_surprisal},
          {"max_surprisal", s.max_surprisal},
          {"prompt_tokens", s.prompt_tokens},
          {"scored_tokens", s.scored_tokens}};
}

nlohmann::json to_json(const AnswerSignals& s) {
  return {{"mean_logprob", s.mean_logprob},
          {"min_margin", s.min_margin},
          {"mean_entropy", s.mean_entropy},
          {"tokens", s.tokens}};
}

}  // namespace orchard::router
