#include "template/utf8.h"

namespace orchard::jinja {

uint32_t decode_code_point(std::string_view text, size_t& pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  size_t length = 0;
  uint32_t code_point = 0;
  if (lead < 0x80) {
    ++pos;
    return lead;
  } else if ((lead & 0xe0) == 0xc0) {
    length = 2;
    code_point = lead & 0x1f;
  } else if ((lead & 0xf0) == 0xe0) {
    length = 3;
    code_point = lead & 0x0f;
  } else if ((lead & 0xf8) == 0xf0) {
    length = 4;
    code_point = lead & 0x07;
  } else {
    ++pos;
    return lead;
  }
  if (pos + length > text.size()) {
    ++pos;
    return lead;
  }
  for (size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[pos + i]);
    if ((next & 0xc0) != 0x80) {
      ++pos;
      return lead;
    }
    code_point = (code_point << 6) | (next & 0x3f);
  }
  pos += length;
  return code_point;
}

void append_code_point(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xc0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xe0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  }
}

std::vector<size_t> code_point_offsets(std::string_view text) {
  std::vector<size_t> offsets;
  offsets.reserve(text.size() + 1);
  size_t pos = 0;
  while (pos < text.size()) {
    offsets.push_back(pos);
    decode_code_point(text, pos);
  }
  offsets.push_back(text.size());
  return offsets;
}

size_t code_point_count(std::string_view text) {
  size_t count = 0;
  for (size_t pos = 0; pos < text.size(); ++count) decode_code_point(text, pos);
  return count;
}

bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

namespace {

bool in_strip_set(uint32_t code_point, const std::vector<uint32_t>* set) {
  if (!set) return is_python_space(code_point);
  for (uint32_t c : *set)
    if (c == code_point) return true;
  return false;
}

}  // namespace

std::string python_strip(std::string_view text, const std::string* chars, StripSide side) {
  std::vector<uint32_t> set;
  if (chars)
    for (size_t pos = 0; pos < chars->size();) set.push_back(decode_code_point(*chars, pos));
  const std::vector<uint32_t>* strip_set = chars ? &set : nullptr;

  const std::vector<size_t> offsets = code_point_offsets(text);
  size_t first = 0, last = offsets.size() - 1;  // code point indices [first, last)
  auto code_point_at = [&](size_t index) {
    size_t pos = offsets[index];
    return decode_code_point(text, pos);
  };
  if (side != StripSide::right)
    while (first < last && in_strip_set(code_point_at(first), strip_set)) ++first;
  if (side != StripSide::left)
    while (last > first && in_strip_set(code_point_at(last - 1), strip_set)) --last;
  return std::string(text.substr(offsets[first], offsets[last] - offsets[first]));
}

std::vector<std::string> python_split_whitespace(std::string_view text, int64_t max_split) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos < text.size()) {
    // Skip the whitespace run.
    size_t next = pos;
    while (pos < text.size()) {
      next = pos;
      if (!is_python_space(decode_code_point(text, next))) break;
      pos = next;
    }
    if (pos >= text.size()) break;
    if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
      // Past the split limit the remainder is kept whole, trailing whitespace included.
      parts.emplace_back(text.substr(pos));
      break;
    }
    const size_t start = pos;
    while (pos < text.size()) {
      next = pos;
      if (is_python_space(decode_code_point(text, next))) break;
      pos = next;
    }
    parts.emplace_back(text.substr(start, pos - start));
  }
  return parts;
}

std::string ascii_upper(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace orchard::jinja
