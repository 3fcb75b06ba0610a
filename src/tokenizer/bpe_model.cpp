#include "tokenizer/bpe_model.h"

#include <bit>
#include <cstdio>
#include <limits>
#include <queue>

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace orchard {
namespace {

// Words up to this many symbols are merged by rescanning all pairs, which beats a heap for the
// short words that pre-tokenizers produce; longer ones (whole texts without pre-tokenizer) use
// a heap.
constexpr size_t kShortWordSymbols = 48;

uint64_t mix(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return key;
}

}  // namespace

void BpeModel::MergeTable::build(const std::vector<std::array<int32_t, 3>>& merges) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, merges.size() * 2));
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right, merged] = merges[rank];
    const uint64_t k = key(left, right);
    for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) break;  // a repeated merge keeps its first (lowest) rank
      if (slots_[i].key == ~uint64_t(0)) {
        slots_[i] = Slot{k, Merge{uint32_t(rank), merged}};
        break;
      }
    }
  }
}

const BpeModel::Merge* BpeModel::MergeTable::find(int32_t left, int32_t right) const {
  const uint64_t k = key(left, right);
  for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
    if (slots_[i].key == k) return &slots_[i].merge;
    if (slots_[i].key == ~uint64_t(0)) return nullptr;
  }
}

BpeModel::BpeModel(const Vocab& vocab, const std::vector<std::array<int32_t, 3>>& merges,
                   BpeOptions options)
    : vocab_(vocab), options_(options) {
  merges_.build(merges);
  const auto& chars = byte_level::byte_chars();
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = vocab.find(chars[b]).value_or(-1);
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    fallback_ids_[b] = vocab.find(name).value_or(-1);
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  if (options_.byte_level) {
    for (unsigned char b : word) {
      if (byte_ids_[b] >= 0) {
        symbols.push_back(byte_ids_[b]);
      } else if (options_.unknown_id) {
        symbols.push_back(*options_.unknown_id);
      }
    }
    return;
  }
  bool previous_unknown = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t length = unicode::decode_utf8(word, pos).length;
    const std::string_view character = word.substr(pos, length);
    pos += length;
    if (auto id = vocab_.find(character)) {
      symbols.push_back(*id);
      previous_unknown = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all_bytes_known = true;
      for (unsigned char b : character) all_bytes_known &= fallback_ids_[b] >= 0;
      if (all_bytes_known) {
        for (unsigned char b : character) symbols.push_back(fallback_ids_[b]);
        previous_unknown = false;
        continue;
      }
    }
    if (!options_.unknown_id) continue;  // a vocabulary without <unk> drops what it cannot spell
    if (!(options_.fuse_unknown && previous_unknown)) symbols.push_back(*options_.unknown_id);
    previous_unknown = true;
  }
}

void BpeModel::merge_short(std::vector<int32_t>& symbols) const {
  while (symbols.size() > 1) {
    uint32_t best_rank = std::numeric_limits<uint32_t>::max();
    size_t best_pos = 0;
    int32_t best_id = -1;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const Merge* m = merges_.find(symbols[i], symbols[i + 1]);
      if (m && m->rank < best_rank) {
        best_rank = m->rank;
        best_pos = i;
        best_id = m->merged_id;
      }
    }
    if (best_id < 0) return;
    symbols[best_pos] = best_id;
    symbols.erase(symbols.begin() + ptrdiff_t(best_pos) + 1);
  }
}

void BpeModel::merge_long(std::vector<int32_t>& symbols) const {
  const int32_t n = int32_t(symbols.size());
  std::vector<int32_t> next(static_cast<size_t>(n)), prev(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    prev[size_t(i)] = i - 1;
  }
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t left_id;
    int32_t right_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t pos) {
    const int32_t right = next[size_t(pos)];
    if (right < 0) return;
    if (const Merge* m = merges_.find(symbols[size_t(pos)], symbols[size_t(right)])) {
      queue.push({m->rank, pos, symbols[size_t(pos)], symbols[size_t(right)]});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  constexpr int32_t kMerged = -1;
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int32_t right = next[size_t(c.pos)];
    // Stale when either side has changed since the candidate was queued.
    if (symbols[size_t(c.pos)] != c.left_id || right < 0 || symbols[size_t(right)] != c.right_id) {
      continue;
    }
    symbols[size_t(c.pos)] = merges_.find(c.left_id, c.right_id)->merged_id;
    symbols[size_t(right)] = kMerged;
    next[size_t(c.pos)] = next[size_t(right)];
    if (next[size_t(right)] >= 0) prev[size_t(next[size_t(right)])] = c.pos;
    if (prev[size_t(c.pos)] >= 0) consider(prev[size_t(c.pos)]);
    consider(c.pos);
  }
  size_t kept = 0;
  for (int32_t id : symbols) {
    if (id != kMerged) symbols[kept++] = id;
  }
  symbols.resize(kept);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    std::optional<int32_t> whole;
    if (options_.byte_level) {
      std::string spelled;
      const auto& chars = byte_level::byte_chars();
      for (unsigned char b : word) spelled += chars[b];
      whole = vocab_.find(spelled);
    } else {
      whole = vocab_.find(word);
    }
    if (whole) {
      out.push_back(*whole);
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  initial_symbols(word, symbols);
  if (symbols.size() <= kShortWordSymbols) {
    merge_short(symbols);
  } else {
    merge_long(symbols);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace orchard
