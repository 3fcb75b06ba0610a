// Text generation: prefill a prompt, then sample token by token until an end-of-sequence token,
// the token budget, the context limit, or the caller says stop.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "runtime/logit_constraint.h"
#include "runtime/sampler.h"

namespace orchard {

struct GenerateOptions {
  SamplingParams sampling;
  int64_t max_tokens = -1;  // < 0: until end of sequence or a full context
  // Restricts the tokens (e.g. JsonSchemaConstraint); not owned, used by one generation at a time.
  // Generation stops as end_of_sequence once it is finished.
  LogitConstraint* constraint = nullptr;
};

enum class StopReason { end_of_sequence, max_tokens, context_full, cancelled };

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the end-of-sequence token
  StopReason stop = StopReason::end_of_sequence;
};

// Runs `prompt` through `context` (after what it already holds) and generates. `on_text`
// receives the generated text in pieces that are always whole UTF-8 characters; returning
// false stops generation.
GenerateResult generate(Context& context, const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                        const GenerateOptions& options,
                        const std::function<bool(std::string_view)>& on_text);

}  // namespace orchard
