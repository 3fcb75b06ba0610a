// The vocabulary as constrained decoding sees it: each token's bytes, arranged in a byte trie so
// that one walk against an automaton state decides every token at once (tokens sharing a prefix
// share the work, and a dead prefix skips its whole subtree). Built once per tokenizer and
// shared by every compiled schema.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace orchard {
class Tokenizer;
}

namespace orchard::constraint {

class TokenVocabulary {
 public:
  static std::shared_ptr<const TokenVocabulary> build(const Tokenizer& tokenizer);

  // Token ids run from 0 to size()-1 (logit vectors may be longer; the rest are never allowed).
  size_t size() const { return bytes_.size(); }
  const std::string& bytes(int32_t id) const { return bytes_[size_t(id)]; }
  // Special tokens and empty ones are never generated under a constraint (EOS is handled apart).
  bool usable(int32_t id) const { return usable_[size_t(id)]; }
  const std::vector<int32_t>& eos_ids() const { return eos_; }
  // Bytes that some usable token spells on its own.
  const std::array<bool, 256>& single_byte_tokens() const { return single_byte_; }

  // The trie in preorder. Node i holds `byte[i]` at depth `depth[i]` (root's children: 1); its
  // subtree ends before `subtree_end[i]`; tokens spelled exactly by the path to it are
  // ids[token_begin[i] .. token_begin[i + 1]).
  struct Trie {
    std::vector<uint8_t> byte;
    std::vector<uint16_t> depth;
    std::vector<uint32_t> subtree_end;
    std::vector<uint32_t> token_begin;  // one more entry than nodes
    std::vector<int32_t> ids;
    size_t max_depth = 0;
  };
  const Trie& trie() const { return trie_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<bool> usable_;
  std::vector<int32_t> eos_;
  std::array<bool, 256> single_byte_{};
  Trie trie_;
};

}  // namespace orchard::constraint
