#include "router/signals.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "base/error.h"

namespace orchard::router {

namespace {

// Entropy (nats) of a top list renormalized: p_i = exp(l_i - max) / sum_j exp(l_j - max).
double top_entropy(const std::vector<TokenLogprob>& top) {
  float first = -std::numeric_limits<float>::infinity();
  for (const TokenLogprob& t : top) first = std::max(first, t.logprob);
  double z = 0;
  for (const TokenLogprob& t : top) z += std::exp(double(t.logprob) - first);
  double h = 0;
  for (const TokenLogprob& t : top) {
    const double p = std::exp(double(t.logprob) - first) / z;
    if (p > 0) h -= p * std::log(p);
  }
  return h;
}

// The two largest log-probabilities of a top list (the engine's come sorted; a hand-made one may not).
std::pair<float, float> top_two(const std::vector<TokenLogprob>& top) {
  float first = -std::numeric_limits<float>::infinity(), second = first;
  for (const TokenLogprob& t : top) {
    if (t.logprob > first) {
      second = first;
      first = t.logprob;
    } else if (t.logprob > second) {
      second = t.logprob;
    }
  }
  return {first, second};
}

}  // namespace

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
  for (size_t j = 0; j < kPreLastPositions && j < n; ++j) s.surprisal_last[j] = -double(tail[n - 1 - j]);
  s.scored_tokens = int64_t(n);
  s.mean_surprisal = n ? sum / double(n) : 0.0;
  return s;
}

PreSignals pre_signals_from_steps(std::span<const TokenStep> steps, int64_t prompt_tokens) {
  std::vector<const TokenStep*> prompt;
  const TokenStep* next = nullptr;
  for (const TokenStep& step : steps) {
    if (step.prompt) {
      prompt.push_back(&step);
    } else if (!next) {
      next = &step;
    }
  }
  std::vector<float> logprobs;
  for (const TokenStep* p : prompt) logprobs.push_back(p->chosen.logprob);
  PreSignals s = pre_signals_from_logprobs(logprobs, prompt_tokens);
  const size_t n = size_t(s.scored_tokens);
  double entropy = 0, top1 = 0, hits = 0;
  for (size_t i = prompt.size() - n; i < prompt.size(); ++i) {
    const TokenStep& step = *prompt[i];
    if (step.top.empty()) fail("router signals: a prompt step has no top log-probabilities (prompt_logprobs < 1)");
    const double h = top_entropy(step.top);
    const float best = top_two(step.top).first;
    entropy += h;
    top1 += best;
    hits += step.chosen.logprob >= best ? 1 : 0;  // a tie with the top counts as the top
    const size_t from_end = prompt.size() - 1 - i;
    if (from_end < kPreLastPositions) s.entropy_last[from_end] = h;
  }
  if (n) {
    s.mean_entropy = entropy / double(n);
    s.mean_top1_logprob = top1 / double(n);
    s.top1_rate = hits / double(n);
  }
  if (next && next->top.size() >= 2) {
    const auto [first, second] = top_two(next->top);
    s.next_entropy = top_entropy(next->top);
    s.next_top1_logprob = first;
    s.next_margin = double(first) - double(second);
  }
  return s;
}

PreSignals compute_pre_signals(Engine& engine, std::span<const int32_t> prompt) {
  if (prompt.empty()) fail("router signals: empty prompt");
  GenerationJob job;
  job.prompt.assign(prompt.begin(), prompt.end());
  job.options.sampling.temperature = 0;
  // One greedy step: its logprobs come from the last position's logits, which the prefill has
  // computed anyway (no decode pass runs for it).
  job.options.max_tokens = 1;
  job.options.top_logprobs = kPreTopLogprobs;
  job.options.prompt_logprobs = kPreTopLogprobs;
  // Only the window's positions get logits (and a cached prefix before them is reused): the
  // signal's cost beyond the prefill stays bounded on long prompts.
  job.options.prompt_logprobs_last = kPreWindow;
  std::vector<TokenStep> steps;
  steps.reserve(prompt.size() + 1);
  job.on_step = [&](const TokenStep& step) {
    steps.push_back(step);
    return true;
  };
  const JobSummary summary = engine.run(std::move(job));
  if (!summary.error.empty()) fail("router signals: ", summary.error);
  const size_t prompt_steps = size_t(std::count_if(steps.begin(), steps.end(), [](const TokenStep& s) { return s.prompt; }));
  const size_t expected = std::min(prompt.size() - 1, size_t(kPreWindow));
  if (prompt_steps != expected)
    fail("router signals: the engine gave ", prompt_steps, " prompt log-probabilities for the last ", expected,
         " of ", prompt.size(), " tokens");
  return pre_signals_from_steps(steps, int64_t(prompt.size()));
}

