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
  // Ends generation for a reason outside the stream (context full, cancelled).
  TokenStep finish(StopReason reason);

  int64_t generated() const { return generated_; }

 private:
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
