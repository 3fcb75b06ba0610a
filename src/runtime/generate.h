// Text generation for one sequence: prefill a prompt, then sample token by token until an
// end-of-sequence token, a stop string, the token budget, the context limit, or the caller says
// stop.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "runtime/token_stream.h"

namespace orchard {

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the end-of-sequence token
  StopReason stop = StopReason::none;
};

// Generates after `prompt`. The context must hold a prefix of the prompt (its first
// context.n_past() tokens, at least one fewer than the whole); the rest is prefilled. `on_text`
// receives the generated text in pieces that are always whole UTF-8 characters; returning
// false, or `cancel` becoming true, cancels.
GenerateResult generate(Context& context, const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                        const StreamOptions& options, const std::function<bool(std::string_view)>& on_text,
                        const std::atomic<bool>* cancel = nullptr);

}  // namespace orchard
