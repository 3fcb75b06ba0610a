#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace orchard {
namespace {

bool is_word_char(uint32_t cp) {
  return cp == '_' || (unicode::char_class(cp) & (unicode::kLetter | unicode::kNumber));
}

// The code point ending just before `pos`, or kInvalid.
uint32_t codepoint_before(std::string_view text, size_t pos) {
  size_t start = pos;
  while (start > 0 && pos - start < 4) {
    --start;
    if ((static_cast<unsigned char>(text[start]) & 0xC0) != 0x80) break;
  }
  if (start == pos) return unicode::kInvalid;
  const unicode::Decoded d = unicode::decode_utf8(text, start);
  return start + d.length == pos ? d.codepoint : unicode::kInvalid;
}

size_t skip_space_forward(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    const unicode::Decoded d = unicode::decode_utf8(text, pos);
    if (d.codepoint == unicode::kInvalid || !unicode::is_white_space(d.codepoint)) break;
    pos += d.length;
  }
  return pos;
}

size_t skip_space_backward(std::string_view text, size_t pos, size_t limit) {
  while (pos > limit) {
    const uint32_t cp = codepoint_before(text, pos);
    if (cp == unicode::kInvalid || !unicode::is_white_space(cp)) break;
    std::string utf8;
    unicode::append_utf8(cp, utf8);
    pos -= utf8.size();
  }
  return std::max(pos, limit);
}

}  // namespace

void AddedTokenMatcher::add(AddedToken token) {
  if (token.content.empty()) return;  // an empty token can never be split out
  auto& bucket = by_first_byte_[static_cast<unsigned char>(token.content[0])];
  tokens_.push_back(std::move(token));
  bucket.push_back(int(tokens_.size()) - 1);
  std::stable_sort(bucket.begin(), bucket.end(), [&](int a, int b) {
    return tokens_[size_t(a)].content.size() > tokens_[size_t(b)].content.size();
  });
}

int AddedTokenMatcher::longest_match(std::string_view text, size_t pos) const {
  for (int index : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    const AddedToken& token = tokens_[size_t(index)];
    if (text.compare(pos, token.content.size(), token.content) != 0) continue;
    if (token.single_word) {
      const size_t end = pos + token.content.size();
      const uint32_t before = pos > 0 ? codepoint_before(text, pos) : unicode::kInvalid;
      const uint32_t after = end < text.size() ? unicode::decode_utf8(text, end).codepoint : unicode::kInvalid;
      if ((before != unicode::kInvalid && is_word_char(before)) ||
          (after != unicode::kInvalid && is_word_char(after))) {
        continue;
      }
    }
    return index;
  }
  return -1;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t text_start = 0;  // start of the text segment not yet emitted
  size_t pos = 0;
  while (pos < text.size()) {
    if (by_first_byte_[static_cast<unsigned char>(text[pos])].empty()) {
      ++pos;
      continue;
    }
    const int index = longest_match(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[size_t(index)];
    const size_t text_end = token.lstrip ? skip_space_backward(text, pos, text_start) : pos;
    if (text_end > text_start) out.push_back({text.substr(text_start, text_end - text_start), -1});
    out.push_back({std::string_view(), token.id});
    pos += token.content.size();
    if (token.rstrip) pos = skip_space_forward(text, pos);
    text_start = pos;
  }
  if (text_start < text.size()) out.push_back({text.substr(text_start), -1});
}

}  // namespace orchard
