// What a loaded model holds: its configuration, the mapped files, and the weights bound to the
// roles the transformer gives them. Shared by the loaders, the forward pass and the CLI.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "kernels/packing.h"
#include "orchard/model.h"
#include "tensor/tensor.h"

namespace orchard {

class StreamedWeights;

struct LayerWeights {
  std::vector<float> attn_norm;     // [dim]
  TensorRef wq;                     // {dim, n_heads * head_dim}
  TensorRef wk, wv;                 // {dim, n_kv_heads * head_dim}
  TensorRef wo;                     // {n_heads * head_dim, dim}
  std::vector<float> bq, bk, bv;    // empty when the model has no q/k/v biases
  std::vector<float> q_norm, k_norm;  // [head_dim], qwen3 only
  std::vector<float> ffn_norm;      // [dim]
  TensorRef w_gate, w_up;           // {dim, ffn_dim}
  TensorRef w_down;                 // {ffn_dim, dim}
};

struct ModelWeights {
  TensorRef token_embedding;  // {dim, n_vocab}
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;  // [dim]
  TensorRef output;                // {dim, n_vocab}; the token embedding when tied
  std::vector<float> rope_freq_factors;  // [rope_dims / 2] divisors, llama3 scaling; else empty
};

// A layer has at least these tensors (attention and FFN norms, q, k, v, output, gate, up, down):
// a layer count above tensors / 9 is a corrupt or hostile header.
constexpr size_t kMinTensorsPerLayer = 9;

// Tensors by GGUF-style name ("blk.0.attn_q.weight"), whatever the source format.
using TensorTable = std::unordered_map<std::string, TensorRef>;

struct Model::Impl {
  ModelConfig config;
  std::string path;
  uint64_t file_bytes = 0;
  std::vector<std::shared_ptr<const Blob>> files;  // keeps the mappings alive
  std::shared_ptr<const GgufFile> gguf;            // set when loaded from GGUF
  std::vector<TensorRef> tensors;                  // as stored, for `orchard info`
  ModelWeights weights;
  PackedWeights packed;  // repacked matrices for the fast kernels (empty for reference loads)
  // Set in limited-memory mode: the resident weights and what streaming needs. The interface is
  // model/weight_source.h's; src/flash/ implements it (FlashWeights).
  std::shared_ptr<const StreamedWeights> flash;
};

// Reads the model at `path` (a GGUF file, a Hugging Face folder or one of its files, a llama2.c
// checkpoint) and binds its weights: the mapped model before packing or streaming. Model::load
// (src/flash/model_load.cpp) goes on from here.
std::unique_ptr<Model::Impl> read_model(const std::string& path);

// Repacks every matrix the fast kernels have a packed format for (see kernels/packing.h) and
// releases the mapped pages they came from; then, with measure_levels, chooses each matrix's
// activation levels (model/activation_levels.h).
void pack_weights(Model::Impl& impl, const std::function<void(double)>& on_progress = {}, bool measure_levels = true);

// Loaders: each fills config, files and tensors of `impl` and returns the tensors by GGUF name.
TensorTable load_gguf_model(const std::string& path, std::shared_ptr<const Blob> blob, Model::Impl& impl);
TensorTable load_hf_model(const std::string& folder, Model::Impl& impl);
TensorTable load_llama2c_model(const std::string& path, std::shared_ptr<const Blob> blob, Model::Impl& impl);

// Checks every tensor the architecture needs (present, shape, type) and binds it to its role.
void bind_weights(const TensorTable& tensors, Model::Impl& impl);

// llama3 RoPE scaling: divisor for each rotated pair's frequency.
std::vector<float> llama3_rope_freq_factors(double theta, int64_t rope_dims, double factor,
                                            double low_freq_factor, double high_freq_factor,
                                            double original_context_length);

}  // namespace orchard
