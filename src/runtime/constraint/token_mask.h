// Which tokens may come next from one automaton state: a bitset over the vocabulary, computed by
// walking the vocabulary trie against the DFA.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/constraint/byte_automaton.h"
#include "runtime/constraint/token_vocabulary.h"

namespace orchard::constraint {

struct TokenMask {
  std::vector<uint64_t> words;  // bit id set: the token keeps the text a valid prefix
  size_t allowed = 0;
  // The largest closing distance among the states the allowed tokens lead to. Budget steering
  // can leave the mask as is while at least this many tokens remain after the next one.
  uint32_t max_distance_after = 0;

  bool test(int32_t id) const { return (words[size_t(id) >> 6] >> (id & 63)) & 1; }
  // Sets the logits of tokens outside the mask to -inf. Logits past the mask's size too.
  void apply(std::span<float> logits) const;
};

// The tokens whose bytes, appended in `state`, leave a live state. With `budget` >= 0 only those
// whose resulting state can close within `budget` single-byte tokens; if none can, those that
// come closest (best effort when the budget was already too small).
TokenMask compute_mask(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state, int64_t budget = -1);

}  // namespace orchard::constraint
