// The lines of a text file read whole (JSONL data, logs), for the parsers that name FILE:LINE in
// their errors. Header-only.
#pragma once
#include <cstdint>
#include <string_view>

namespace orchard {

struct TextLine {
  std::string_view text;    // without its '\n' (and a '\r' before it)
  int64_t number = 0;       // 1-based
  bool terminated = false;  // ended by '\n': false only for a last line cut short (a writer killed mid-line)
};

// Calls visit(TextLine) for each line that is not blank (spaces and tabs only), in order.
template <typename Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  size_t begin = 0;
  for (int64_t number = 1; begin < text.size(); ++number) {
    const size_t end = text.find('\n', begin);
    const bool terminated = end != std::string_view::npos;
    std::string_view line = text.substr(begin, (terminated ? end : text.size()) - begin);
    begin = terminated ? end + 1 : text.size();
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    visit(TextLine{line, number, terminated});
  }
}

}  // namespace orchard
