// A conversation with a model: each turn's prompt is the whole conversation so far (as the chat
// template renders it), and only the tokens after the longest prefix already in the KV cache
// are prefilled.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "runtime/generate.h"

namespace orchard {

class Session {
 public:
  Session(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
          const ContextOptions& context_options = {});

  // Generates a reply to `prompt` (the full conversation's tokens). Setting `cancel` to true
  // from another thread stops generation at the next token.
  GenerateResult reply(std::span<const int32_t> prompt, const StreamOptions& options,
                       const std::function<bool(std::string_view)>& on_text,
                       const std::atomic<bool>* cancel = nullptr);

  // Tokens whose keys and values are in the cache (prompt and generated, in order).
  const std::vector<int32_t>& cached_tokens() const { return cached_; }
  // How many prompt tokens the last reply took from the cache instead of prefilling.
  int64_t last_reused_tokens() const { return last_reused_; }
  void reset();

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  Context& context() { return context_; }

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  Context context_;
  std::vector<int32_t> cached_;
  int64_t last_reused_ = 0;
};

}  // namespace orchard
