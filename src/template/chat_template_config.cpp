#include "template/chat_template_config.h"

#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"

namespace orchard {

namespace {

std::optional<std::string> special_token(const nlohmann::ordered_json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  fail("tokenizer config: '", key, "' must be a string or an object with a string 'content'");
}

}  // namespace

ChatTemplateConfig chat_template_config_from_json(const nlohmann::ordered_json& config, const std::string& template_name) {
  if (!config.is_object()) fail("tokenizer config must be a JSON object");
  ChatTemplateConfig result;
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) fail("tokenizer config has no 'chat_template'");
  if (it->is_string()) {
    result.chat_template = it->get<std::string>();
  } else if (it->is_array()) {
    std::string names;
    bool found = false;
    for (const auto& entry : *it) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") || !entry["name"].is_string() ||
          !entry["template"].is_string())
        fail("tokenizer config: each 'chat_template' list entry needs string 'name' and 'template'");
      const std::string name = entry["name"].get<std::string>();
      names += (names.empty() ? "" : ", ") + name;
      if (name == template_name) {
        result.chat_template = entry["template"].get<std::string>();
        found = true;
      }
    }
    if (!found) fail("tokenizer config has no chat template named '", template_name, "' (it has: ", names, ")");
  } else {
    fail("tokenizer config: 'chat_template' must be a string or a list of {name, template}");
  }
  result.bos_token = special_token(config, "bos_token");
  result.eos_token = special_token(config, "eos_token");
  return result;
}

ChatTemplateConfig read_chat_template_config(const std::string& tokenizer_config_path, const std::string& template_name) {
  const auto config = parse_json<nlohmann::ordered_json>(read_text_file(tokenizer_config_path, kMaxJsonFileBytes),
                                                        "tokenizer config '" + tokenizer_config_path + "'");
  try {
    return chat_template_config_from_json(config, template_name);
  } catch (const Error& e) {
    fail(tokenizer_config_path, ": ", e.what());
  }
}

}  // namespace orchard
