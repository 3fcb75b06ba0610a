// Choosing the next token from logits: repetition penalty, then top-k, top-p and min-p filters on
// the untempered distribution, then temperature, then a seeded draw. Temperature 0 is greedy.
#pragma once
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "orchard/model.h"

namespace orchard {

struct Kernels;

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax, lowest id on ties)
  int32_t top_k = 40;        // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int32_t repeat_last_n = 64;   // how many recent tokens the penalty looks at
  uint64_t seed = 0;
  // Whose exp weighs the draw: the model's choice, so that `--kernels reference` runs no fast kernel.
  KernelChoice kernels = KernelChoice::fast;
};

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
  struct Candidate {
    int32_t id;
    float logit;
  };
  SamplingParams params_;
  const Kernels* kernels_;
  Rng rng_;
  std::deque<int32_t> recent_;
  std::vector<Candidate> candidates_;
};

}  // namespace orchard
