#include "runtime/chat_prompt.h"

#include <nlohmann/json.hpp>

#include "template/chat_template.h"

namespace orchard {
namespace {

std::string special_text(const Tokenizer& tokenizer, std::optional<int32_t> id) {
  return id ? tokenizer.token_text(*id) : std::string();
}

}  // namespace

std::string render_user_prompt(const Tokenizer& tokenizer, const std::string& prompt) {
  if (tokenizer.chat_template().empty()) return {};
  const nlohmann::ordered_json messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", prompt}}});
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  return render_chat(tokenizer.chat_template(), messages, nullptr, true, special_text(tokenizer, tokenizer.bos_id()),
                     special_text(tokenizer, eos.empty() ? std::nullopt : std::optional<int32_t>(eos.front())));
}

std::vector<int32_t> chat_prompt_ids(const Tokenizer& tokenizer, const std::string& prompt) {
  if (tokenizer.chat_template().empty()) return tokenizer.encode(prompt, tokenizer.adds_bos());
  return tokenizer.encode(render_user_prompt(tokenizer, prompt), false);
}

}  // namespace orchard
