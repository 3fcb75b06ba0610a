#include "runtime/session.h"

#include <algorithm>

#include "base/error.h"

namespace orchard {

Session::Session(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                 const ContextOptions& context_options)
    : tokenizer_(std::move(tokenizer)), context_(std::move(model), context_options) {
  if (!tokenizer_) fail("Session: no tokenizer");
}

void Session::reset() {
  context_.reset();
  cached_.clear();
}

GenerateResult Session::reply(std::span<const int32_t> prompt, const StreamOptions& options,
                              const std::function<bool(std::string_view)>& on_text,
                              const std::atomic<bool>* cancel) {
  if (prompt.empty()) fail("Session: the prompt has no tokens");
  if (static_cast<int64_t>(prompt.size()) >= context_.n_ctx())
    fail("the prompt has ", prompt.size(), " tokens; the context holds ", context_.n_ctx());
  // Keep the common prefix, but always recompute at least the last prompt token: its logits
  // choose the first new token.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  context_.truncate(static_cast<int64_t>(common));
  cached_.resize(common);
  last_reused_ = static_cast<int64_t>(common);

  GenerateResult result = generate(context_, *tokenizer_, prompt, options, on_text, cancel);
  // Everything but the last sampled token went through the model.
  cached_.assign(prompt.begin(), prompt.end());
  cached_.insert(cached_.end(), result.tokens.begin(), result.tokens.end());
  cached_.resize(static_cast<size_t>(context_.n_past()));
  return result;
}

}  // namespace orchard
