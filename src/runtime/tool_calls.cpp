#include "runtime/tool_calls.h"

#include <nlohmann/json.hpp>

#include "base/json_depth.h"

namespace orchard {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

ParsedReply parse_tool_calls(std::string_view reply) {
  ParsedReply out;
  size_t pos = 0;
  while (pos < reply.size()) {
    const size_t open = reply.find(kToolCallOpen, pos);
    if (open == std::string_view::npos) break;
    const size_t body = open + kToolCallOpen.size();
    const size_t close = reply.find(kToolCallClose, body);
    const std::string_view inner = trim(reply.substr(body, close == std::string_view::npos ? std::string_view::npos : close - body));
    // A reply nested beyond the bound is text, not a call (the model wrote it; never recurse on it).
    const nlohmann::json call = json_too_deep_at(inner) ? nlohmann::json(nlohmann::json::value_t::discarded)
                                                        : nlohmann::json::parse(inner, nullptr, false);
    const bool valid = !call.is_discarded() && call.is_object() && call.contains("name") && call["name"].is_string() &&
                       (!call.contains("arguments") || call["arguments"].is_object() || call["arguments"].is_string());
    if (!valid) {
      out.content.append(reply.substr(pos, body - pos));
      pos = body;
      continue;
    }
    out.content.append(reply.substr(pos, open - pos));
    ToolCall tc{call["name"].get<std::string>(), "{}"};
    if (call.contains("arguments"))
      tc.arguments_json = call["arguments"].is_string() ? call["arguments"].get<std::string>() : call["arguments"].dump();
    out.tool_calls.push_back(std::move(tc));
    pos = close == std::string_view::npos ? reply.size() : close + kToolCallClose.size();
  }
  if (pos < reply.size()) out.content.append(reply.substr(pos));
  if (!out.tool_calls.empty()) out.content = std::string(trim(out.content));
  return out;
}

bool may_start_tool_call(std::string_view text) {
  text = trim(text);
  if (text.size() <= kToolCallOpen.size()) return kToolCallOpen.substr(0, text.size()) == text;
  return text.substr(0, kToolCallOpen.size()) == kToolCallOpen;
}

}  // namespace orchard
