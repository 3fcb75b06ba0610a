#include "tokenizer/nfc.h"

#include <algorithm>
#include <vector>

#include "tokenizer/unicode.h"
#include "tokenizer/unicode_tables.h"

namespace orchard::unicode {
namespace {

using namespace unicode_tables;

// Hangul syllables compose and decompose arithmetically (Unicode 3.12).
constexpr uint32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr uint32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr uint32_t kHangulNCount = kHangulVCount * kHangulTCount;
constexpr uint32_t kHangulSCount = kHangulLCount * kHangulNCount;

// Invalid input bytes travel through normalization tagged with this bit, as starters.
constexpr uint32_t kRawByteTag = 0x80000000u;

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300 || (cp & kRawByteTag)) return 0;
  const CombiningClassRange* end = kCombiningClasses + kCombiningClassCount;
  const CombiningClassRange* it = std::upper_bound(
      kCombiningClasses, end, cp, [](uint32_t c, const CombiningClassRange& r) { return c < r.first; });
  if (it == kCombiningClasses) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

bool fails_quick_check(uint32_t cp) {
  const CodepointRange* end = kNfcQuickCheckFails + kNfcQuickCheckFailsCount;
  const CodepointRange* it = std::upper_bound(
      kNfcQuickCheckFails, end, cp, [](uint32_t c, const CodepointRange& r) { return c < r.first; });
  return it != kNfcQuickCheckFails && cp <= (it - 1)->last;
}

const Decomposition* find_decomposition(uint32_t cp) {
  const Decomposition* end = kDecompositions + kDecompositionCount;
  const Decomposition* it = std::lower_bound(
      kDecompositions, end, cp, [](const Decomposition& d, uint32_t c) { return d.codepoint < c; });
  return (it != end && it->codepoint == cp) ? it : nullptr;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    const uint32_t index = cp - kHangulSBase;
    out.push_back(kHangulLBase + index / kHangulNCount);
    out.push_back(kHangulVBase + (index % kHangulNCount) / kHangulTCount);
    if (index % kHangulTCount != 0) out.push_back(kHangulTBase + index % kHangulTCount);
    return;
  }
  const Decomposition* d = (cp & kRawByteTag) ? nullptr : find_decomposition(cp);
  if (!d) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out);
  if (d->second) decompose(d->second, out);
}

// The composite of (first, second), or 0.
uint32_t compose_pair(uint32_t first, uint32_t second) {
  if (first >= kHangulLBase && first < kHangulLBase + kHangulLCount && second >= kHangulVBase &&
      second < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((first - kHangulLBase) * kHangulVCount + (second - kHangulVBase)) *
                              kHangulTCount;
  }
  if (first >= kHangulSBase && first < kHangulSBase + kHangulSCount &&
      (first - kHangulSBase) % kHangulTCount == 0 && second > kHangulTBase &&
      second < kHangulTBase + kHangulTCount) {
    return first + (second - kHangulTBase);
  }
  const Composition* end = kCompositions + kCompositionCount;
  const Composition* it = std::lower_bound(
      kCompositions, end, std::make_pair(first, second), [](const Composition& c, const auto& key) {
        return c.first != key.first ? c.first < key.first : c.second < key.second;
      });
  return (it != end && it->first == first && it->second == second) ? it->composite : 0;
}

}  // namespace

bool is_nfc_quick(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // Everything below U+0300 (lead bytes under 0xCC) is a starter that NFC keeps.
    if (static_cast<unsigned char>(text[pos]) < 0xCC) {
      ++pos;
      continue;
    }
    const Decoded d = decode_utf8(text, pos);
    pos += d.length;
    if (d.codepoint == kInvalid) continue;
    if (combining_class(d.codepoint) != 0 || fails_quick_check(d.codepoint)) return false;
  }
  return true;
}

std::string to_nfc(std::string_view text) {
  if (is_nfc_quick(text)) return std::string(text);

  std::vector<uint32_t> chars;
  chars.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Decoded d = decode_utf8(text, pos);
    decompose(d.codepoint == kInvalid ? (kRawByteTag | uint8_t(text[pos])) : d.codepoint, chars);
    pos += d.length;
  }

  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < chars.size();) {
    if (combining_class(chars[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < chars.size() && combining_class(chars[j]) != 0) ++j;
    std::stable_sort(chars.begin() + i, chars.begin() + j, [](uint32_t a, uint32_t b) {
      return combining_class(a) < combining_class(b);
    });
    i = j;
  }

  // Canonical composition: each character joins the last starter unless something between
  // them blocks it (a starter, or a mark of the same or higher class).
  std::vector<uint32_t> composed;
  composed.reserve(chars.size());
  size_t starter = SIZE_MAX;
  uint8_t last_class = 0;
  for (uint32_t cp : chars) {
    const uint8_t cc = combining_class(cp);
    if (starter != SIZE_MAX) {
      const bool adjacent = composed.size() == starter + 1;
      if (adjacent || (last_class != 0 && last_class < cc)) {
        if (uint32_t composite = compose_pair(composed[starter], cp)) {
          composed[starter] = composite;
          continue;
        }
      }
    }
    if (cc == 0) {
      starter = composed.size();
      last_class = 0;
    } else {
      last_class = cc;
    }
    composed.push_back(cp);
  }

  std::string out;
  out.reserve(text.size());
  for (uint32_t cp : composed) {
    if (cp & kRawByteTag) {
      out.push_back(char(cp & 0xFF));
    } else {
      append_utf8(cp, out);
    }
  }
  return out;
}

}  // namespace orchard::unicode
