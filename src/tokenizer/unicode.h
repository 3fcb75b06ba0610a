// Code point level helpers for the tokenizers: UTF-8 decoding that tolerates invalid input,
// UTF-8 encoding, and the character classes the pre-tokenizer regexes use (\p{L}, \p{N}, \s).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace orchard::unicode {

enum class GeneralCategory : uint8_t {
  Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po,
  Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co, Cn,
};

// One decoded character. An invalid byte decodes as {kInvalid, 1}: callers that must not lose
// data (byte-level BPE) keep the byte itself; callers that need text print U+FFFD.
struct Decoded {
  uint32_t codepoint;
  uint32_t length;  // bytes consumed, >= 1 when input remains
};
inline constexpr uint32_t kInvalid = 0xFFFFFFFF;
inline constexpr uint32_t kReplacementCharacter = 0xFFFD;

// Decodes the character at text[pos] (pos < text.size()). Rejects overlong forms, surrogates and
// values above U+10FFFF.
Decoded decode_utf8(std::string_view text, size_t pos);

// Length of the longest prefix of text[pos..] that could still start a valid character but is
// cut short (the "maximal subpart" that one U+FFFD replaces), at least 1.
size_t invalid_sequence_length(std::string_view text, size_t pos);

void append_utf8(uint32_t codepoint, std::string& out);

GeneralCategory general_category(uint32_t codepoint);
bool is_white_space(uint32_t codepoint);  // the White_Space property, what regex \s matches

// Character classes packed for the pre-tokenizer's inner loop.
enum CharClass : uint8_t {
  kLetter = 1,      // \p{L}
  kNumber = 2,      // \p{N}
  kWhiteSpace = 4,  // \s
};
uint8_t char_class(uint32_t codepoint);

// Appends text with every invalid sequence replaced by U+FFFD (one per maximal subpart).
void append_valid_utf8(std::string_view text, std::string& out);
bool is_valid_utf8(std::string_view text);

}  // namespace orchard::unicode
