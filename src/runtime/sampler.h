// Choosing the next token from logits: repetition, presence and frequency penalties, then top-k,
// top-p and min-p filters on the untempered distribution, then temperature, then a seeded draw.
// Temperature 0 is greedy. The options (SamplingParams) are public: orchard/engine.h.
#pragma once
#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "orchard/engine.h"

namespace orchard {

struct Kernels;

// Deterministic across platforms: the same seed gives the same draws everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)

 private:
  uint64_t state_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token from `logits` (one per vocabulary entry) and remembers it for the penalty.
  int32_t sample(std::span<const float> logits);
  // Tokens the penalty should see (e.g. the prompt).
  void remember(int32_t token);
  void reset();

 private:
  void remember_generated(int32_t token);

  struct Candidate {
    int32_t id;
    float logit;
  };
  SamplingParams params_;
  const Kernels* kernels_;
  Rng rng_;
  std::deque<int32_t> recent_;
  std::unordered_map<int32_t, int32_t> generated_counts_;  // for the presence and frequency penalties
  std::vector<Candidate> candidates_;
};

}  // namespace orchard
