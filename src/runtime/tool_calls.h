// Tool calls in the format Qwen and Hermes-style chat templates teach their models:
//   <tool_call>
//   {"name": "get_weather", "arguments": {"city": "Paris"}}
//   </tool_call>
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace orchard {

struct ToolCall {
  std::string name;
  std::string arguments_json;  // the arguments object as JSON text
};

struct ParsedReply {
  std::string content;  // the text outside tool-call blocks
  std::vector<ToolCall> tool_calls;
};

inline constexpr std::string_view kToolCallOpen = "<tool_call>";
inline constexpr std::string_view kToolCallClose = "</tool_call>";

// Splits a model's reply into text and well-formed tool calls; a block whose JSON does not
// parse stays in the text.
ParsedReply parse_tool_calls(std::string_view reply);

// Whether `text` (leading white space ignored) is, or could still become, a tool call.
bool may_start_tool_call(std::string_view text);

}  // namespace orchard
