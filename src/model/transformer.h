// The decoder-only transformer forward pass shared by llama, qwen2 and qwen3.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/thread_pool.h"
#include "model/adapter_impl.h"
#include "model/kv_cache.h"
#include "model/model_impl.h"
#include "model/weight_source.h"

namespace orchard {

class Adapter;

// Per-pair RoPE frequencies: theta^(-2i/rope_dims), divided by the llama3 factors if any.
std::vector<double> rope_frequencies(const ModelConfig& config, const std::vector<float>& freq_factors);

// cos and sin of position * freq[i] for each of `positions`: [n, rope_dims / 2] each.
// Computed in double once per forward pass and shared by every layer and head.
void rope_angles(const std::vector<double>& freq, std::span<const int64_t> positions, std::vector<float>& cos,
                 std::vector<float>& sin);

// Tokens of one sequence in a batch: they go at positions start .. start+n-1 of its cache.
struct SequenceTokens {
  int64_t sequence = 0;
  int64_t start = 0;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits of every token, or of the last `logit_rows` only
  // Without all_logits: how many of the last tokens get logits, 1 to the number of tokens. A
  // decode step asks for 1; scoring a prompt's tail (StreamOptions::prompt_logprobs_last) for the
  // tail's rows only, so the final norm and the output matmul (vocab x dim per row, the largest
  // matrix of a small model) run for those rows and no others.
  int64_t logit_rows = 1;
  // A LoRA adapter applied to this sequence's projections (orchard/adapter.h); null: the base.
  const Adapter* adapter = nullptr;
  // Embeddings: the final hidden states of the entry's rows_with_logits() rows after the output
  // norm (the vectors the output matrix multiplies) are written here, [rows, dim]; null: none.
  float* hidden = nullptr;
  // false: only `hidden` is wanted; the entry's rows skip the output matmul and take no rows of
  // the pass's logits.
  bool wants_logits = true;

  // The rows of logits this entry gives; throws orchard::Error for a logit_rows out of range.
  int64_t rows_with_logits() const;
};

// The public API's KV cache choice as the transformer's (nullopt: what the kernels prefer).
std::optional<KvType> kv_type_of(KvCacheType type);

// The largest context a KV cache may have, whatever the memory: positions are int64 but the
// attention scratch and rope tables are sized per position too.
constexpr int64_t kMaxContextTokens = int64_t{1} << 24;

// Refuses, with an error naming --ctx-size and the bytes needed, a context whose `n_caches` KV
// caches of `n_ctx` positions cannot fit in the memory this process may use (physical memory,
// ulimit, cgroup): checked before allocating, so a huge --ctx-size is an error (exit 2), not
// std::bad_alloc or the OOM killer.
void check_kv_cache_fits(const ModelConfig& config, int64_t n_ctx, int64_t n_caches, KvType type);

// Sees every matrix product of a forward pass as the kernels computed it, before any adapter
// delta: the weight, its input x [n, in] and its output y [n, out] (model/activation_levels.h).
class MatmulProbe {
 public:
  virtual ~MatmulProbe() = default;
  virtual void on_matmul(const MatmulWeight& w, const float* x, int64_t n, const float* y) = 0;
};

class Transformer {
 public:
  // Tokens per feed-forward pass in prefill: the [tokens, ffn_dim] intermediates are the largest
  // activations. 128 rather than 256 keeps a 512-token prefill of the 1.5B shape's q4_os file
  // within issue 22's memory limit (peak RSS 946 -> 935 MiB, limit 942); pp512 did not move
  // (Q4_0 329.5 against 328, q4_os 120.9 against 123.1 t/s, medians of 3 interleaved runs).
  static constexpr int64_t kFfnChunk = 128;

  // n_threads <= 0: one per available CPU. Each of `n_sequences` sequences has its own KV
  // cache of n_ctx positions; one forward pass can advance several of them together, reading
  // the weights once for all (continuous batching). kv_type: what the caches store (default:
  // what the kernels prefer). shared_pool: run on another transformer's workers instead of
  // starting its own (a draft model beside its target: the two never run at once, and a second
  // pool's workers would spin on the cores while the first computes); n_threads is then ignored.
  Transformer(const Model::Impl& model, const Kernels& kernels, int64_t n_ctx, int n_threads = 0,
              int64_t n_sequences = 1, std::optional<KvType> kv_type = std::nullopt,
              ThreadPool* shared_pool = nullptr);
  ~Transformer();

  // Runs `tokens` of sequence 0 at positions start .. start+n-1, filling its cache there.
  // logits: [n, n_vocab] when all_logits, else [n_vocab] for the last token only.
  void forward(std::span<const int32_t> tokens, int64_t start, bool all_logits, float* logits);

