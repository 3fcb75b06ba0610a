#include "tokenizer/pre_tokenizer.h"

#include <cstdint>

#include "tokenizer/unicode.h"

namespace orchard {
namespace {

// One decoded character with what the regexes ask of it.
struct Char {
  uint32_t codepoint;
  uint32_t offset;  // of its first byte in the text
  uint8_t cls;      // unicode::CharClass bits
};

bool is_letter(const Char& c) { return c.cls & unicode::kLetter; }
bool is_number(const Char& c) { return c.cls & unicode::kNumber; }
bool is_space(const Char& c) { return c.cls & unicode::kWhiteSpace; }
bool is_other(const Char& c) { return (c.cls & (unicode::kLetter | unicode::kNumber | unicode::kWhiteSpace)) == 0; }
bool is_newline(const Char& c) { return c.codepoint == '\r' || c.codepoint == '\n'; }

uint32_t ascii_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

class Splitter {
 public:
  Splitter(std::string_view text, SplitPattern pattern) : pattern_(pattern) {
    chars_.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      const unicode::Decoded d = unicode::decode_utf8(text, pos);
      const uint8_t cls = d.codepoint == unicode::kInvalid ? 0 : unicode::char_class(d.codepoint);
      chars_.push_back({d.codepoint, uint32_t(pos), cls});
      pos += d.length;
    }
    text_size_ = text.size();
  }

  void split(std::string_view text, std::vector<std::string_view>& words) {
    const size_t n = chars_.size();
    for (size_t i = 0; i < n;) {
      const size_t end = pattern_ == SplitPattern::kGpt2 ? match_gpt2(i) : match_llama3(i);
      const size_t from = chars_[i].offset;
      const size_t to = end < n ? chars_[end].offset : text_size_;
      words.push_back(text.substr(from, to - from));
      i = end;
    }
  }

 private:
  size_t n() const { return chars_.size(); }

  // Length of the contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
  size_t contraction(size_t i, bool ignore_case) const {
    if (chars_[i].codepoint != '\'' || i + 1 >= n()) return 0;
    auto at = [&](size_t j) {
      if (j >= n()) return uint32_t(0);
      return ignore_case ? ascii_lower(chars_[j].codepoint) : chars_[j].codepoint;
    };
    switch (at(i + 1)) {
      case 's': case 't': case 'm': case 'd':
        return 2;
      case 'r': case 'v':
        return at(i + 2) == 'e' ? 3 : 0;
      case 'l':
        return at(i + 2) == 'l' ? 3 : 0;
      default:
        return 0;
    }
  }

  template <typename Predicate>
  size_t run_end(size_t j, Predicate predicate) const {
    while (j < n() && predicate(chars_[j])) ++j;
    return j;
  }

  // \s+(?!\S)|\s+ at the start of a white space run [i, end): the lookahead leaves the last
  // space for the next word unless the run reaches the end of the text.
  size_t trailing_space_end(size_t i, size_t end) const {
    if (end == n() || end - i < 2) return end;
    return end - 1;
  }

  size_t match_llama3(size_t i) const {
    if (size_t len = contraction(i, /*ignore_case=*/true)) return i + len;
    const Char& c = chars_[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(c)) return run_end(i + 1, is_letter);
    if (!is_newline(c) && !is_number(c) && i + 1 < n() && is_letter(chars_[i + 1])) {
      return run_end(i + 2, is_letter);
    }
    // \p{N} or \p{N}{1,3}
    if (is_number(c)) {
      const size_t limit = pattern_ == SplitPattern::kQwen2 ? 1 : 3;
      size_t j = i + 1;
      while (j < n() && j - i < limit && is_number(chars_[j])) ++j;
      return j;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t start = c.codepoint == ' ' ? i + 1 : i;
    if (start < n() && is_other(chars_[start])) {
      return run_end(run_end(start + 1, is_other), is_newline);
    }
    // White space: \s*[\r\n]+ ends after the run's last newline; else \s+(?!\S)|\s+.
    const size_t end = run_end(i, is_space);
    for (size_t k = end; k > i; --k) {
      if (is_newline(chars_[k - 1])) return k;
    }
    return trailing_space_end(i, end);
  }

  size_t match_gpt2(size_t i) const {
    if (size_t len = contraction(i, /*ignore_case=*/false)) return i + len;
    const size_t start = chars_[i].codepoint == ' ' ? i + 1 : i;
    if (start < n()) {
      const Char& c = chars_[start];
      if (is_letter(c)) return run_end(start + 1, is_letter);
      if (is_number(c)) return run_end(start + 1, is_number);
      if (is_other(c)) return run_end(start + 1, is_other);
    }
    return trailing_space_end(i, run_end(i, is_space));
  }

  SplitPattern pattern_;
  std::vector<Char> chars_;
  size_t text_size_ = 0;
};

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  static constexpr std::string_view kGpt2 =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  static constexpr std::string_view kLlama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static constexpr std::string_view kQwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  if (regex == kGpt2) return SplitPattern::kGpt2;
  if (regex == kLlama3) return SplitPattern::kLlama3;
  if (regex == kQwen2) return SplitPattern::kQwen2;
  return std::nullopt;
}

namespace {

void split_at_space_marker_runs(std::string_view text, std::vector<std::string_view>& words) {
  size_t start = 0;
  for (size_t pos = text.find(kSpaceMarker, 1); pos != std::string_view::npos;
       pos = text.find(kSpaceMarker, pos + kSpaceMarker.size())) {
    const bool continues_run =
        pos >= kSpaceMarker.size() && text.substr(pos - kSpaceMarker.size(), kSpaceMarker.size()) == kSpaceMarker;
    if (!continues_run && pos > start) {
      words.push_back(text.substr(start, pos - start));
      start = pos;
    }
  }
  words.push_back(text.substr(start));
}

}  // namespace

void split_words(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& words) {
  if (text.empty()) return;
  if (pattern == SplitPattern::kSpaceMarkerRuns) {
    split_at_space_marker_runs(text, words);
    return;
  }
  Splitter(text, pattern).split(text, words);
}

}  // namespace orchard
