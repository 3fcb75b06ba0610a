#include "eval/divergence.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "base/error.h"

namespace orchard {
namespace {

// log-softmax in float64.
void log_softmax(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  double max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, double(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - max);
  const double log_sum = std::log(sum) + max;
  for (int64_t i = 0; i < n; ++i) out[i] = double(logits[i]) - log_sum;
}

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

void check_sequences(const TokenSequences& sequences) {
  if (sequences.empty()) fail("no token sequences to evaluate");
  for (const auto& s : sequences)
    if (s.empty()) fail("an empty token sequence cannot be evaluated");
}

ContextOptions fitted(ContextOptions options, const TokenSequences& sequences) {
  int64_t longest = 0;
  for (const auto& s : sequences) longest = std::max<int64_t>(longest, static_cast<int64_t>(s.size()));
  options.n_ctx = std::max(options.n_ctx, longest);
  return options;
}

}  // namespace

TokenSequences random_sequences(int64_t n_vocab, int64_t count, int64_t length, uint64_t seed) {
  if (n_vocab <= 0 || count <= 0 || length <= 0) fail("random sequences need a positive count and length");
  // splitmix64: fully specified, unlike the standard library's distributions.
  uint64_t state = seed;
  auto next = [&] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  TokenSequences out(static_cast<size_t>(count), std::vector<int32_t>(static_cast<size_t>(length)));
  for (auto& s : out)
    for (int32_t& t : s) t = static_cast<int32_t>(next() % static_cast<uint64_t>(n_vocab));
  return out;
}

TokenSequences split_sequences(const std::vector<int32_t>& tokens, int64_t length, int64_t max_count) {
  if (length <= 0) fail("sequence length must be positive");
  TokenSequences out;
  for (size_t at = 0; at + static_cast<size_t>(length) <= tokens.size(); at += static_cast<size_t>(length)) {
    if (max_count > 0 && static_cast<int64_t>(out.size()) >= max_count) break;
    out.emplace_back(tokens.begin() + static_cast<std::ptrdiff_t>(at),
                     tokens.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(length)));
  }
  return out;
}

double kl_divergence(const float* p_logits, const float* q_logits, int64_t n) {
  thread_local std::vector<double> lp, lq;
  log_softmax(p_logits, n, lp);
  log_softmax(q_logits, n, lq);
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return std::max(0.0, kl);
}

DivergenceResult compare_models(std::shared_ptr<const Model> base, std::shared_ptr<const Model> model,
                                const TokenSequences& sequences, const ContextOptions& options,
                                const std::function<void(int64_t, int64_t)>& progress) {
  check_sequences(sequences);
  const int64_t n_vocab = base->config().n_vocab;
  if (model->config().n_vocab != n_vocab)
    fail("the models have different vocabularies (", n_vocab, " and ", model->config().n_vocab, " tokens)");
  const ContextOptions o = fitted(options, sequences);
  Context base_ctx(base, o), model_ctx(model, o);
  DivergenceResult r;
  double sum = 0, sum_sq = 0;
  int64_t agree = 0, done = 0;
  for (const auto& s : sequences) {
    base_ctx.reset();
    model_ctx.reset();
    const std::vector<float> p = base_ctx.eval(s), q = model_ctx.eval(s);
    for (size_t t = 0; t < s.size(); ++t) {
      const float* pt = p.data() + t * n_vocab;
      const float* qt = q.data() + t * n_vocab;
      const double kl = kl_divergence(pt, qt, n_vocab);
      sum += kl;
      sum_sq += kl * kl;
      r.max_kl = std::max(r.max_kl, kl);
      agree += argmax(pt, n_vocab) == argmax(qt, n_vocab);
      ++r.positions;
    }
    if (progress) progress(++done, static_cast<int64_t>(sequences.size()));
  }
  const double n = static_cast<double>(r.positions);
  r.mean_kl = sum / n;
  r.kl_standard_error = n > 1 ? std::sqrt(std::max(0.0, sum_sq / n - r.mean_kl * r.mean_kl) / (n - 1)) : 0;
  r.top1_agreement = static_cast<double>(agree) / n;
  return r;
}

PerplexityResult perplexity(std::shared_ptr<const Model> model, const TokenSequences& sequences,
                            const ContextOptions& options,
                            const std::function<void(int64_t, int64_t)>& progress) {
  check_sequences(sequences);
  const int64_t n_vocab = model->config().n_vocab;
  Context ctx(model, fitted(options, sequences));
  PerplexityResult r;
  double nll = 0;
  std::vector<double> lp;
  int64_t done = 0;
  for (const auto& s : sequences) {
    ctx.reset();
    const std::vector<float> logits = ctx.eval(s);
    for (size_t t = 0; t + 1 < s.size(); ++t) {
      log_softmax(logits.data() + t * n_vocab, n_vocab, lp);
      nll -= lp[static_cast<size_t>(s[t + 1])];
      ++r.predictions;
    }
    if (progress) progress(++done, static_cast<int64_t>(sequences.size()));
  }
  if (r.predictions == 0) fail("perplexity needs sequences of at least 2 tokens");
  r.mean_nll = nll / static_cast<double>(r.predictions);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace orchard
