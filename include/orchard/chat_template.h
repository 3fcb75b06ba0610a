// Chat templates: renders a model's Hugging Face chat template (Jinja) the way transformers'
// apply_chat_template does, byte for byte. JSON travels as text so this header needs no JSON
// library.
#pragma once
#include <memory>
#include <string>

namespace orchard {

class ChatTemplate {
 public:
  // Parses `source`; a syntax error throws orchard::Error naming the template line.
  explicit ChatTemplate(const std::string& source, std::string bos_token = "", std::string eos_token = "");
  // The template and special tokens of a tokenizer_config.json; `name` picks among named
  // templates when there are several.
  static ChatTemplate from_tokenizer_config(const std::string& path, const std::string& name = "default");

  // `context_json`: a JSON object whose keys become the template's variables.
  std::string render(const std::string& context_json) const;
  // `messages_json`: a JSON array of messages; `tools_json`: a JSON array, or empty for none;
  // `extra_json`: an optional JSON object of further variables (e.g. {"enable_thinking": false}).
  std::string render_chat(const std::string& messages_json, const std::string& tools_json = "",
                          bool add_generation_prompt = true, const std::string& extra_json = "") const;

  const std::string& bos_token() const;
  const std::string& eos_token() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace orchard
