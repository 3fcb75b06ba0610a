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

TokenMask compute_mask(const Dfa& dfa, const TokenVocabulary& vocab, int32_t state, int64_t budget) {
  TokenMask mask;
  mask.words.assign((vocab.size() + 63) / 64, 0);
  auto allow = [&](int32_t id, uint32_t distance) {
    mask.words[size_t(id) >> 6] |= uint64_t(1) << (id & 63);
    ++mask.allowed;
    mask.max_distance_after = std::max(mask.max_distance_after, distance);
  };
  if (state == Dfa::dead) return mask;
  if (budget < 0) {
    walk(dfa, vocab, state, [&](int32_t id, int32_t s) { allow(id, dfa.closing_distance(s)); });
    return mask;
  }
  uint32_t closest = Dfa::unreachable;
  walk(dfa, vocab, state, [&](int32_t id, int32_t s) {
    const uint32_t distance = dfa.closing_distance(s);
    closest = std::min(closest, distance);
    if (distance <= uint64_t(budget)) allow(id, distance);
  });
  if (mask.allowed == 0 && closest != Dfa::unreachable) {
    walk(dfa, vocab, state, [&](int32_t id, int32_t s) {
      if (dfa.closing_distance(s) == closest) allow(id, closest);
    });
  }
  return mask;
}

}  // namespace orchard::constraint
