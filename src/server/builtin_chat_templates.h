// Chat templates the server can use instead of a model's own (`orchard serve --chat-template NAME`
// or `--chat-template-file F`): for a model that has none (llama2.c and bare GGUF files), or one
// whose template is wrong. They are Jinja, rendered by src/template/ like any model's.
//
//   chatml  <|im_start|>ROLE\nCONTENT<|im_end|>\n per message, then <|im_start|>assistant\n
//   llama3  BOS, then <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|> per message
//           (content trimmed, as Meta's template does), then the assistant's header
//   qwen    ChatML with Qwen2.5's tools: a system block listing the tools in <tools></tools>, the
//           assistant's calls as <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
//           (what runtime/tool_calls.cpp parses), tool results as <tool_response> blocks in one
//           user turn. No default system prompt.
#pragma once
#include <string>
#include <vector>

namespace orchard::server {

// The names above, in that order.
const std::vector<std::string>& builtin_chat_template_names();

// The template's Jinja source; an unknown name throws orchard::Error listing the names.
const std::string& builtin_chat_template(const std::string& name);

// The Jinja source of a template file, checked to parse: a file that cannot be read or does not
// parse throws orchard::Error naming the file (and the template's line).
std::string read_chat_template_file(const std::string& path);

}  // namespace orchard::server
