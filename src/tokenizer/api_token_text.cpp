#include "tokenizer/api_token_text.h"

#include <cstdio>

#include "tokenizer/unicode.h"

namespace orchard {
namespace {

constexpr std::string_view kPrefix = "bytes:";

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string api_token_text(std::string_view bytes) {
  if (unicode::is_valid_utf8(bytes)) return std::string(bytes);
  std::string out(kPrefix);
  char hex[8];
  for (unsigned char c : bytes) {
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    out += hex;
  }
  return out;
}

std::string api_token_bytes(std::string_view text) {
  if (!text.starts_with(kPrefix)) return std::string(text);
  const std::string_view rest = text.substr(kPrefix.size());
  if (rest.empty() || rest.size() % 4 != 0) return std::string(text);
  std::string out;
  for (size_t i = 0; i < rest.size(); i += 4) {
    const int hi = hex_digit(rest[i + 2]), lo = hex_digit(rest[i + 3]);
    if (rest[i] != '\\' || (rest[i + 1] != 'x' && rest[i + 1] != 'X') || hi < 0 || lo < 0) return std::string(text);
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace orchard