AnswerSignals answer_signals(std::span<const TokenStep> steps) {
  AnswerSignals s;
  std::vector<double> margins;
  double logprob_sum = 0, entropy_sum = 0;
  for (const TokenStep& step : steps) {
    // The end-of-sequence step carries no top list and is no token of the answer.
    if (step.prompt || step.token < 0 || step.stop == StopReason::end_of_sequence) continue;
    if (step.top.size() < 2)
      fail("router signals: a generated step has ", step.top.size(), " top log-probabilities, the cascade needs >= 2");
    logprob_sum += step.chosen.logprob;
    const auto [first, second] = top_two(step.top);
    margins.push_back(double(first) - double(second));
    const double h = top_entropy(step.top);
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

namespace {

struct FeatureDef {
  const char* name;
  double (*get)(const PreSignals&);
};

const std::array<FeatureDef, 17>& feature_defs() {
  static const std::array<FeatureDef, 17> defs = {
      FeatureDef{"mean_surprisal", [](const PreSignals& s) { return s.mean_surprisal; }},
      FeatureDef{"max_surprisal", [](const PreSignals& s) { return s.max_surprisal; }},
      FeatureDef{"prompt_tokens", [](const PreSignals& s) { return double(s.prompt_tokens); }},
      FeatureDef{"mean_entropy", [](const PreSignals& s) { return s.mean_entropy; }},
      FeatureDef{"mean_top1_logprob", [](const PreSignals& s) { return s.mean_top1_logprob; }},
      FeatureDef{"top1_rate", [](const PreSignals& s) { return s.top1_rate; }},
      FeatureDef{"surprisal_last1", [](const PreSignals& s) { return s.surprisal_last[0]; }},
      FeatureDef{"surprisal_last2", [](const PreSignals& s) { return s.surprisal_last[1]; }},
      FeatureDef{"surprisal_last3", [](const PreSignals& s) { return s.surprisal_last[2]; }},
      FeatureDef{"surprisal_last4", [](const PreSignals& s) { return s.surprisal_last[3]; }},
      FeatureDef{"entropy_last1", [](const PreSignals& s) { return s.entropy_last[0]; }},
      FeatureDef{"entropy_last2", [](const PreSignals& s) { return s.entropy_last[1]; }},
      FeatureDef{"entropy_last3", [](const PreSignals& s) { return s.entropy_last[2]; }},
      FeatureDef{"entropy_last4", [](const PreSignals& s) { return s.entropy_last[3]; }},
      FeatureDef{"next_entropy", [](const PreSignals& s) { return s.next_entropy; }},
      FeatureDef{"next_top1_logprob", [](const PreSignals& s) { return s.next_top1_logprob; }},
      FeatureDef{"next_margin", [](const PreSignals& s) { return s.next_margin; }},
  };
  static_assert(kPreLastPositions == 4, "the table names the last positions one by one");
  return defs;
}

const FeatureDef* find_feature(std::string_view name) {
  for (const FeatureDef& d : feature_defs())
    if (name == d.name) return &d;
  return nullptr;
}

// Solves a * x = b for a small dense system (Gaussian elimination with partial pivoting).
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  double largest = 0;
  for (const auto& row : a)
    for (double v : row) largest = std::max(largest, std::abs(v));
  for (size_t c = 0; c < n; ++c) {
    size_t pivot = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r][c]) > std::abs(a[pivot][c])) pivot = r;
    // Relative to the matrix's scale: a pivot this small means collinear columns.
    if (!(std::abs(a[pivot][c]) > 1e-12 * std::max(largest, 1e-300)))
      fail("router calibrate: the features are collinear (use a ridge penalty > 0)");
    std::swap(a[c], a[pivot]);
    std::swap(b[c], b[pivot]);
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (size_t i = n; i-- > 0;) {
    double v = b[i];
    for (size_t k = i + 1; k < n; ++k) v -= a[i][k] * x[k];
    x[i] = v / a[i][i];
  }
  return x;
}

}  // namespace

const std::vector<std::string>& pre_feature_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const FeatureDef& d : feature_defs()) v.emplace_back(d.name);
    return v;
  }();
  return names;
}

std::optional<double> pre_feature(const PreSignals& s, std::string_view name) {
  const FeatureDef* d = find_feature(name);
  if (!d) return std::nullopt;
  return d->get(s);
}

double pre_score(const PreSignals& s, const PreModel& model) {
  if (!model.fitted()) return s.mean_surprisal;
  double confidence = model.bias;
  for (const auto& [name, weight] : model.weights) {
    const std::optional<double> v = pre_feature(s, name);
    if (!v) fail("router: pre.features names an unknown feature '", name.substr(0, 64), "'");
    confidence += weight * *v;
  }
  return -confidence;  // low predicted confidence: a high score, the cloud
}

