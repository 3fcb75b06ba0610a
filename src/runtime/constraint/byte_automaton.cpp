#include "runtime/constraint/byte_automaton.h"

#include <algorithm>
#include <deque>
#include <unordered_map>

#include "base/error.h"

namespace orchard::constraint {

int32_t Nfa::add_state() {
  if (edges_.size() >= max_states_) throw TooManyStates(str_cat("more than ", max_states_, " automaton states"));
  edges_.emplace_back();
  epsilons_.emplace_back();
  return int32_t(edges_.size() - 1);
}

void Nfa::add_range(int32_t from, uint8_t lo, uint8_t hi, int32_t to) { edges_[size_t(from)].push_back({lo, hi, to}); }

void Nfa::add_epsilon(int32_t from, int32_t to) { epsilons_[size_t(from)].push_back(to); }

int32_t Nfa::literal(int32_t from, std::string_view bytes) {
  for (char c : bytes) from = range(from, uint8_t(c), uint8_t(c));
  return from;
}

int32_t Nfa::range(int32_t from, uint8_t lo, uint8_t hi) {
  const int32_t to = add_state();
  add_range(from, lo, hi, to);
  return to;
}

namespace {

struct VectorHash {
  size_t operator()(const std::vector<int32_t>& v) const {
    uint64_t h = 1469598103934665603ull;
    for (int32_t x : v) h = (h ^ uint64_t(uint32_t(x))) * 1099511628211ull;
    return size_t(h);
  }
};

// Epsilon closure of `set` in place (sorted, unique on return). `mark`/`stamp` avoid clearing a
// visited array per call: states are marked with the current stamp.
void close_over_epsilons(const Nfa& nfa, std::vector<int32_t>& set, std::vector<uint32_t>& mark, uint32_t stamp) {
  std::vector<int32_t> stack;
  std::vector<int32_t> out;
  for (int32_t s : set)
    if (mark[size_t(s)] != stamp) {
      mark[size_t(s)] = stamp;
      stack.push_back(s);
    }
  while (!stack.empty()) {
    const int32_t s = stack.back();
    stack.pop_back();
    out.push_back(s);
    for (int32_t t : nfa.epsilons(s))
      if (mark[size_t(t)] != stamp) {
        mark[size_t(t)] = stamp;
        stack.push_back(t);
      }
  }
  std::sort(out.begin(), out.end());
  set = std::move(out);
}

}  // namespace

Dfa Dfa::build(const Nfa& nfa, int32_t start, int32_t accept, const std::array<bool, 256>& single_byte_tokens,
               const DfaBudget& budget) {
  Dfa dfa;
  // Byte classes: bytes no edge tells apart share a column, which shrinks the table ~10x for
  // JSON (digits, letters, the rest of a string's characters...).
  std::array<bool, 257> boundary{};
  boundary[0] = true;
  for (size_t s = 0; s < nfa.size(); ++s)
    for (const Nfa::Edge& e : nfa.edges(int32_t(s))) {
      boundary[e.lo] = true;
      boundary[size_t(e.hi) + 1] = true;
    }
  // Intervals between boundaries; intervals that no edge covers all act alike, so they merge.
  std::vector<int> interval_of(256);
  int intervals = -1;
  for (int b = 0; b < 256; ++b) {
    if (boundary[size_t(b)]) ++intervals;
    interval_of[size_t(b)] = intervals;
  }
  ++intervals;
  std::vector<bool> covered(static_cast<size_t>(intervals), false);
  for (size_t s = 0; s < nfa.size(); ++s)
    for (const Nfa::Edge& e : nfa.edges(int32_t(s)))
      for (int i = interval_of[e.lo]; i <= interval_of[e.hi]; ++i) covered[size_t(i)] = true;
  std::vector<int> class_of_interval(static_cast<size_t>(intervals));
  int n_classes = 1;  // class 0: bytes no edge mentions
  for (int i = 0; i < intervals; ++i) class_of_interval[size_t(i)] = covered[size_t(i)] ? n_classes++ : 0;
  for (int b = 0; b < 256; ++b) dfa.byte_class_[size_t(b)] = uint8_t(class_of_interval[size_t(interval_of[size_t(b)])]);
  dfa.n_classes_ = size_t(n_classes);
  std::vector<bool> class_emittable(static_cast<size_t>(n_classes), false);
  for (int b = 0; b < 256; ++b)
    if (single_byte_tokens[size_t(b)]) class_emittable[dfa.byte_class_[size_t(b)]] = true;

  // Subset construction. Sets are interned; index 0 is the empty set (dead).
  std::vector<uint32_t> mark(nfa.size(), 0);
  uint32_t stamp = 0;
  std::unordered_map<std::vector<int32_t>, int32_t, VectorHash> index;
  std::vector<std::vector<int32_t>> sets;
  std::vector<int32_t> table;
  sets.emplace_back();
  index.emplace(std::vector<int32_t>{}, 0);
  size_t subset_entries = 0;
  auto intern = [&](std::vector<int32_t>&& set) -> int32_t {
    auto it = index.find(set);
    if (it != index.end()) return it->second;
    if (sets.size() >= budget.max_states)
      fail("the schema needs more than ", budget.max_states, " automaton states (lower maxLength/maxItems or nesting)");
    subset_entries += set.size();
    if (subset_entries > budget.max_subset_entries)
      fail("the schema's automaton grows too large (more than ", budget.max_subset_entries,
           " state-set entries: fewer optional properties or alternatives)");
    const int32_t id = int32_t(sets.size());
    index.emplace(set, id);
    sets.push_back(std::move(set));
    return id;
  };
  std::vector<int32_t> initial{start};
  close_over_epsilons(nfa, initial, mark, ++stamp);
  const int32_t first = intern(std::move(initial));
  std::vector<std::vector<int32_t>> buckets(static_cast<size_t>(n_classes));
  for (size_t current = 0; current < sets.size(); ++current) {
    table.resize(sets.size() * size_t(n_classes), 0);
    if (current == 0) continue;
    if (current % 256 == 0) {
      if (budget.cancelled && budget.cancelled()) fail("the schema's compilation was cancelled");
      if (std::chrono::steady_clock::now() > budget.deadline) fail("the schema took too long to compile");
    }
    for (auto& b : buckets) b.clear();
    for (int32_t s : sets[current])
      for (const Nfa::Edge& e : nfa.edges(s))
        for (int i = interval_of[e.lo]; i <= interval_of[e.hi]; ++i)
          buckets[size_t(class_of_interval[size_t(i)])].push_back(e.target);
    for (int c = 1; c < n_classes; ++c) {
      if (buckets[size_t(c)].empty()) continue;
      std::vector<int32_t> next = buckets[size_t(c)];
      close_over_epsilons(nfa, next, mark, ++stamp);
      const int32_t id = intern(std::move(next));
      table.resize(sets.size() * size_t(n_classes), 0);
      table[current * size_t(n_classes) + size_t(c)] = id;
    }
  }
  const size_t n = sets.size();
  table.resize(n * size_t(n_classes), 0);

  // Keep only states from which an accepting state is reachable, and measure how far it is.
  std::vector<bool> raw_accepting(n, false);
  for (size_t s = 1; s < n; ++s) raw_accepting[s] = std::binary_search(sets[s].begin(), sets[s].end(), accept);
  std::vector<std::vector<std::pair<int32_t, int>>> reverse(n);
  for (size_t s = 1; s < n; ++s)
    for (int c = 1; c < n_classes; ++c) {
      const int32_t t = table[s * size_t(n_classes) + size_t(c)];
      if (t != 0) reverse[size_t(t)].push_back({int32_t(s), c});
    }
  std::vector<bool> live(n, false);
  std::vector<uint32_t> raw_distance(n, unreachable);
  std::deque<int32_t> queue;
  for (size_t s = 1; s < n; ++s)
    if (raw_accepting[s]) {
      live[s] = true;
      queue.push_back(int32_t(s));
    }
  while (!queue.empty()) {
    const int32_t t = queue.front();
    queue.pop_front();
    for (auto [s, c] : reverse[size_t(t)])
      if (!live[size_t(s)]) {
        live[size_t(s)] = true;
        queue.push_back(s);
      }
  }
  // Breadth-first from the accepting states over emittable bytes only.
  for (size_t s = 1; s < n; ++s)
    if (raw_accepting[s]) {
      raw_distance[s] = 0;
      queue.push_back(int32_t(s));
    }
  while (!queue.empty()) {
    const int32_t t = queue.front();
    queue.pop_front();
    for (auto [s, c] : reverse[size_t(t)])
      if (class_emittable[size_t(c)] && raw_distance[size_t(s)] == unreachable) {
        raw_distance[size_t(s)] = raw_distance[size_t(t)] + 1;
        queue.push_back(s);
      }
  }
  if (!live[size_t(first)]) fail("the schema admits no value");

  std::vector<int32_t> renumber(n, dead);
  int32_t next_id = 1;
  for (size_t s = 1; s < n; ++s)
    if (live[s]) renumber[s] = next_id++;
  dfa.table_.assign(size_t(next_id) * size_t(n_classes), dead);
  dfa.accepting_.assign(size_t(next_id), false);
  dfa.has_successor_.assign(size_t(next_id), false);
  dfa.distance_.assign(size_t(next_id), unreachable);
  for (size_t s = 1; s < n; ++s) {
    const int32_t r = renumber[s];
    if (r == dead) continue;
    dfa.accepting_[size_t(r)] = raw_accepting[s];
    dfa.distance_[size_t(r)] = raw_distance[s];
    for (int c = 1; c < n_classes; ++c) {
      const int32_t t = renumber[size_t(table[s * size_t(n_classes) + size_t(c)])];
      dfa.table_[size_t(r) * size_t(n_classes) + size_t(c)] = t;
      if (t != dead) dfa.has_successor_[size_t(r)] = true;
    }
  }
  dfa.start_ = renumber[size_t(first)];
  return dfa;
}

}  // namespace orchard::constraint
