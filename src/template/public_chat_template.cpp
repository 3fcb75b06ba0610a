// orchard::ChatTemplate, the public face of the template engine (include/orchard/chat_template.h).
#include "orchard/chat_template.h"

#include "base/error.h"
#include "base/json_parse.h"
#include "template/chat_template.h"
#include "template/chat_template_config.h"

namespace orchard {

struct ChatTemplate::Impl {
  JinjaTemplate compiled;
  std::string bos_token;
  std::string eos_token;
};

namespace {

nlohmann::ordered_json parse_argument(const std::string& text, const char* what) {
  return parse_json<nlohmann::ordered_json>(text, std::string("chat template ") + what);
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source, std::string bos_token, std::string eos_token)
    : impl_(std::make_shared<const Impl>(Impl{JinjaTemplate(source), std::move(bos_token), std::move(eos_token)})) {}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string& path, const std::string& name) {
  const ChatTemplateConfig config = read_chat_template_config(path, name);
  return ChatTemplate(config.chat_template, config.bos_token.value_or(""), config.eos_token.value_or(""));
}

std::string ChatTemplate::render(const std::string& context_json) const {
  return impl_->compiled.render(parse_argument(context_json, "context"));
}

std::string ChatTemplate::render_chat(const std::string& messages_json, const std::string& tools_json,
                                      bool add_generation_prompt, const std::string& extra_json) const {
  const auto messages = parse_argument(messages_json, "messages");
  const auto tools = tools_json.empty() ? nlohmann::ordered_json() : parse_argument(tools_json, "tools");
  const auto extra = extra_json.empty() ? nlohmann::ordered_json::object() : parse_argument(extra_json, "extra variables");
  return impl_->compiled.render(
      chat_template_context(messages, tools, add_generation_prompt, impl_->bos_token, impl_->eos_token, extra));
}

const std::string& ChatTemplate::bos_token() const { return impl_->bos_token; }
const std::string& ChatTemplate::eos_token() const { return impl_->eos_token; }

}  // namespace orchard
