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

// The tokens whose bytes, appended in `state`, leave a live state.
TokenMask compute_mask(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state);

// Budget steering for one state: the allowed tokens grouped by the closing distance of the state
// each leads to. masks[i] holds the tokens whose distance is at most distances[i] (ascending), so
// the mask for any budget is a lookup, and one trie walk per state serves every budget.
struct SteeringTable {
  std::vector<uint32_t> distances;
  std::vector<TokenMask> masks;
  // Tokens after which the value can close within `budget` single-byte tokens; if none can,
  // those that come closest (best effort when the budget was already too small).
  const TokenMask& for_budget(int64_t budget) const;
};
SteeringTable compute_steering(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state);

}  // namespace orchard::constraint
