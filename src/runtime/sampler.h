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

// A distribution over tokens: the candidates that survived the sampler's filters and their
// probabilities (summing to 1). Greedy sampling's is its pick alone.
struct TokenDistribution {
  std::vector<int32_t> ids;
  std::vector<double> probs;
  double prob(int32_t id) const;  // 0 for a token outside it
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token from `logits` (one per vocabulary entry) and remembers it for the penalty.
  int32_t sample(std::span<const float> logits);
  // Tokens the penalty should see (e.g. the prompt).
  void remember(int32_t token);
  void reset();

  // Speculative decoding (docs/architecture.md, "Speculative decoding") needs the distribution,
  // not only a draw: `distribution` is exactly what `sample` draws from (the same penalties,
  // filters and temperature; greedy: the pick alone), and it neither draws nor remembers.
  void distribution(std::span<const float> logits, TokenDistribution& out);
  int32_t draw(const TokenDistribution& d);  // one draw with this sampler's Rng
  double uniform() { return rng_.uniform(); }
  // Remembers a token chosen outside `sample` (an accepted draft) for the penalties.
  void remember_generated(int32_t token);
  // A new random stream, for a copy that drafts beside the original: its draws must not repeat
  // the original's, or the acceptance test would be correlated with the draft.
  void reseed(uint64_t seed) { rng_ = Rng(seed); }

 private:
  bool temperature_only(int32_t n) const;  // no filter or penalty: one pass over the logits
  struct Candidate {
    int32_t id;
    float logit;
  };
  static bool by_id(const Candidate& a, const Candidate& b) { return a.id < b.id; }
  // The tokens the repeat, presence and frequency penalties change, with their penalized logits,
  // by id.
  void penalized(std::span<const float> logits, std::vector<Candidate>& out) const;
  // The vocabulary as candidates with the penalties applied.
  void penalized_candidates(std::span<const float> logits);
  // The k best candidates (penalties applied; the lowest id first on ties), best first, without
  // building the whole vocabulary's: top-k's survivors, greedy's pick (k = 1).
  void top_candidates(std::span<const float> logits, size_t k);
  // What the filters start from: greedy's pick alone, top-k's k best, or the whole vocabulary.
  void gather_candidates(std::span<const float> logits);
  // top-p and min-p on the candidates (after top-k, which gather_candidates applied): they keep
  // candidates_[0, kept), the best first.
  size_t filter_candidates(int32_t n);
  bool cuts_top_k(int32_t n) const { return params_.top_k > 0 && params_.top_k < n; }
  SamplingParams params_;
  const Kernels* kernels_;
  Rng rng_;
  std::deque<int32_t> recent_;
  std::unordered_map<int32_t, int32_t> generated_counts_;  // for the presence and frequency penalties
  std::vector<Candidate> candidates_;
};

}  // namespace orchard
