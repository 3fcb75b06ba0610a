#include "runtime/constraint/token_mask.h"

#include <algorithm>
#include <limits>

namespace orchard::constraint {

void TokenMask::apply(std::span<float> logits) const {
  constexpr float kBlocked = -std::numeric_limits<float>::infinity();
  const size_t n = logits.size();
  for (size_t w = 0; w < words.size() && w * 64 < n; ++w) {
    const uint64_t bits = words[w];
    if (bits == ~uint64_t(0)) continue;
    const size_t base = w * 64, end = std::min(n, base + 64);
    if (bits == 0) {
      std::fill(logits.begin() + ptrdiff_t(base), logits.begin() + ptrdiff_t(end), kBlocked);
      continue;
    }
    for (size_t i = base; i < end; ++i)
      if (!((bits >> (i - base)) & 1)) logits[i] = kBlocked;
  }
  if (words.size() * 64 < n) std::fill(logits.begin() + ptrdiff_t(words.size() * 64), logits.end(), kBlocked);
}

namespace {

// Walks the trie from `state`, calling visit(id, end_state) for every token whose bytes stay
// live. The walk keeps the DFA state of each depth on a small stack; a dead byte skips the
// node's whole subtree, which is what makes a 150k-token vocabulary cheap for narrow states.
template <typename Visit>
void walk(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state, Visit&& visit) {
  const TokenVocabulary::Trie& t = vocab.trie();
  const int32_t* table = dfa.table();
  const size_t classes = dfa.class_count();
  const auto& cls = dfa.byte_classes();
  std::vector<int32_t> stack(t.max_depth + 1);
  stack[0] = state;
  const size_t n = t.byte.size();
  size_t i = 0;
  while (i < n) {
    const size_t d = t.depth[i];
    const int32_t s = table[size_t(stack[d - 1]) * classes + cls[t.byte[i]]];
    if (s == Dfa::dead) {
      i = t.subtree_end[i];
      continue;
    }
    stack[d] = s;
    for (uint32_t k = t.token_begin[i]; k < t.token_begin[i + 1]; ++k) visit(t.ids[k], s);
    ++i;
  }
}

}  // namespace

TokenMask compute_mask(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state) {
  TokenMask mask;
  mask.words.assign((vocab.size() + 63) / 64, 0);
  if (state == Dfa::dead) return mask;
  walk(dfa, vocab, state, [&](int32_t id, int32_t s) {
    mask.words[size_t(id) >> 6] |= uint64_t(1) << (id & 63);
    ++mask.allowed;
    mask.max_distance_after = std::max(mask.max_distance_after, dfa.closing_distance(s));
  });
  return mask;
}

const TokenMask& SteeringTable::for_budget(int64_t budget) const {
  const auto it = std::upper_bound(distances.begin(), distances.end(), uint64_t(std::max<int64_t>(budget, 0)),
                                   [](uint64_t b, uint32_t d) { return b < d; });
  return masks[it == distances.begin() ? 0 : size_t(it - distances.begin()) - 1];
}

SteeringTable compute_steering(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state) {
  std::vector<std::pair<uint32_t, int32_t>> by_distance;
  walk(dfa, vocab, state, [&](int32_t id, int32_t s) { by_distance.push_back({dfa.closing_distance(s), id}); });
  std::sort(by_distance.begin(), by_distance.end());
  SteeringTable table;
  TokenMask running;
  running.words.assign((vocab.size() + 63) / 64, 0);
  for (size_t i = 0; i < by_distance.size(); ++i) {
    const auto [distance, id] = by_distance[i];
    running.words[size_t(id) >> 6] |= uint64_t(1) << (id & 63);
    ++running.allowed;
    running.max_distance_after = distance;
    if (i + 1 == by_distance.size() || by_distance[i + 1].first != distance) {
      table.distances.push_back(distance);
      table.masks.push_back(running);
    }
  }
  if (table.masks.empty()) {  // a dead state: nothing is allowed at any budget
    table.distances.push_back(0);
    table.masks.push_back(running);
  }
  return table;
}

}  // namespace orchard::constraint
