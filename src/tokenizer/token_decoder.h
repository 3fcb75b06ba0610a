// Turning ids back into bytes, as tokenizer.json decoders (ByteLevel; Sequence of Replace,
// ByteFallback, Fuse, Strip; Metaspace) and llama.cpp's token-to-piece do. Each decoder used
// by real files works token by token, so every id's bytes are computed once at load time; only
// the leading-space strip (Strip, Metaspace prefix) depends on position and is kept as state.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace orchard {

struct DecoderSpec {
  bool byte_level = false;     // token text is GPT-2's byte alphabet
  bool byte_fallback = false;  // "<0xXX>" tokens are single bytes
  std::vector<std::pair<std::string, std::string>> replacements;  // e.g. U+2581 -> " "
  size_t strip_leading_spaces = 0;  // removed from the start of the decoded text
};

class TokenDecoder {
 public:
  // `raw_text[id]` marks ids whose vocab text is emitted as is (added tokens).
  TokenDecoder(const Vocab& vocab, const std::vector<bool>& raw_text, const DecoderSpec& spec);

  // The bytes of one id; empty for ids outside the vocabulary.
  std::string_view piece(int32_t id) const {
    return (id >= 0 && size_t(id) < pieces_.size()) ? std::string_view(pieces_[size_t(id)]) : std::string_view();
  }

  // Position-dependent part of decoding: how many leading spaces are still to be stripped.
  class State {
   public:
    explicit State(const TokenDecoder& decoder) : spaces_to_strip_(decoder.strip_leading_spaces_) {}
    void append(std::string_view piece, std::string& bytes);

   private:
    size_t spaces_to_strip_;
  };

 private:
  std::vector<std::string> pieces_;
  size_t strip_leading_spaces_ = 0;
};

}  // namespace orchard
