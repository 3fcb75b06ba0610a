// The decoder-only transformer forward pass shared by llama, qwen2 and qwen3.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/kernels.h"
#include "model/kv_cache.h"
#include "model/model_impl.h"

namespace orchard {

// Per-pair RoPE frequencies: theta^(-2i/rope_dims), divided by the llama3 factors if any.
std::vector<double> rope_frequencies(const ModelConfig& config, const std::vector<float>& freq_factors);

class Transformer {
 public:
  Transformer(const Model::Impl& model, const Kernels& kernels, int64_t n_ctx);

  // Runs `tokens` at positions start .. start+n-1, filling the cache at those positions.
  // logits: [n, n_vocab] when all_logits, else [n_vocab] for the last token only.
  void forward(std::span<const int32_t> tokens, int64_t start, bool all_logits, float* logits);

  int64_t n_ctx() const { return cache_.n_ctx(); }

 private:
  void attention(int64_t layer, int64_t n, int64_t start);
  void feed_forward(int64_t layer, int64_t n);
  void ensure_batch(int64_t n);

  const Model::Impl& model_;
  const ModelConfig& config_;
  const Kernels& kernels_;
  KvCache cache_;
  std::vector<double> rope_freq_;
  // Activations for a batch of n tokens, row-major [n, width].
  std::vector<float> x_, normed_, q_, k_, v_, attn_out_, proj_, gate_, up_, scores_;
  int64_t batch_capacity_ = 0;
};

}  // namespace orchard
