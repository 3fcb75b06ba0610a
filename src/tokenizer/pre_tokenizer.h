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
};

// The pattern whose regex source (as tokenizer.json writes it) is `regex`, if one is known.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);

// Appends the words of `text` in order; together they cover the text exactly. Invalid UTF-8
// bytes count as symbols (neither letters, numbers nor white space).
void split_words(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& words);

}  // namespace orchard
