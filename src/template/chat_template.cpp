#include "template/chat_template.h"

#include "base/error.h"
#include "template/interpreter.h"
#include "template/json_value.h"
#include "template/lexer.h"
#include "template/parser.h"

namespace orchard {

JinjaTemplate::JinjaTemplate(const std::string& source, jinja::RenderLimits limits)
    : body_(std::make_shared<const jinja::Body>(jinja::parse_template(jinja::tokenize_template(source)))),
      limits_(limits) {}

std::string JinjaTemplate::render(const nlohmann::ordered_json& context) const {
  if (!context.is_null() && !context.is_object()) fail("template context must be a JSON object");
  jinja::DictData variables;
  if (context.is_object())
    for (const auto& [key, value] : context.items())
      variables.set(jinja::Value::string(key), jinja::value_from_json(value));
  jinja::Interpreter interpreter(limits_);
  return interpreter.render(*body_, variables);
}

std::string render_template(const std::string& source, const nlohmann::ordered_json& context) {
  return JinjaTemplate(source).render(context);
}

nlohmann::ordered_json chat_template_context(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                             bool add_generation_prompt, const std::string& bos_token,
                                             const std::string& eos_token, const nlohmann::ordered_json& extra) {
  if (!messages.is_array()) fail("chat template input: 'messages' must be a JSON array");
  if (!extra.is_null() && !extra.is_object()) fail("chat template input: extra variables must be a JSON object");
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  context["tools"] = tools;
  context["documents"] = nullptr;  // transformers always passes documents, None when absent
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token;
  context["eos_token"] = eos_token;
  if (extra.is_object())
    for (const auto& [key, value] : extra.items()) context[key] = value;
  return context;
}

std::string render_chat(const std::string& source, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt, const std::string& bos_token,
                        const std::string& eos_token, const nlohmann::ordered_json& extra) {
  return render_template(source, chat_template_context(messages, tools, add_generation_prompt, bos_token, eos_token, extra));
}

}  // namespace orchard
