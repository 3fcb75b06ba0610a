// One sequence's generation, step by step: given the logits of its last position, pick the next
// token (sampling, constraints, budget, end-of-sequence, stop strings) and release its text in
// whole UTF-8 characters. Shared by single-session generation and the batching server.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "orchard/tokenizer.h"
#include "runtime/logit_constraint.h"
#include "runtime/sampler.h"
#include "runtime/stop_strings.h"

namespace orchard {

enum class StopReason { none, end_of_sequence, stop_string, max_tokens, context_full, cancelled, constraint_complete };

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct StreamOptions {
  SamplingParams sampling;
  int64_t max_tokens = -1;  // < 0: no limit but the context
  std::vector<std::string> stop;
  std::shared_ptr<LogitConstraint> constraint;  // e.g. JSON-schema constrained decoding
  int top_logprobs = -1;  // < 0: no logprobs; 0: the chosen token's only
};

struct TokenStep {
  int32_t token = -1;         // -1 when the step ended generation without a token
  std::string text;           // released text (may be empty)
  StopReason stop = StopReason::none;
  TokenLogprob chosen{};      // when logprobs are asked for
  std::vector<TokenLogprob> top;
};

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
  std::string release(std::string text);

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
