// `orchard template`: renders a model's chat template for a conversation and prints the text
// exactly (no newline added), for comparing with transformers' apply_chat_template.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mapped_file.h"
#include "base/json_parse.h"
#include "command.h"
#include "template/chat_template.h"
#include "template/chat_template_config.h"

namespace orchard::cli {

namespace {

nlohmann::ordered_json read_input_json(const std::string& path) {
  // A regular file of at most kMaxJsonFileBytes: /dev/zero or a FIFO is refused, not read forever.
  return parse_json<nlohmann::ordered_json>(read_text_file(path, kMaxJsonFileBytes), "orchard template: '" + path + "'");
}

// A token from the input, else from tokenizer_config.json, else empty.
std::string token_from(const nlohmann::ordered_json& input, const char* key, const std::optional<std::string>& configured) {
  const auto it = input.find(key);
  if (it != input.end() && !it->is_null()) {
    if (!it->is_string()) fail("orchard template: input '", key, "' must be a string");
    return it->get<std::string>();
  }
  return configured.value_or("");
}

int template_command(Args& args) {
  const std::string config_path = args.require("tokenizer-config");
  const std::string input_path = args.require("input-json");
  const std::string template_name = args.get_or("template-name", "default");
  args.finish();

  const ChatTemplateConfig config = read_chat_template_config(config_path, template_name);
  const nlohmann::ordered_json input = read_input_json(input_path);
  if (!input.is_object()) fail("orchard template: the input JSON must be an object");
  if (!input.contains("messages")) fail("orchard template: the input JSON has no 'messages'");

  const auto add_generation_prompt = input.value("add_generation_prompt", nlohmann::ordered_json(false));
  if (!add_generation_prompt.is_boolean()) fail("orchard template: input 'add_generation_prompt' must be true or false");
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  for (const auto& [key, value] : input.items())
    if (key != "messages" && key != "tools" && key != "add_generation_prompt" && key != "bos_token" && key != "eos_token")
      extra[key] = value;

  const std::string text = render_chat(config.chat_template, input.at("messages"),
                                       input.value("tools", nlohmann::ordered_json()), add_generation_prompt.get<bool>(),
                                       token_from(input, "bos_token", config.bos_token),
                                       token_from(input, "eos_token", config.eos_token), extra);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

const RegisterCommand kTemplate("template",
                                "render a chat template: --tokenizer-config PATH --input-json FILE [--template-name NAME]",
                                template_command);

}  // namespace

}  // namespace orchard::cli
