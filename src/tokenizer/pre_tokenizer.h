// Splitting text into words before BPE, as the pre-tokenizer regexes of byte-level BPE models
// do. Each regex is implemented by hand (no regex engine in the hot path); the tokenizer.json
// loader recognizes the regex text and GGUF files name it in `tokenizer.ggml.pre`.
#pragma once
#include <optional>
#include <string_view>
#include <vector>

namespace orchard {

enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // The same as kLlama3 with single digits: \p{N} instead of \p{N}{1,3}.
  kQwen2,
  // SentencePiece words: a new word at each run of U+2581 (the space marker). Not a
  // tokenizer's own setting: a vocabulary without tokens that continue past a space marker
  // cannot merge across these boundaries, so splitting there gives the same ids faster.
  kSpaceMarkerRuns,
};

// Whether no token of `tokens` has a space marker after another character, which makes
// kSpaceMarkerRuns exact for a SentencePiece-style vocabulary.
template <typename Texts>
bool space_marker_splits_are_exact(const Texts& tokens);

// The pattern whose regex source (as tokenizer.json writes it) is `regex`, if one is known.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);

// Appends the words of `text` in order; together they cover the text exactly. Invalid UTF-8
// bytes count as symbols (neither letters, numbers nor white space).
void split_words(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& words);

inline constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581

template <typename Texts>
bool space_marker_splits_are_exact(const Texts& tokens) {
  for (const auto& token : tokens) {
    const std::string_view text(token);
    for (size_t pos = text.find(kSpaceMarker, 1); pos != std::string_view::npos;
         pos = text.find(kSpaceMarker, pos + 1)) {
      if (pos < kSpaceMarker.size() || text.substr(pos - kSpaceMarker.size(), kSpaceMarker.size()) != kSpaceMarker) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace orchard
