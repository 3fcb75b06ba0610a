// The decoder-only transformer forward pass shared by llama, qwen2 and qwen3.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/thread_pool.h"
#include "model/kv_cache.h"
#include "model/model_impl.h"

namespace orchard {

// Per-pair RoPE frequencies: theta^(-2i/rope_dims), divided by the llama3 factors if any.
std::vector<double> rope_frequencies(const ModelConfig& config, const std::vector<float>& freq_factors);

// cos and sin of position * freq[i] for positions start .. start+n-1: [n, rope_dims / 2] each.
// Computed in double once per forward pass and shared by every layer and head.
void rope_angles(const std::vector<double>& freq, int64_t start, int64_t n, std::vector<float>& cos,
                 std::vector<float>& sin);

class Transformer {
 public:
  static constexpr int64_t kFfnChunk = 256;  // tokens per feed-forward pass in prefill

  // n_threads <= 0: one per available CPU.
  Transformer(const Model::Impl& model, const Kernels& kernels, int64_t n_ctx, int n_threads = 0);

  // Runs `tokens` at positions start .. start+n-1, filling the cache at those positions.
  // logits: [n, n_vocab] when all_logits, else [n_vocab] for the last token only.
  void forward(std::span<const int32_t> tokens, int64_t start, bool all_logits, float* logits);

  int64_t n_ctx() const { return cache_.n_ctx(); }
  const KvCache& cache() const { return cache_; }
  int n_threads() const { return pool_.size(); }

 private:
  void attention(int64_t layer, int64_t n, int64_t start);
  void feed_forward(int64_t layer, int64_t n);
  void ensure_batch(int64_t n);
  void matmul(const TensorRef& w, const float* x, int64_t n, float* y);

  const Model::Impl& model_;
  const ModelConfig& config_;
  const Kernels& kernels_;
  ThreadPool pool_;
  KvCache cache_;
  std::vector<double> rope_freq_;
  std::vector<float> rope_cos_, rope_sin_;
  // Activations for a batch of n tokens, row-major [n, width].
  std::vector<float> x_, normed_, q_, k_, v_, attn_out_, proj_, gate_, up_;
  int64_t batch_capacity_ = 0;
};

}  // namespace orchard
