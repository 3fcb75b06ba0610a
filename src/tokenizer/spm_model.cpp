#include "tokenizer/spm_model.h"

#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"

namespace orchard {

SpmModel::SpmModel(const Vocab& vocab, std::vector<float> scores, std::optional<int32_t> unknown_id)
    : vocab_(vocab), scores_(std::move(scores)), unknown_id_(unknown_id) {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = vocab.find(name).value_or(-1);
  }
}

void SpmModel::emit_symbol(std::string_view text, std::vector<int32_t>& out) const {
  if (auto id = vocab_.find(text)) {
    out.push_back(*id);
    return;
  }
  for (unsigned char b : text) {
    if (byte_ids_[b] >= 0) {
      out.push_back(byte_ids_[b]);
    } else if (unknown_id_) {
      out.push_back(*unknown_id_);
    }
  }
}

void SpmModel::encode_word(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  // Symbols are byte ranges of the text, linked so that merged neighbours drop out.
  struct Symbol {
    uint32_t start;
    uint32_t length;  // 0 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const uint32_t length = unicode::decode_utf8(text, pos).length;
    const int32_t index = int32_t(symbols.size());
    symbols.push_back({uint32_t(pos), length, index - 1, -1});
    if (index > 0) symbols[size_t(index) - 1].next = index;
    pos += length;
  }

  struct Candidate {
    float score;
    int32_t left;
    uint32_t length;  // of left + right when queued; a mismatch marks it stale
    bool operator<(const Candidate& other) const {  // max-heap: best score, then leftmost
      return score != other.score ? score < other.score : left > other.left;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[size_t(left)].next;
    if (right < 0) return;
    const uint32_t length = symbols[size_t(left)].length + symbols[size_t(right)].length;
    if (auto id = vocab_.find(text.substr(symbols[size_t(left)].start, length))) {
      queue.push({scores_[size_t(*id)], left, length});
    }
  };
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[size_t(c.left)];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[size_t(left.next)];
    if (left.length + right.length != c.length) continue;
    left.length = c.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[size_t(right.next)].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }

  for (int32_t i = 0; i >= 0; i = symbols[size_t(i)].next) {
    emit_symbol(text.substr(symbols[size_t(i)].start, symbols[size_t(i)].length), out);
  }
}

}  // namespace orchard
