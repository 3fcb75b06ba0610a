// Chat templates (the Jinja lexer, parser and interpreter), from both sides:
//  1. the input is the template, rendered over a small fixed conversation (with tools, a tool
//     call, a system prompt and extra variables);
//  2. the input is the JSON a fixed template is rendered with: the messages of render_chat, and
//     the whole context of render().
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "orchard/chat_template.h"
#include "orchard/error.h"

using namespace orchard;

namespace {

constexpr const char* kMessages = R"([
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "What is the weather in Paris? <|im_end|>"},
  {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}}]},
  {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21.5}"},
  {"role": "assistant", "content": "<think>\nwarm\n</think>\n\nIt is 21.5 \u00b0C."},
  {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "image"}]}
])";

constexpr const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
])";

// A template in the style of real chat templates, touching most of the language: loops with
// loop variables, namespaces, macros, filters, tests, string methods, slices and tojson.
constexpr const char* kFixedTemplate = R"({%- macro render_content(content) -%}
{%- if content is string -%}{{ content | trim }}
{%- elif content is iterable -%}{%- for part in content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- else -%}<{{ part.type | upper }}>{%- endif -%}{%- endfor -%}
{%- else -%}{{ content | string }}{%- endif -%}
{%- endmacro -%}
{{- bos_token -}}
{%- if tools is defined and tools -%}<tools>{% for tool in tools %}{{ tool | tojson }}{% if not loop.last %},{% endif %}{% endfor %}</tools>
{% endif -%}
{%- set ns = namespace(last_user=-1, count=0) -%}
{%- for message in messages -%}{%- if message.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}{%- endfor -%}
{%- for message in messages -%}
{%- set ns.count = ns.count + 1 -%}
<|{{ message['role'] }}|>{{ render_content(message.content) }}
{%- if message.tool_calls is defined and message.tool_calls -%}{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
<call name="{{ fn.name }}">{{ fn.arguments | tojson if fn.arguments is mapping else fn.arguments }}</call>
{%- endfor -%}{%- endif -%}
{%- if message.content is string and '</think>' in message.content -%}[{{ message.content.split('</think>')[-1].lstrip('\n') }}]{%- endif -%}
{%- if loop.index0 > ns.last_user -%}*{%- endif -%}
{{ eos_token }}
{% endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{%- endif -%}
{{- (messages | length) ~ ':' ~ ns.count ~ ':' ~ (messages[-1].role | default('none'))[:3] -}}
{%- for k, v in (extra | default({})).items() | sort -%}{{ k }}={{ v }};{%- endfor -%})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(fuzz::as_text(data, size));

  // 1. The input as a template.
  try {
    const ChatTemplate chat(input, "<s>", "</s>");
    try { (void)chat.render_chat(kMessages, kTools, true, R"({"enable_thinking": false, "extra": {"a": 1}})"); } catch (const Error&) {}
    try { (void)chat.render_chat(R"([{"role": "user", "content": "Hi"}])", "", false); } catch (const Error&) {}
  } catch (const Error&) {
  }

  // 2. The input as the JSON a fixed template sees.
  static const ChatTemplate fixed(kFixedTemplate, "<s>", "</s>");
  try { (void)fixed.render_chat(input, kTools, true); } catch (const Error&) {}
  try { (void)fixed.render_chat(kMessages, input, true); } catch (const Error&) {}
  try { (void)fixed.render(input); } catch (const Error&) {}
  return 0;
}