LinearFit fit_ridge(const std::vector<std::vector<double>>& x, std::span<const double> y, double lambda) {
  if (x.empty()) fail("router calibrate: no samples to fit");
  if (x.size() != y.size()) fail("router calibrate: ", x.size(), " samples but ", y.size(), " targets");
  if (!(lambda >= 0) || !std::isfinite(lambda)) fail("router calibrate: the ridge penalty must be >= 0, got ", lambda);
  const size_t n = x.size(), d = x[0].size();
  for (size_t i = 0; i < n; ++i) {
    if (x[i].size() != d) fail("router calibrate: sample ", i, " has ", x[i].size(), " features, not ", d);
    for (double v : x[i])
      if (!std::isfinite(v)) fail("router calibrate: sample ", i, " has a non-finite feature");
    if (!std::isfinite(y[i])) fail("router calibrate: sample ", i, " has a non-finite target");
  }
  std::vector<double> mean(d, 0), scale(d, 0);
  double y_mean = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) mean[j] += x[i][j];
    y_mean += y[i];
  }
  for (double& m : mean) m /= double(n);
  y_mean /= double(n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) scale[j] += (x[i][j] - mean[j]) * (x[i][j] - mean[j]);
  // The columns that vary; a constant one carries nothing the bias does not.
  std::vector<size_t> used;
  for (size_t j = 0; j < d; ++j) {
    scale[j] = std::sqrt(scale[j] / double(n));
    if (scale[j] > 1e-12 * std::max(1.0, std::abs(mean[j]))) used.push_back(j);
  }
  LinearFit fit;
  fit.weights.assign(d, 0.0);
  fit.bias = y_mean;
  if (used.empty()) return fit;
  const size_t m = used.size();
  // Normal equations on the standardized columns: (Z'Z + lambda I) w = Z'(y - mean y).
  std::vector<std::vector<double>> a(m, std::vector<double>(m, 0.0));
  std::vector<double> b(m, 0.0), z(m);
  for (size_t i = 0; i < n; ++i) {
    for (size_t p = 0; p < m; ++p) z[p] = (x[i][used[p]] - mean[used[p]]) / scale[used[p]];
    for (size_t p = 0; p < m; ++p) {
      for (size_t q = 0; q < m; ++q) a[p][q] += z[p] * z[q];
      b[p] += z[p] * (y[i] - y_mean);
    }
  }
  for (size_t p = 0; p < m; ++p) a[p][p] += lambda;
  const std::vector<double> w = solve(std::move(a), std::move(b));
  // Back to the raw scale: w_z * (x - mean) / scale = (w_z / scale) * x - (w_z / scale) * mean.
  for (size_t p = 0; p < m; ++p) {
    const size_t j = used[p];
    fit.weights[j] = w[p] / scale[j];
    fit.bias -= fit.weights[j] * mean[j];
  }
  return fit;
}

PreModel fit_pre_model(std::span<const PreSignals> signals, std::span<const double> confidence,
                       const std::vector<std::string>& features, double lambda) {
  if (features.empty()) fail("router calibrate: no pre features to fit");
  std::vector<const FeatureDef*> defs;
  for (const std::string& name : features) {
    const FeatureDef* d = find_feature(name);
    if (!d) fail("router calibrate: unknown pre feature '", name.substr(0, 64), "'");
    if (std::find(defs.begin(), defs.end(), d) != defs.end())
      fail("router calibrate: pre feature '", name, "' is named twice");
    defs.push_back(d);
  }
  std::vector<std::vector<double>> x;
  x.reserve(signals.size());
  for (const PreSignals& s : signals) {
    std::vector<double> row;
    for (const FeatureDef* d : defs) row.push_back(d->get(s));
    x.push_back(std::move(row));
  }
  const LinearFit fit = fit_ridge(x, confidence, lambda);
  PreModel model;
  model.bias = fit.bias;
  for (size_t j = 0; j < defs.size(); ++j) model.weights.emplace_back(defs[j]->name, fit.weights[j]);
  return model;
}

nlohmann::json to_json(const PreSignals& s) {
  nlohmann::json out = {{"prompt_tokens", s.prompt_tokens}, {"scored_tokens", s.scored_tokens}};
  for (const FeatureDef& d : feature_defs()) out[d.name] = d.get(s);
  out["prompt_tokens"] = s.prompt_tokens;  // an integer, not the feature's double
  return out;
}

nlohmann::json to_json(const AnswerSignals& s) {
  return {{"mean_logprob", s.mean_logprob},
          {"min_margin", s.min_margin},
          {"mean_entropy", s.mean_entropy},
          {"tokens", s.tokens}};
}

}  // namespace orchard::router
