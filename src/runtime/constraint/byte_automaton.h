// Byte automata for constrained decoding: an NFA that the schema compiler writes into (states
// joined by byte-range and empty edges), and the DFA it becomes. The DFA is what the token masks
// walk: its states are plain integers, so masks and closing distances can be cached per state.
//
// Everything a supported schema describes is a regular language once nesting of free-form JSON
// and `$ref` recursion are bounded (the compiler bounds both), so no stack is needed at decode
// time and one integer is the whole decoding state.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string_view>
#include <vector>

#include "orchard/error.h"

namespace orchard::constraint {

// Thrown by Nfa::add_state past the NFA's state limit; the schema compiler catches it where it
// can name the keyword that asked for the states (`$.properties.x.maxLength`).
class TooManyStates : public Error {
 public:
  using Error::Error;
};

class Nfa {
 public:
  // The limit is checked as states are added, so a schema asking for 10^9 of them (maxLength
  // 1e9) fails at the limit instead of building until memory runs out.
  explicit Nfa(size_t max_states = std::numeric_limits<size_t>::max()) : max_states_(max_states) {}

  struct Edge {
    uint8_t lo, hi;  // inclusive byte range
    int32_t target;
  };

  int32_t add_state();
  void add_range(int32_t from, uint8_t lo, uint8_t hi, int32_t to);
  void add_epsilon(int32_t from, int32_t to);
  // Helpers that return the state after the bytes: each call makes fresh states.
  int32_t literal(int32_t from, std::string_view bytes);
  int32_t range(int32_t from, uint8_t lo, uint8_t hi);

  size_t size() const { return edges_.size(); }
  size_t max_states() const { return max_states_; }
  const std::vector<Edge>& edges(int32_t s) const { return edges_[size_t(s)]; }
  const std::vector<int32_t>& epsilons(int32_t s) const { return epsilons_[size_t(s)]; }

 private:
  size_t max_states_;
  std::vector<std::vector<Edge>> edges_;
  std::vector<std::vector<int32_t>> epsilons_;
};

// What the subset construction may spend. The DFA's state count alone does not bound it: with
// many optional properties every DFA state is a set of thousands of NFA states (1,000 optional
// properties took 47 s and 1.1 GB), so the summed size of the sets is bounded too, and the
// clock and the caller (a request whose client left) are asked as it goes.
struct DfaBudget {
  size_t max_states = 200000;
  size_t max_subset_entries = 4u << 20;  // NFA states summed over all DFA states (4 bytes each, kept twice)
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::function<bool()> cancelled;  // may be empty
};

// A deterministic automaton over bytes. State 0 is dead (no completion possible); every other
// state can still reach an accepting state, so "the transition is not dead" is exactly "the bytes
// so far are a prefix of some accepted string".
class Dfa {
 public:
  static constexpr int32_t dead = 0;
  static constexpr uint32_t unreachable = std::numeric_limits<uint32_t>::max();

  // Subset construction from `nfa` starting at `start`, accepting where `accept` is reached.
  // `single_byte_tokens[b]` says whether byte b can be emitted as one token; closing distances
  // count only such bytes, so that a distance is a number of tokens the model can really emit.
  // Throws orchard::Error when the budget would be exceeded, the deadline passes or the caller
  // cancels.
  static Dfa build(const Nfa& nfa, int32_t start, int32_t accept, const std::array<bool, 256>& single_byte_tokens,
                   const DfaBudget& budget);

  int32_t start() const { return start_; }
  size_t size() const { return accepting_.size(); }
  int32_t step(int32_t state, uint8_t byte) const {
    return table_[size_t(state) * n_classes_ + byte_class_[byte]];
  }
  int32_t step(int32_t state, std::string_view bytes) const {
    for (char c : bytes) {
      state = step(state, uint8_t(c));
      if (state == dead) break;
    }
    return state;
  }
  bool accepting(int32_t state) const { return accepting_[size_t(state)]; }
  // Whether any byte leads on from `state` (false: only end of text is left).
  bool has_successor(int32_t state) const { return has_successor_[size_t(state)]; }
  // Fewest single-byte tokens that take `state` to an accepting state (`unreachable` if none).
  uint32_t closing_distance(int32_t state) const { return distance_[size_t(state)]; }

  // Raw table access for the token-mask walk (the hot loop): next = table[state * classes + class].
  const int32_t* table() const { return table_.data(); }
  const std::array<uint8_t, 256>& byte_classes() const { return byte_class_; }
  size_t class_count() const { return n_classes_; }

 private:
  int32_t start_ = dead;
  size_t n_classes_ = 0;
  std::array<uint8_t, 256> byte_class_{};
  std::vector<int32_t> table_;
  std::vector<bool> accepting_;
  std::vector<bool> has_successor_;
  std::vector<uint32_t> distance_;
};

}  // namespace orchard::constraint
