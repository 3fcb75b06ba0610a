#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <memory>

#include "tokenizer/unicode_tables.h"

namespace orchard::unicode {
namespace {

using namespace unicode_tables;

constexpr uint32_t kBmpSize = 0x10000;

GeneralCategory lookup_category(uint32_t codepoint) {
  const CategoryRun* end = kCategoryRuns + kCategoryRunCount;
  const CategoryRun* run = std::upper_bound(
      kCategoryRuns, end, codepoint,
      [](uint32_t cp, const CategoryRun& r) { return cp < r.first; });
  return static_cast<GeneralCategory>((run - 1)->category);
}

bool lookup_white_space(uint32_t codepoint) {
  for (size_t i = 0; i < kWhiteSpaceRangesCount; ++i) {
    if (codepoint >= kWhiteSpaceRanges[i].first && codepoint <= kWhiteSpaceRanges[i].last) return true;
  }
  return false;
}

uint8_t classify(GeneralCategory category, bool white_space) {
  uint8_t result = white_space ? kWhiteSpace : 0;
  if (category <= GeneralCategory::Lo) result |= kLetter;
  if (category >= GeneralCategory::Nd && category <= GeneralCategory::No) result |= kNumber;
  return result;
}

// The Basic Multilingual Plane is looked up directly: almost all text lives there and the
// pre-tokenizer classifies every character.
struct BmpTables {
  std::array<GeneralCategory, kBmpSize> category;
  std::array<uint8_t, kBmpSize> char_class;
  BmpTables() {
    size_t run = 0;
    for (uint32_t cp = 0; cp < kBmpSize; ++cp) {
      while (run + 1 < kCategoryRunCount && kCategoryRuns[run + 1].first <= cp) ++run;
      category[cp] = static_cast<GeneralCategory>(kCategoryRuns[run].category);
      char_class[cp] = classify(category[cp], lookup_white_space(cp));
    }
  }
};

const BmpTables& bmp() {
  static const auto tables = std::make_unique<BmpTables>();
  return *tables;
}

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

}  // namespace

Decoded decode_utf8(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + pos;
  const size_t left = text.size() - pos;
  const unsigned char b0 = s[0];
  if (b0 < 0x80) return {b0, 1};
  if (b0 < 0xC2) return {kInvalid, 1};  // continuation byte or overlong 2-byte lead
  if (b0 < 0xE0) {
    if (left < 2 || !is_continuation(s[1])) return {kInvalid, 1};
    return {(uint32_t(b0 & 0x1F) << 6) | (s[1] & 0x3F), 2};
  }
  if (b0 < 0xF0) {
    if (left < 3 || !is_continuation(s[1]) || !is_continuation(s[2])) return {kInvalid, 1};
    const uint32_t cp = (uint32_t(b0 & 0x0F) << 12) | (uint32_t(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return {kInvalid, 1};
    return {cp, 3};
  }
  if (b0 < 0xF5) {
    if (left < 4 || !is_continuation(s[1]) || !is_continuation(s[2]) || !is_continuation(s[3])) {
      return {kInvalid, 1};
    }
    const uint32_t cp = (uint32_t(b0 & 0x07) << 18) | (uint32_t(s[1] & 0x3F) << 12) |
                        (uint32_t(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    if (cp < 0x10000 || cp > 0x10FFFF) return {kInvalid, 1};
    return {cp, 4};
  }
  return {kInvalid, 1};
}

size_t invalid_sequence_length(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + pos;
  const size_t left = text.size() - pos;
  const unsigned char b0 = s[0];
  // The valid range of the second byte depends on the lead (Unicode table 3-7).
  unsigned char low = 0x80, high = 0xBF;
  size_t need;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) low = 0xA0;
    if (b0 == 0xED) high = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) low = 0x90;
    if (b0 == 0xF4) high = 0x8F;
  } else {
    return 1;
  }
  size_t length = 1;
  if (length < left && s[1] >= low && s[1] <= high) {
    ++length;
    while (length < need && length < left && is_continuation(s[length])) ++length;
  }
  return std::min(length, need);
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

GeneralCategory general_category(uint32_t codepoint) {
  if (codepoint < kBmpSize) return bmp().category[codepoint];
  if (codepoint > 0x10FFFF) return GeneralCategory::Cn;
  return lookup_category(codepoint);
}

bool is_white_space(uint32_t codepoint) {
  return codepoint < kBmpSize && (bmp().char_class[codepoint] & kWhiteSpace) != 0;
}

uint8_t char_class(uint32_t codepoint) {
  if (codepoint < kBmpSize) return bmp().char_class[codepoint];
  if (codepoint > 0x10FFFF) return 0;
  return classify(lookup_category(codepoint), false);  // no white space outside the BMP
}

void append_valid_utf8(std::string_view text, std::string& out) {
  size_t pos = 0;
  while (pos < text.size()) {
    const Decoded d = decode_utf8(text, pos);
    if (d.codepoint == kInvalid) {
      append_utf8(kReplacementCharacter, out);
      pos += invalid_sequence_length(text, pos);
    } else {
      out.append(text.substr(pos, d.length));
      pos += d.length;
    }
  }
}

bool is_valid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const Decoded d = decode_utf8(text, pos);
    if (d.codepoint == kInvalid) return false;
    pos += d.length;
  }
  return true;
}

}  // namespace orchard::unicode
