#include "base/json_depth.h"

#include "base/error.h"

namespace orchard {

std::optional<size_t> json_too_deep_at(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

void check_json_depth(std::string_view text, std::string_view what, int max_depth) {
  if (std::optional<size_t> at = json_too_deep_at(text, max_depth))
    fail(what, ": JSON nested more than ", max_depth, " levels deep (at byte ", *at, ")");
}

}  // namespace orchard
