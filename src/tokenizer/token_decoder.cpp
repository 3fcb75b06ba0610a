#include "tokenizer/token_decoder.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace orchard {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xXX>" token, or -1.
int fallback_byte(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int high = hex_digit(text[3]), low = hex_digit(text[4]);
  return (high < 0 || low < 0) ? -1 : high * 16 + low;
}

std::string from_byte_level(std::string_view text) {
  std::string bytes;
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Decoded d = unicode::decode_utf8(text, pos);
    const int byte = d.codepoint == unicode::kInvalid ? -1 : byte_level::byte_of_char(d.codepoint);
    if (byte >= 0) {
      bytes.push_back(char(byte));
    } else {
      bytes.append(text.substr(pos, d.length));  // not in the alphabet: keep the character
    }
    pos += d.length;
  }
  return bytes;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  for (size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

}  // namespace

TokenDecoder::TokenDecoder(const Vocab& vocab, const std::vector<bool>& raw_text, const DecoderSpec& spec)
    : strip_leading_spaces_(spec.strip_leading_spaces) {
  pieces_.resize(size_t(vocab.size()));
  for (int32_t id = 0; id < int32_t(vocab.size()); ++id) {
    const std::string& text = vocab.text(id);
    std::string& piece = pieces_[size_t(id)];
    if (size_t(id) < raw_text.size() && raw_text[size_t(id)]) {
      piece = text;
      continue;
    }
    if (spec.byte_fallback) {
      if (int byte = fallback_byte(text); byte >= 0) {
        piece.assign(1, char(byte));
        continue;
      }
    }
    piece = spec.byte_level ? from_byte_level(text) : text;
    for (const auto& [from, to] : spec.replacements) piece = replace_all(std::move(piece), from, to);
  }
}

void TokenDecoder::State::append(std::string_view piece, std::string& bytes) {
  while (spaces_to_strip_ > 0 && !piece.empty()) {
    if (piece.front() == ' ') {
      piece.remove_prefix(1);
      --spaces_to_strip_;
    } else {
      spaces_to_strip_ = 0;  // only spaces at the very start are stripped
    }
  }
  bytes.append(piece);
}

}  // namespace orchard
