#include "runtime/constraint/token_vocabulary.h"

#include <algorithm>
#include <numeric>

#include "orchard/tokenizer.h"

namespace orchard::constraint {

std::shared_ptr<const TokenVocabulary> TokenVocabulary::build(const Tokenizer& tokenizer) {
  auto v = std::make_shared<TokenVocabulary>();
  const size_t n = size_t(tokenizer.vocab_size());
  v->bytes_.resize(n);
  v->usable_.assign(n, false);
  v->eos_ = tokenizer.eos_ids();
  std::vector<int32_t> order;
  for (size_t id = 0; id < n; ++id) {
    v->bytes_[id] = tokenizer.token_bytes(int32_t(id));
    if (tokenizer.is_special(int32_t(id)) || v->bytes_[id].empty()) continue;
    v->usable_[id] = true;
    order.push_back(int32_t(id));
    if (v->bytes_[id].size() == 1) v->single_byte_[uint8_t(v->bytes_[id][0])] = true;
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return v->bytes_[size_t(a)] < v->bytes_[size_t(b)] || (v->bytes_[size_t(a)] == v->bytes_[size_t(b)] && a < b);
  });

  // Sorted order makes the trie a preorder walk: each token shares its longest common prefix
  // with the previous one, so only the path below that prefix is new.
  Trie& t = v->trie_;
  std::vector<uint32_t> path;  // node index at each depth - 1
  std::string previous;
  auto close_to = [&](size_t depth) {
    while (path.size() > depth) {
      t.subtree_end[path.back()] = uint32_t(t.byte.size());
      path.pop_back();
    }
  };
  for (int32_t id : order) {
    const std::string& s = v->bytes_[size_t(id)];
    size_t common = 0;
    while (common < s.size() && common < previous.size() && s[common] == previous[common]) ++common;
    close_to(common);
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(uint32_t(t.byte.size()));
      t.byte.push_back(uint8_t(s[d]));
      t.depth.push_back(uint16_t(d + 1));
      t.subtree_end.push_back(0);
      t.token_begin.push_back(uint32_t(t.ids.size()));
    }
    // Tokens end at the deepest node of their path; ids of one node are contiguous because
    // equal byte strings are adjacent in sorted order.
    t.ids.push_back(id);
    t.max_depth = std::max(t.max_depth, s.size());
    previous = s;
  }
  close_to(0);
  t.token_begin.push_back(uint32_t(t.ids.size()));
  return v;
}

}  // namespace orchard::constraint
