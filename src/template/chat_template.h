// Rendering Hugging Face chat templates: jinja2 semantics with transformers' settings
// (trim_blocks, lstrip_blocks, loop controls, its tojson, raise_exception and strftime_now),
// so that the text matches what transformers' apply_chat_template produces byte for byte.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "template/ast.h"
#include "template/limits.h"

namespace orchard {

// A template parsed once and rendered any number of times. Syntax errors throw orchard::Error
// from the constructor, naming the template line and column.
class JinjaTemplate {
 public:
  explicit JinjaTemplate(const std::string& source, jinja::RenderLimits limits = {});
  // `context` is a JSON object whose keys become template variables.
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::shared_ptr<const jinja::Body> body_;
  jinja::RenderLimits limits_;
};

std::string render_template(const std::string& source, const nlohmann::ordered_json& context);

// The variables transformers passes a chat template: messages, tools (null when absent),
// documents (null), add_generation_prompt, bos_token, eos_token, then `extra`'s keys, which
// override.
nlohmann::ordered_json chat_template_context(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                             bool add_generation_prompt, const std::string& bos_token,
                                             const std::string& eos_token, const nlohmann::ordered_json& extra = {});

std::string render_chat(const std::string& source, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt, const std::string& bos_token,
                        const std::string& eos_token, const nlohmann::ordered_json& extra = {});

}  // namespace orchard
