#include "tokenizer/byte_level.h"

#include "tokenizer/unicode.h"

namespace orchard::byte_level {
namespace {

bool stands_for_itself(int byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

struct Alphabet {
  std::array<uint32_t, 256> codepoint_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  Alphabet() {
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      codepoint_of_byte[b] = stands_for_itself(b) ? uint32_t(b) : next++;
      unicode::append_utf8(codepoint_of_byte[b], utf8_of_byte[b]);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

const std::array<std::string, 256>& byte_chars() { return alphabet().utf8_of_byte; }

int byte_of_char(uint32_t codepoint) {
  if (codepoint < 0x100) return stands_for_itself(int(codepoint)) ? int(codepoint) : -1;
  // Stand-ins above U+00FF are U+0100 + (index among the non-printable bytes).
  if (codepoint >= 0x100 + 68) return -1;
  const auto& cps = alphabet().codepoint_of_byte;
  for (int b = 0; b < 256; ++b) {
    if (cps[b] == codepoint) return b;
  }
  return -1;
}

}  // namespace orchard::byte_level
