// One sequence's generation, step by step: given the logits of its last position, pick the next
// token (sampling, constraints, budget, end-of-sequence, stop strings) and release its text in
// whole UTF-8 characters. Shared by single-session generation and the batching server.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "orchard/engine.h"
#include "orchard/tokenizer.h"
#include "runtime/logit_constraint.h"
#include "runtime/sampler.h"
#include "runtime/stop_strings.h"

namespace orchard {

// Sets step.chosen to `token`'s log-probability under `logits` and step.top to the `top` likeliest
// (none when top <= 0): the log-softmax of the logits as they are (token_stream.cpp says which).
// `kernels` gives the exp (the reference kernels' in double, or a fast one's).
void fill_logprobs(const Kernels& kernels, std::span<const float> logits, int32_t token, int top, TokenStep& step);

class TokenStream {
 public:
  TokenStream(const Tokenizer& tokenizer, std::span<const int32_t> prompt, StreamOptions options);

  // Picks the next token from `logits` (modified in place by penalties and constraints).
  // When the returned step has stop != none, generation is over and `text` holds the rest.
  TokenStep next(std::span<float> logits);
  // Speculative decoding's verification of a drafted token: the next token from `logits` by
  // exact rejection sampling (Leviathan et al.): `draft` drawn from `q` (null: proposed with
  // certainty, as n-gram lookup does) is kept with probability min(1, p(draft) / q(draft)), p
  // being the distribution `next` would draw from; otherwise the token is drawn from
  // norm(max(0, p - q)). The token is then `draft` exactly when it was accepted. Greedy p is its
  // pick alone, so a draft is kept only when it is the pick. Everything after the choice (end of
  // sequence, stop strings, constraint, budget) is next's.
  TokenStep verify(std::span<float> logits, int32_t draft, const TokenDistribution* q);
  // A drafting copy: the sampler with this stream's penalty state, on a random stream of `seed`.
  Sampler draft_sampler(uint64_t seed) const;
  // Tokens this stream may still generate (its budget), at least 0.
  int64_t remaining() const;
  // Ends generation for a reason outside the stream (context full, cancelled).
  TokenStep finish(StopReason reason);

  int64_t generated() const { return generated_; }

  // For tests: accept every draft, the wrong rule that the distribution tests must catch.
  void accept_every_draft_for_testing() { accept_every_draft_ = true; }

 private:
  // The common part of next and verify: `choose` picks the token from the prepared logits.
  template <typename Choose>
  TokenStep advance(std::span<float> logits, Choose&& choose);
  bool accept_every_draft_ = false;
  TokenDistribution p_, residual_;

  const Tokenizer& tokenizer_;
  StreamOptions options_;
  Sampler sampler_;
  StreamingDecoder decoder_;
  StopStringFilter stops_;
  std::vector<int32_t> eos_;
  int64_t generated_ = 0;
  bool done_ = false;
};

}  // namespace orchard
