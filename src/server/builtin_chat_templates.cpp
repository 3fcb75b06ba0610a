#include "server/builtin_chat_templates.h"

#include <utility>

#include "base/error.h"
#include "base/mapped_file.h"
#include "template/chat_template.h"

namespace orchard::server {
namespace {

// Every line opens with a tag that strips the white space before it, and all text comes from
// expressions: the templates' own layout adds nothing to the prompt. A message's content may be
// absent (an assistant message with tool calls): it then counts as empty.

const std::string kChatml = R"({%- for message in messages %}
{%- set content = message['content'] if message['content'] is string else '' %}
{{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %}
)";

const std::string kLlama3 = R"({{- bos_token }}
{%- for message in messages %}
{%- set content = message['content'] if message['content'] is string else '' %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (content | trim) + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)";

const std::string kQwen = R"({%- set tool_list = tools if tools is not none and tools is defined else [] %}
{%- set first_system = messages[0]['role'] == 'system' %}
{%- if tool_list | length > 0 %}
{{- '<|im_start|>system\n' }}
{%- if first_system %}
{{- messages[0]['content'] + '\n\n' }}
{%- endif %}
{{- '# Tools\n\nYou can call the functions described inside <tools></tools>:\n<tools>' }}
{%- for tool in tool_list %}
{{- '\n' + (tool | tojson) }}
{%- endfor %}
{{- '\n</tools>\n\nTo call a function, answer with a JSON object of its name and arguments inside <tool_call></tool_call> tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif first_system %}
{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- set content = message['content'] if message['content'] is string else '' %}
{%- if message['role'] == 'system' and loop.first %}
{%- elif message['role'] == 'tool' %}
{%- if loop.first or loop.previtem['role'] != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
{%- if loop.last or loop.nextitem['role'] != 'tool' %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- elif message['role'] == 'assistant' %}
{{- '<|im_start|>assistant\n' + content }}
{%- if message['tool_calls'] is defined and message['tool_calls'] %}
{%- for call in message['tool_calls'] %}
{%- set fn = call['function'] if call['function'] is defined else call %}
{%- if content or not loop.first %}
{{- '\n' }}
{%- endif %}
{{- '<tool_call>\n{"name": "' + fn['name'] + '", "arguments": ' }}
{%- if fn['arguments'] is not defined %}
{{- '{}' }}
{%- elif fn['arguments'] is string %}
{{- fn['arguments'] }}
{%- else %}
{{- fn['arguments'] | tojson }}
{%- endif %}
{{- '}\n</tool_call>' }}
{%- endfor %}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- else %}
{{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %}
)";

const std::vector<std::pair<std::string, const std::string*>>& table() {
  static const std::vector<std::pair<std::string, const std::string*>> all = {
      {"chatml", &kChatml}, {"llama3", &kLlama3}, {"qwen", &kQwen}};
  return all;
}

}  // namespace

const std::vector<std::string>& builtin_chat_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& [name, source] : table()) out.push_back(name);
    return out;
  }();
  return names;
}

const std::string& builtin_chat_template(const std::string& name) {
  std::string known;
  for (const auto& [n, source] : table()) {
    if (n == name) return *source;
    known += (known.empty() ? "" : ", ") + n;
  }
  fail("--chat-template ", name, ": no built-in template of that name (there are ", known, ")");
}

std::string read_chat_template_file(const std::string& path) {
  std::string source;
  try {
    source = read_text_file(path, kMaxJsonFileBytes);
    if (source.empty()) fail("the file is empty");
    JinjaTemplate parsed(source);  // a syntax error names the line
  } catch (const Error& e) {
    fail("--chat-template-file ", path, ": not a usable chat template: ", e.what());
  }
  return source;
}

}  // namespace orchard::server
