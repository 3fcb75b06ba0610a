// UTF-8 helpers for the template engine: Python strings count code points, so length, indexing,
// slicing and whitespace stripping must walk code points rather than bytes.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace orchard::jinja {

// Byte offsets of each code point's start, plus a final entry equal to text.size().
// Invalid bytes count as one code point each, so every byte belongs to some code point.
std::vector<size_t> code_point_offsets(std::string_view text);
size_t code_point_count(std::string_view text);

// Decodes the code point starting at `pos` and advances `pos` past it (invalid bytes decode as
// themselves, one at a time).
uint32_t decode_code_point(std::string_view text, size_t& pos);
void append_code_point(std::string& out, uint32_t code_point);

// Python's str.isspace() for one code point (the set str.strip() and str.split() use).
bool is_python_space(uint32_t code_point);

enum class StripSide { left, right, both };
// Python's str.strip()/lstrip()/rstrip(): with `chars` null, strips Unicode whitespace;
// otherwise strips any of the code points in *chars.
std::string python_strip(std::string_view text, const std::string* chars, StripSide side);

// Python's str.split() with no separator: runs of whitespace separate, empty parts are dropped.
// max_split < 0 means no limit.
std::vector<std::string> python_split_whitespace(std::string_view text, int64_t max_split);

// ASCII-only case mapping (non-ASCII letters are left as they are).
std::string ascii_upper(std::string_view text);
std::string ascii_lower(std::string_view text);

}  // namespace orchard::jinja
