// BPE by merge rank, as Hugging Face's `BPE` model and llama.cpp's gpt2-type vocabularies do
// it: a word starts as one symbol per byte (byte-level) or per character, and the adjacent
// pair with the lowest merge rank is merged (leftmost first) until no ranked pair is left.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"
#include "tokenizer/word_encoder.h"

namespace orchard {

struct BpeOptions {
  // Words are raw bytes, spelled with GPT-2's byte alphabet in the vocabulary.
  bool byte_level = false;
  // A character missing from the vocabulary becomes its bytes' <0xXX> tokens.
  bool byte_fallback = false;
  std::optional<int32_t> unknown_id;
  bool fuse_unknown = false;  // consecutive unknown characters give one unknown id
  // A word that is itself a token is emitted whole, without merging (Llama 3).
  bool ignore_merges = false;
};

class BpeModel final : public WordEncoder {
 public:
  // `merges` holds (left id, right id, merged id) in rank order. `vocab` must outlive the model.
  BpeModel(const Vocab& vocab, const std::vector<std::array<int32_t, 3>>& merges, BpeOptions options);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const override;

 private:
  struct Merge {
    uint32_t rank;
    int32_t merged_id;
  };
  // Open-addressing table keyed by the (left, right) id pair: the hot lookup of encoding.
  class MergeTable {
   public:
    void build(const std::vector<std::array<int32_t, 3>>& merges);
    const Merge* find(int32_t left, int32_t right) const;

   private:
    static uint64_t key(int32_t left, int32_t right) {
      return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
    }
    struct Slot {
      uint64_t key = ~uint64_t(0);
      Merge merge{};
    };
    std::vector<Slot> slots_;
    uint64_t mask_ = 0;
  };

  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;
  void merge_short(std::vector<int32_t>& symbols) const;
  void merge_long(std::vector<int32_t>& symbols) const;

  const Vocab& vocab_;
  BpeOptions options_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_ids_{};  // byte-level: the id of each byte's character
  std::array<int32_t, 256> fallback_ids_{};  // byte fallback: the id of <0xXX>, or -1
};

}  // namespace orchard
