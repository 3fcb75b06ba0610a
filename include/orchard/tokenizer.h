// Tokenizers: text to token ids and back, giving the ids Hugging Face tokenizers and llama.cpp
// give. Loads tokenizer.json (byte-level BPE such as Qwen2/3 and Llama 3, SentencePiece-style
// BPE with byte fallback), GGUF vocabularies (`llama` and `gpt2` models) and llama2.c
// tokenizer.bin files.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace orchard {

class GgufFile;
namespace detail {
struct TokenizerParts;
}

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a folder holding one (tokenizer_config.json beside it
  // supplies BOS/EOS, add_bos and the chat template), a .gguf file, or a llama2.c tokenizer.bin.
  // Throws orchard::Error naming the file and what is wrong with it.
  static std::shared_ptr<const Tokenizer> load(const std::string& path);
  // The tokenizer described by an open GGUF file's `tokenizer.ggml.*` metadata.
  static std::shared_ptr<const Tokenizer> from_gguf(const GgufFile& gguf);

  // Token ids of `text`. Added/special token text in the input becomes those tokens; BOS is
  // prepended only when `add_bos` is set and the tokenizer has one. Any bytes are accepted:
  // invalid UTF-8 is encoded byte by byte where the vocabulary allows.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false) const;

  // The text of `ids`, always valid UTF-8 (bytes that form no character become U+FFFD).
  // Special tokens appear as their text unless `skip_special`. An id outside the vocabulary
  // (negative, or vocab_size() or more) is an orchard::Error naming it.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The token's text as the vocabulary spells it (e.g. "Ġthe", "▁the", "<|im_end|>");
  // empty for ids outside the vocabulary.
  std::string token_text(int32_t id) const;
  // The bytes the token decodes to on its own (may be part of a UTF-8 character).
  std::string token_bytes(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view token_text) const;
  bool is_special(int32_t id) const;

  int64_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;
  bool adds_bos() const;  // whether the model expects BOS at the start of a prompt
  const std::string& chat_template() const;  // empty when the files have none

  explicit Tokenizer(std::unique_ptr<detail::TokenizerParts> parts);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  const detail::TokenizerParts& parts() const { return *parts_; }

 private:
  std::unique_ptr<detail::TokenizerParts> parts_;
};

// Decodes ids one at a time for streaming output: each push returns only complete UTF-8
// characters (a character split across tokens waits for its last byte). The concatenation of
// all pushes and finish() equals Tokenizer::decode of the same ids.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  ~StreamingDecoder();
  std::string push(int32_t id);
  // The rest of the text: an unfinished character becomes U+FFFD. The decoder can then be
  // reused for a new text.
  std::string finish();

 private:
  struct State;
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::unique_ptr<State> state_;
};

}  // namespace orchard
