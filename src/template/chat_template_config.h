// The chat template and special tokens in a Hugging Face tokenizer_config.json.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace orchard {

struct ChatTemplateConfig {
  std::string chat_template;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

// `chat_template` may be a string or a list of {name, template}; `template_name` picks from the
// list ("default" normally). bos_token/eos_token may be strings or {"content": ...} objects.
ChatTemplateConfig chat_template_config_from_json(const nlohmann::ordered_json& config,
                                                  const std::string& template_name = "default");
ChatTemplateConfig read_chat_template_config(const std::string& tokenizer_config_path,
                                             const std::string& template_name = "default");

}  // namespace orchard
