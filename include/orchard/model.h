// Models and inference contexts: load a model from GGUF, a Hugging Face folder or a llama2.c
// checkpoint, and compute logits with a KV cache.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "orchard/types.h"

namespace orchard {

struct ModelConfig {
  std::string architecture;  // "llama", "qwen2", "qwen3"
  std::string source_format; // "gguf", "safetensors", "llama2.c"
  int64_t n_vocab = 0;
  int64_t dim = 0;           // hidden size
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_dim = 0;
  int64_t context_length = 0;  // trained context
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int64_t rope_dims = 0;       // leading dimensions of each head that RoPE rotates
  RopeStyle rope_style = RopeStyle::neox;
  bool has_rope_freq_factors = false;  // llama3 scaling
  bool qkv_bias = false;
  bool qk_norm = false;
  bool tied_output = false;
};

struct TensorSummary {
  std::string name;
  std::string type;            // "F32", "Q4_K", ...
  std::vector<int64_t> shape;  // fastest dimension first, as GGUF writes it
};

struct LoadOptions {
  KernelChoice kernels = KernelChoice::fast;
  // Called with the fraction done (0 to 1) while the weights are prepared for the kernels.
  std::function<void(double)> on_progress;
  // Limited-memory mode (docs/flash.md): when the weights are larger than this many bytes, they
  // are not mapped but read from the file as the forward pass needs them, holding at most this
  // many bytes of weights (per context, for the stream buffers). 0: off.
  uint64_t memory_budget = 0;
  // With the fast kernels, limited-memory mode reads the matrices already packed from a file it
  // builds at the first such load (the flash layout, docs/flash.md) in this directory; empty:
  // FlashLayout's default ($ORCHARD_CACHE_DIR, else $XDG_CACHE_HOME/orchard, else
  // ~/.cache/orchard). When it cannot be written, or with flash_layout false, matrices are
  // packed as they are read.
  bool flash_layout = true;
  std::string flash_layout_dir;
  // The fast kernels quantize each matrix's activations in one int8 level where a measurement at
  // load shows the logits hardly move, two elsewhere (docs/performance.md, "Activation levels").
  // false: two levels everywhere, as limited-memory mode always has (measuring would stream the
  // whole file ten times, and its passes wait on storage, not on int8 work); a mapped model loaded
  // so gives bitwise the logits of the same model in limited-memory mode.
  bool measure_activation_levels = true;
};

// What limited-memory mode did in a context, summed over its forward passes.
struct FlashStats {
  bool active = false;                   // false: the weights are mapped (no budget, or they fit)
  bool direct_io = false;                // reads bypass the page cache with O_DIRECT
  bool flash_layout = false;             // matrices come packed from the flash layout file
  uint64_t budget_bytes = 0;
  uint64_t resident_bytes = 0;           // weights held for the model's lifetime
  uint64_t stream_buffer_bytes = 0;      // this context's stream slots and staging buffer
  uint64_t streamed_bytes_per_pass = 0;  // file bytes read per forward pass (plus embedding rows)
  uint64_t bytes_read = 0;               // from storage, in all passes so far
  double io_wait_s = 0;                  // time the computation waited for reads
  double compute_s = 0;                  // forward-pass time not spent waiting
  int64_t passes = 0, tokens = 0;
};

class Model {
 public:
  // Loads a .gguf file, a Hugging Face folder (config.json + safetensors) or a llama2.c .bin.
  // Throws orchard::Error naming the file and the problem on bad input.
  static std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& options = {});
  // Loads a GGUF or llama2.c model from bytes in memory; `name` stands for the file in messages.
  // Options as for load, except that a memory budget is refused (it needs a file to read from).
  static std::shared_ptr<const Model> load_from_memory(std::vector<uint8_t> bytes, const std::string& name,
                                                       const LoadOptions& options = {});

  ~Model();
  const ModelConfig& config() const;
  const std::string& path() const;
  std::vector<TensorSummary> tensors() const;
  int64_t parameter_count() const;
  uint64_t file_bytes() const;  // total size of the files that hold the weights
  // Multiply-adds per token of the layers' matrices and of the output matrix, and how many of each
  // the fast kernels run with single-level int8 activations (chosen at load from measurements,
  // docs/performance.md "Activation levels"; none with the reference kernels or in limited-memory
  // mode): the int8 work of a token is 2 ops per multiply-add, twice over on two levels. And the
  // bytes of those matrices, which a decoded token reads once each.
  struct MatmulWork {
    int64_t layer_macs = 0, layer_single_level_macs = 0, output_macs = 0, output_single_level_macs = 0;
    uint64_t layer_bytes = 0, output_bytes = 0;
  };
  MatmulWork matmul_work() const;
  // The llama3 RoPE frequency divisors per rotated pair (empty when the model has none).
  const std::vector<float>& rope_freq_factors() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What the KV cache stores. automatic: float32 with the reference kernels, float16 with the fast
// ones; int8: one byte per element plus a scale per position and KV head (half of float16).
enum class KvCacheType { automatic, f32, f16, int8 };

struct ContextOptions {
  int64_t n_ctx = 0;  // 0: the model's trained context length (capped at 4096)
  KernelChoice kernels = KernelChoice::fast;
  int n_threads = 0;  // threads of the context's pool; 0: one per available CPU
  KvCacheType kv_cache = KvCacheType::automatic;
};

// One sequence's inference state: the KV cache and scratch buffers.
class Context {
 public:
  explicit Context(std::shared_ptr<const Model> model, const ContextOptions& options = {});
  ~Context();

  // Runs `tokens` at positions n_past() .. n_past()+n-1 (all of them in one batch) and returns
  // their logits, row-major [n, n_vocab]. Throws orchard::Error for ids out of range or when the
  // tokens do not fit in the context.
  std::vector<float> eval(std::span<const int32_t> tokens);
  // Same, but only the last position's logits.
  std::vector<float> eval_last(std::span<const int32_t> tokens);

  int64_t n_past() const;
  int64_t n_ctx() const;
  // Forgets positions >= n (keeps the cached prefix).
  void truncate(int64_t n);
  void reset() { truncate(0); }
  const Model& model() const;
  KernelChoice kernels() const;
  // Limited-memory mode's figures for this context (inactive when the model is mapped).
  FlashStats flash_stats() const;
  // Bytes the KV cache holds (all layers, the whole context).
  uint64_t kv_cache_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard
