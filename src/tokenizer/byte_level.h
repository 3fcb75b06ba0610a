// GPT-2's byte-level alphabet: every byte has a printable stand-in character, so a byte-level
// BPE vocabulary is written in text. Printable Latin-1 bytes stand for themselves; the others
// (controls, space, 0x7F-0xA0, 0xAD) map to U+0100 onwards in byte order.
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace orchard::byte_level {

// UTF-8 of the stand-in character of each byte.
const std::array<std::string, 256>& byte_chars();

// The byte whose stand-in is `codepoint`, or -1.
int byte_of_char(uint32_t codepoint);

}  // namespace orchard::byte_level
