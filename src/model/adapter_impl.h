// LoRA adapter files read for a model (orchard/adapter.h): one parser for PEFT folders and GGUF
// LoRAs, shared by inference (Adapter::load) and the trainer (train::load_peft_adapter).
//
// Matrices come back in the model's row order. PEFT files use Hugging Face's q/k rows; a llama
// GGUF stores q/k rows permuted for adjacent-pair RoPE, so for such a model lora_b's q/k rows are
// permuted on load (lora_a's columns are the layer input: never affected). A GGUF LoRA has the
// rows of llama.cpp's llama GGUFs, so for a llama model read from a Hugging Face folder its q/k
// rows are un-permuted. Qwen models are never permuted.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "orchard/adapter.h"
#include "orchard/model.h"

namespace orchard {

// The projections an adapter may target, in the order of LayerWeights' matrices.
enum class AdapterTarget { q, k, v, o, gate, up, down };
constexpr int kAdapterTargets = 7;

// GGUF projection names (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down) and
// Hugging Face module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
const char* adapter_target_gguf(AdapterTarget target);
const char* adapter_target_hf(AdapterTarget target);

// [out, in] of a target weight in a model of this configuration.
void adapter_target_dims(const ModelConfig& config, AdapterTarget target, int64_t& in, int64_t& out);

// True when the model's q/k rows are stored permuted for adjacent-pair RoPE (a llama GGUF), so
// that PEFT's Hugging Face rows differ from the model's.
bool adapter_rows_permuted(const ModelConfig& config);

// llama.cpp's converter stores Hugging Face's q/k rows per head with the two halves of each head
// interleaved: GGUF row h*hd + 2j + s (pair j, member s) is Hugging Face row h*hd + s*hd/2 + j.
int64_t hf_row_of_gguf_row(int64_t row, int64_t head_dim);

// The rows of a q/k matrix [rows, cols] from Hugging Face's order to the GGUF's (to_gguf) or
// back; `what` names the file in the error for rows that are not whole heads.
template <typename T>
std::vector<T> move_qk_rows(const std::vector<T>& m, int64_t rows, int64_t cols, int64_t head_dim, bool to_gguf,
                            const std::string& what) {
  if (head_dim <= 0 || head_dim % 2 != 0 || rows % head_dim != 0)
    fail(what, ": q/k rows (", rows, ") are not whole heads of an even head_dim (", head_dim, ")");
  std::vector<T> out(m.size());
  for (int64_t g = 0; g < rows; ++g) {
    const int64_t h = hf_row_of_gguf_row(g, head_dim);
    const int64_t from = to_gguf ? h : g, to = to_gguf ? g : h;
    std::copy_n(m.begin() + from * cols, cols, out.begin() + to * cols);
  }
  return out;
}

// One target of one layer: A [rank, in] and B [out, rank], row-major float32, B's rows in the
// model's order.
struct AdapterMatrices {
  int64_t layer = 0;
  AdapterTarget target = AdapterTarget::q;
  int64_t in = 0, out = 0;
  std::vector<float> a, b;
  std::vector<float> bt;  // B transposed, [rank, out]: what add_lora_delta_row reads (Adapter::load fills it)
};

// What an adapter file says, before a multiplier is applied.
struct AdapterFile {
  std::string path;
  int64_t rank = 0;
  double alpha = 0;
  bool rslora = false;                 // PEFT's use_rslora: scale alpha / sqrt(rank)
  std::vector<AdapterTarget> targets;  // PEFT: target_modules' order; GGUF: first appearance
  // Layer by layer, each layer's targets in `targets` order.
  std::vector<AdapterMatrices> matrices;

  double scale() const;  // alpha / rank, or alpha / sqrt(rank) for rsLoRA
};

struct PeftReadOptions {
  // Refuse tensors that are not float32 and use_rslora (the trainer resumes from its own float32
  // files and scales by alpha / r only); inference reads F16 and BF16 too, and rsLoRA.
  bool trainer = false;
};

// A PEFT folder (adapter_config.json + adapter_model.safetensors) for a model of `config`.
// Throws orchard::Error naming the file and the problem.
AdapterFile read_peft_adapter(const std::string& dir, const ModelConfig& config, const PeftReadOptions& options = {});

// A GGUF LoRA (general.type "adapter", adapter.type "lora") for a model of `config`.
AdapterFile read_gguf_adapter(const std::string& path, const ModelConfig& config);

// A folder is read as PEFT, a file as a GGUF LoRA.
AdapterFile read_adapter(const std::string& path, const ModelConfig& config);

struct Adapter::Impl {
  AdapterFile file;
  ModelConfig model;  // of the model it was loaded for (the transformer checks it matches)
  float multiplier = 1.0f;
  // scale() times the multiplier, rounded to float32 once: the factor of every delta.
  float scale = 0;
  // matrices index per layer and target; -1 where the adapter leaves the projection alone.
  std::vector<std::array<int32_t, kAdapterTargets>> index;

  const AdapterMatrices* find(int64_t layer, AdapterTarget target) const {
    const int32_t i = index[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    return i < 0 ? nullptr : &file.matrices[static_cast<size_t>(i)];
  }
};

// The delta y[out] += scale * B (A x) of one row x[in], in two steps that a caller may spread
// over threads (by k, then by ranges of outputs) without changing any value: the order of every
// sum is fixed by the shapes alone, so a row's result is the same in any batch and on any split.
//
// u_k = (A x)_k: A's row k dotted with x in kLoraLanes interleaved partial sums (lane j takes the
// elements j, j + kLoraLanes, ...), the lanes then summed in order, then the tail.
constexpr int64_t kLoraLanes = 64;
float lora_a_dot(const AdapterMatrices& m, int64_t k, const float* x);
// The same for four rows at once (u of row i at u[i * u_stride]), bitwise lora_a_dot's values: A
// is read once for the four, which halves the step's time when requests share an adapter.
void lora_a_dot4(const AdapterMatrices& m, int64_t k, const float* const x[4], float* u, int64_t u_stride);
// y[o] += scale * sum_k B[o, k] u[k] for o in [o_begin, o_end), the k terms added in order (read
// from B transposed, so that the loop runs across outputs).
void lora_add_b(const AdapterMatrices& m, const float* u, float scale, int64_t o_begin, int64_t o_end, float* y);
// The same for four rows (their u at u + i * u_stride, outputs y[i]), bitwise lora_add_b's values.
void lora_add_b4(const AdapterMatrices& m, const float* u, int64_t u_stride, float scale, int64_t o_begin,
                 int64_t o_end, float* const y[4]);
// Both steps for one row on this thread.
void add_lora_delta_row(const AdapterMatrices& m, float scale, const float* x, float* y);

}  // namespace orchard
