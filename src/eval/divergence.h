// Measuring a model against another (KL divergence of next-token distributions, as llama.cpp's
// KLD tool does) or against text (perplexity), so that any quantization can be judged.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "orchard/model.h"

namespace orchard {

using TokenSequences = std::vector<std::vector<int32_t>>;

// `count` sequences of `length` ids drawn uniformly from [0, n_vocab) with a seeded generator
// (the same seed gives the same sequences on every machine).
TokenSequences random_sequences(int64_t n_vocab, int64_t count, int64_t length, uint64_t seed);
// Consecutive pieces of `length` tokens of `tokens` (a shorter tail is dropped), at most
// `max_count` of them (0: all).
TokenSequences split_sequences(const std::vector<int32_t>& tokens, int64_t length, int64_t max_count);

struct DivergenceResult {
  int64_t positions = 0;
  double mean_kl = 0;          // mean over positions of KL(base || model), in nats
  double kl_standard_error = 0;
  double max_kl = 0;
  double top1_agreement = 0;   // fraction of positions whose most likely tokens agree
};

// Runs every sequence through both models (all positions scored).
DivergenceResult compare_models(std::shared_ptr<const Model> base, std::shared_ptr<const Model> model,
                                const TokenSequences& sequences, const ContextOptions& options,
                                const std::function<void(int64_t, int64_t)>& progress = {});

struct PerplexityResult {
  int64_t predictions = 0;
  double mean_nll = 0;  // nats per predicted token
  double perplexity = 0;
};

// Each sequence is scored on predicting its tokens 1..n-1 from their prefixes.
PerplexityResult perplexity(std::shared_ptr<const Model> model, const TokenSequences& sequences,
                            const ContextOptions& options,
                            const std::function<void(int64_t, int64_t)>& progress = {});

// KL(softmax(p) || softmax(q)) of one position's logits, in float64.
double kl_divergence(const float* p_logits, const float* q_logits, int64_t n_vocab);

}  // namespace orchard
