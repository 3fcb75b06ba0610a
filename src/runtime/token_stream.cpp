#include "runtime/token_stream.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernels.h"

namespace orchard {

// log-softmax of the chosen token and the `top` most likely ones, from the model's own logits:
// the raw model distribution over the tokenizer's tokens, before penalties, constraints,
// top-k/top-p/min-p and temperature (what a distillation student is trained to match, and what
// scoring a text needs), whatever the sampler then draws from.
//
// Per token of every sequence that asks, so it is kept to two passes over the vocabulary: the
// kernels' vectorized exp for the normalizer, and one scan that keeps the `top` best in a small
// sorted array (a new entry must beat the current last, so it inserts about top * ln(V / top)
// times). With a double std::exp per entry and a partial_sort over an index array it took about
// 2.5 ms a token on a 151,936-token vocabulary, and top-20 collection at 16 streams ran at 0.78 of
// the server's speed without logprobs (bench/distill_collect_speed.py).
void fill_logprobs(const Kernels& kernels, std::span<const float> logits, int32_t token, int top, TokenStep& step) {
  const int64_t n = static_cast<int64_t>(logits.size());
  float max_logit = -INFINITY;
  for (float l : logits) max_logit = l > max_logit ? l : max_logit;
  thread_local std::vector<float> weights;
  weights.resize(logits.size());
  const double total = kernels.exp_weights(logits.data(), n, max_logit, 1.0f, weights.data());
  const float log_norm = max_logit + static_cast<float>(std::log(total));
  step.chosen = {token, logits[token] - log_norm};
  if (top <= 0) return;
  // Likeliest first; equal logits by the lower id (the scan goes up in id, so an equal one stays out).
  const size_t k = std::min<size_t>(static_cast<size_t>(top), logits.size());
  std::vector<int32_t> best;
  best.reserve(k);
  for (int64_t i = 0; i < n; ++i) {
    const float l = logits[i];
    if (best.size() == k && !(l > logits[best.back()])) continue;
    if (best.size() == k) best.pop_back();
    size_t at = best.size();
    while (at > 0 && l > logits[best[at - 1]]) --at;
    best.insert(best.begin() + static_cast<ptrdiff_t>(at), static_cast<int32_t>(i));
  }
  for (int32_t id : best) step.top.push_back({id, logits[id] - log_norm});
}

TokenStream::TokenStream(const Tokenizer& tokenizer, std::span<const int32_t> prompt, StreamOptions options)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      sampler_(options_.sampling),
      decoder_(tokenizer),
      stops_(options_.stop),
      eos_(tokenizer.eos_ids()) {
  // The decoder sees the prompt so that the generated text is decoded in context (a
  // SentencePiece decoder, for one, strips a leading space only at the very start of a text).
  for (int32_t t : prompt) {
    sampler_.remember(t);
    decoder_.push(t);
  }
}

TokenStep TokenStream::finish(StopReason reason) {
  TokenStep step;
  if (done_) return step;
  done_ = true;
  step.stop = reason;
  step.text = stops_.push(decoder_.finish());
  step.text += stops_.flush();
  return step;
}

TokenStep TokenStream::next(std::span<float> logits) {
  return advance(logits, [&](std::span<float> prepared) { return sampler_.sample(prepared); });
}

TokenStep TokenStream::verify(std::span<float> logits, int32_t draft, const TokenDistribution* q) {
  return advance(logits, [&](std::span<float> prepared) {
    sampler_.distribution(prepared, p_);
    const double p = p_.prob(draft), q_draft = q ? q->prob(draft) : 1.0;
    int32_t token = draft;
    // One uniform per draft, drawn whatever the outcome, so that the stream of draws does not
    // depend on the comparison.
    const double u = sampler_.uniform();
    const bool accepted = p > 0 && (q_draft <= p || u * q_draft < p);
    if (!accept_every_draft_ && !accepted) {
      // Rejected (p < q here, or p = 0): draw from the part of p that q did not cover.
      residual_.ids.clear();
      residual_.probs.clear();
      // q by token id, so that the pass over p looks each one up at once: a draft sampled at a
      // temperature alone covers the whole vocabulary, and TokenDistribution::prob per token of
      // p would scan it 150k times.
      thread_local std::vector<double> q_by_id;
      if (q)
        for (size_t i = 0; i < q->ids.size(); ++i) {
          const size_t id = static_cast<size_t>(q->ids[i]);
          if (id >= q_by_id.size()) q_by_id.resize(id + 1, 0.0);
          q_by_id[id] = q->probs[i];
        }
      auto q_of = [&](int32_t id) {
        if (!q) return id == draft ? 1.0 : 0.0;
        return static_cast<size_t>(id) < q_by_id.size() ? q_by_id[static_cast<size_t>(id)] : 0.0;
      };
      double total = 0;
      for (size_t i = 0; i < p_.ids.size(); ++i) {
        const double rest = p_.probs[i] - q_of(p_.ids[i]);
        if (rest <= 0) continue;
        residual_.ids.push_back(p_.ids[i]);
        residual_.probs.push_back(rest);
        total += rest;
      }
      if (q)
        for (int32_t id : q->ids) q_by_id[static_cast<size_t>(id)] = 0.0;  // clean for the next call
      if (total > 0) {
        for (double& r : residual_.probs) r /= total;
        token = sampler_.draw(residual_);
      } else {
        token = sampler_.draw(p_);  // rounding only: p and q agree everywhere
      }
    }
    sampler_.remember_generated(token);
    return token;
  });
}

Sampler TokenStream::draft_sampler(uint64_t seed) const {
  Sampler copy = sampler_;
  copy.reseed(seed);
  return copy;
}

int64_t TokenStream::remaining() const {
  if (done_) return 0;
  return options_.max_tokens < 0 ? INT64_MAX : std::max<int64_t>(0, options_.max_tokens - generated_);
}

template <typename Choose>
TokenStep TokenStream::advance(std::span<float> logits, Choose&& choose) {
  if (done_) return TokenStep{.stop = StopReason::cancelled};
  if (options_.max_tokens >= 0 && generated_ >= options_.max_tokens) return finish(StopReason::max_tokens);
  // Padding rows of a vocabulary padded beyond the tokenizer's (n_vocab > vocab_size) are no
  // tokens: never sample them (their logits are usually low, but not always after fine-tuning).
  const size_t tokenizer_vocab = static_cast<size_t>(tokenizer_.vocab_size());
  if (logits.size() > tokenizer_vocab)
    std::fill(logits.begin() + static_cast<ptrdiff_t>(tokenizer_vocab), logits.end(), -std::numeric_limits<float>::infinity());
  std::vector<float> original;
  if (options_.top_logprobs >= 0) original.assign(logits.begin(), logits.end());
  const bool constrained = options_.constraint != nullptr;
  if (constrained) {
    const int64_t left = options_.max_tokens >= 0 ? options_.max_tokens - generated_ : -1;
    options_.constraint->apply(logits, left);
  }
  TokenStep step;
  step.token = choose(logits);
  if (!original.empty())
    fill_logprobs(select_kernels(options_.sampling.kernels), original, step.token, options_.top_logprobs, step);
  const bool is_eos = std::find(eos_.begin(), eos_.end(), step.token) != eos_.end();
  if (is_eos) {
    TokenStep end = finish(StopReason::end_of_sequence);
    end.token = step.token;
    return end;
  }
  ++generated_;
  if (constrained) options_.constraint->accept(step.token);
  step.text = stops_.push(decoder_.push(step.token));
  if (stops_.stopped()) {
    done_ = true;
    step.stop = StopReason::stop_string;
    return step;
  }
  // Nothing but end of sequence could follow: stop without spending a decode step on it.
  if (constrained && options_.constraint->finished()) {
    TokenStep end = finish(StopReason::constraint_complete);
    step.text += end.text;
    step.stop = end.stop;
    return step;
  }
  if (options_.max_tokens >= 0 && generated_ >= options_.max_tokens) {
    TokenStep end = finish(StopReason::max_tokens);
    step.text += end.text;
    step.stop = end.stop;
  }
  return step;
}

}  // namespace orchard