  // Runs every entry of `batch` in one pass. logits: the entries' rows in order
  // ([rows_with_logits(), n_vocab] each: the entry's last rows, in order of position; none for an
  // entry without wants_logits). May be null when no entry wants logits.
  void forward(std::span<const SequenceTokens> batch, float* logits);

  int64_t n_ctx() const { return caches_.front().n_ctx(); }
  int64_t n_sequences() const { return static_cast<int64_t>(caches_.size()); }
  const KvCache& cache(int64_t sequence = 0) const { return caches_[static_cast<size_t>(sequence)]; }
  void erase_cache(int64_t sequence, int64_t positions) { caches_[static_cast<size_t>(sequence)].erase(positions); }
  int n_threads() const { return pool_.size(); }
  // The workers, idle between forward passes (the server samples its batch on them).
  ThreadPool& pool() { return pool_; }
  // Limited-memory mode's figures (inactive when the model's weights are mapped).
  FlashStats flash_stats() const;
  // null: none (the default).
  void set_probe(MatmulProbe* probe) { probe_ = probe; }

 private:
  void attention(int64_t layer, const LayerWeights& w, std::span<const SequenceTokens> batch, int64_t n);
  // fn(t) for rows 0 .. n-1, which touch only their own rows: split over the pool when there
  // are several (a batch step, a prompt), on this thread for one (a decode step).
  template <typename Fn>
  void for_rows(int64_t n, Fn&& fn);
  void feed_forward(int64_t layer, const LayerWeights& w, int64_t n);
  void output(int64_t rows, float* logits);
  void ensure_batch(int64_t n);
  MatmulWeight matmul_weight(const TensorRef& w) const;
  // For each output (a target of `layer` and its y [m, out]): y += each row's adapter delta (rows
  // first .. first+m of the pass; rows without an adapter, or whose adapter leaves the target
  // alone, are untouched); x [m, in] is the input the outputs share. The projections that share
  // an input go in one call, so the workers meet twice per call, not twice per projection.
  struct LoraOutput {
    AdapterTarget target;
    float* y;
  };
  void add_adapter_deltas(int64_t layer, std::initializer_list<LoraOutput> outputs, const float* x, int64_t first,
                          int64_t m);
  void matmul(const TensorRef& w, const float* x, int64_t n, float* y);
  // ys[i] = ws[i] x for the matrices that read one input (q, k, v; gate, up), through the probe.
  void matmul_shared_input(std::initializer_list<const TensorRef*> ws, const float* x, int64_t n,
                           std::initializer_list<float*> ys);

  const Model::Impl& model_;
  const ModelConfig& config_;
  const Kernels& kernels_;
  std::unique_ptr<ThreadPool> own_pool_;  // unless another transformer's is shared
  ThreadPool& pool_;
  std::vector<KvCache> caches_;
  std::vector<double> rope_freq_;
  std::vector<int64_t> positions_;
  std::vector<KvCache*> row_caches_;  // each row's sequence cache in this pass
  std::vector<AttentionBatch> attention_rows_;  // one per batch entry, for the layer at hand
  MatmulProbe* probe_ = nullptr;
  // cos and sin of every rope angle, [position, pair], for the positions reached so far: a
  // decode step looks its rows up instead of computing them.
  std::vector<float> rope_cos_, rope_sin_;
  void extend_rope_table(int64_t positions);
  // Activations for a batch of n tokens, row-major [n, width].
  std::vector<float> x_, normed_, q_, k_, v_, attn_out_, proj_, gate_, up_;
  int64_t batch_capacity_ = 0;
  // Hands out each layer's weights: the mapped ones, or limited-memory mode's streamed ones.
  std::unique_ptr<WeightSource> weights_;
  std::vector<float> chunk_logits_;  // one streamed output chunk's logits, [rows, chunk rows]
  // Each row's adapter in this pass (null: the base), and whether any row has one.
  std::vector<const Adapter::Impl*> row_adapters_;
  bool any_adapter_ = false;
  // add_adapter_deltas' scratch: the rows with a delta for the current projection, and their
  // u = A x values, row after row.
  struct LoraRow {
    const float* x;  // the row's input
    float* y;        // the row's output
    const AdapterMatrices* mats;
    float scale;
    int64_t rank;
  };
  std::vector<LoraRow> lora_rows_;
  // Rows computed together: 4 of one adapter, or one; their u values at u_offset, row after row.
  struct LoraGroup {
    size_t first, rows;
    int64_t u_offset;
  };
  std::vector<LoraGroup> lora_groups_;
  std::vector<std::pair<size_t, int64_t>> lora_items_;  // (group, k) in step 1, (group, first output) in step 2
  std::vector<float> lora_u_;
};

}  // namespace orchard
