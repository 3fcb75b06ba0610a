// What a Tokenizer is made of; the loaders fill it in, Tokenizer runs it.
// Encoding: added tokens split out -> normalizer -> pre-tokenizer split -> model per word.
// Decoding: per-id bytes from the TokenDecoder, then UTF-8 repair.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/token_decoder.h"
#include "tokenizer/vocab.h"
#include "tokenizer/word_encoder.h"

namespace orchard::detail {

struct TokenizerParts {
  std::string source;  // the file it came from, for messages
  Vocab vocab;
  AddedTokenMatcher added_tokens;
  Normalizer normalizer;
  std::optional<SplitPattern> split;  // none: each text segment is one word
  std::unique_ptr<WordEncoder> model;
  std::unique_ptr<TokenDecoder> decoder;
  std::vector<bool> special;  // by id: control tokens that skip_special drops

  std::optional<int32_t> bos;
  std::vector<int32_t> eos;
  bool add_bos = false;
  std::string chat_template;

  // SentencePiece-style models run on whole text segments; when the vocabulary makes it exact,
  // split them into words at space markers so that words are cached (see kSpaceMarkerRuns).
  void split_at_space_markers_if_exact() {
    if (!split && space_marker_splits_are_exact(vocab.texts())) split = SplitPattern::kSpaceMarkerRuns;
  }

  // Called by loaders once vocab, added tokens and special flags are final.
  void build_decoder(const DecoderSpec& spec) {
    std::vector<bool> raw_text(size_t(vocab.size()), false);
    for (const AddedToken& token : added_tokens.tokens()) raw_text[size_t(token.id)] = true;
    decoder = std::make_unique<TokenDecoder>(vocab, raw_text, spec);
    special.resize(size_t(vocab.size()), false);
  }
};

}  // namespace orchard::detail
