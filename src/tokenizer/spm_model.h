// SentencePiece BPE by piece score, as llama.cpp runs GGUF `llama` vocabularies and llama2.c
// runs tokenizer.bin: the text starts as one symbol per UTF-8 character, and the adjacent pair
// whose concatenation is the highest-scoring token is merged (leftmost first on ties). Symbols
// that are not tokens in the end (characters outside the vocabulary) become <0xXX> byte tokens.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"
#include "tokenizer/word_encoder.h"

namespace orchard {

class SpmModel final : public WordEncoder {
 public:
  // `scores[id]` is the merge priority of token id. `vocab` must outlive the model.
  SpmModel(const Vocab& vocab, std::vector<float> scores, std::optional<int32_t> unknown_id);
  void encode_word(std::string_view text, std::vector<int32_t>& out) const override;

 private:
  void emit_symbol(std::string_view text, std::vector<int32_t>& out) const;

  const Vocab& vocab_;
  std::vector<float> scores_;
  std::optional<int32_t> unknown_id_;
  std::array<int32_t, 256> byte_ids_{};  // <0xXX> tokens, or -1
};

}  // namespace orchard
