// The scalar reference of the whole model's forward and backward pass for training (issue 17): the
// definition the fast path is held against, itself held against the PyTorch oracles of
// shared/train. The engine's transformer (model/transformer.cpp) run in double: RMSNorm, RoPE of
// either style with the llama3 frequency factors, GQA causal attention, q/k norm (qwen3), q/k/v
// biases (qwen2), SwiGLU, tied or untied output. The weights are double copies of what the engine
// binds (model/model_impl.h, any weight type it reads, dequantized), in the layout the GGUF stores
// them, so q/k rows stay permuted for adjacent-pair RoPE exactly as the engine's forward reads them.
//
// In the manner of llm.c: the forward keeps what the backward needs in an explicit activations
// struct per layer, the backward walks the layers in reverse with the layer functions of
// reference_layers.h, and the gradients have the parameters' own struct and shapes.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "orchard/model.h"

namespace orchard::train {

// Shapes: D = dim, Q = n_heads * head_dim, K = n_kv_heads * head_dim, F = ffn_dim, V = vocab;
// matrices [out, in] row-major, as the GGUF stores them (rows = ne[1]).
struct ReferenceLayer {
  std::vector<double> attn_norm;       // [D]
  std::vector<double> wq;              // [Q, D]
  std::vector<double> wk, wv;          // [K, D]
  std::vector<double> wo;              // [D, Q]
  std::vector<double> bq, bk, bv;      // [Q], [K], [K]; empty without biases
  std::vector<double> q_norm, k_norm;  // [head_dim]; empty without q/k norm
  std::vector<double> ffn_norm;        // [D]
  std::vector<double> w_gate, w_up;    // [F, D]
  std::vector<double> w_down;          // [D, F]
};

// The trainable tensors (or their gradients: the same struct, the same shapes).
struct ReferenceParams {
  std::vector<double> token_embd;   // [V, D]
  std::vector<double> output_norm;  // [D]
  std::vector<double> output;       // [V, D]; empty when tied to token_embd
  std::vector<ReferenceLayer> layers;
};

struct ReferenceModel {
  ModelConfig config;
  std::vector<double> rope_freq;  // [rope_dims / 2]: theta^(-2i/rope_dims) / rope_freqs factor
  ReferenceParams params;
};

// A tensor of the params by its GGUF name ("blk.0.attn_q.weight") and shape ([rows, cols], 1-D [n]).
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<double>* values = nullptr;
};

// Reads the model at `path` as the engine does (read_model) and copies it.
ReferenceModel load_reference_model(const std::string& path);
// Zeros in the shapes of `params` (a gradient buffer).
ReferenceParams zeros_like(const ReferenceParams& params);
// Every tensor of `params` under its GGUF name: token_embd.weight, output_norm.weight,
// output.weight (untied only), blk.L.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
// ffn_gate, ffn_up, ffn_down}.weight, blk.L.attn_{q,k,v}.bias, blk.L.attn_{q,k}_norm.weight.
std::vector<NamedTensor> named_tensors(ReferenceParams& params, const ModelConfig& config);

// What one layer's backward needs, T tokens.
struct LayerActivations {
  std::vector<double> x;           // [T, D] the layer's input (residual stream)
  std::vector<double> attn_in;     // [T, D] rmsnorm(x)
  std::vector<double> q_pre;       // [T, Q] Wq·attn_in + bq, before q norm and RoPE
  std::vector<double> k_pre;       // [T, K]
  std::vector<double> q, k, v;     // [T, Q], [T, K], [T, K] as attention reads them
  std::vector<double> probs;       // [H, T, T]
  std::vector<double> attn_out;    // [T, Q]
  std::vector<double> x_mid;       // [T, D] x + Wo·attn_out
  std::vector<double> ffn_in;      // [T, D] rmsnorm(x_mid)
  std::vector<double> gate, up;    // [T, F]
  std::vector<double> hidden;      // [T, F] silu(gate) * up
};

struct Activations {
  std::vector<int32_t> tokens;              // [T]
  std::vector<LayerActivations> layers;
  std::vector<double> rope_cos, rope_sin;   // [T, rope_dims / 2]
  std::vector<double> x_final;              // [T, D] the last layer's output
  std::vector<double> normed;               // [T, D] rmsnorm(x_final)
  std::vector<double> logits;               // [T, V]
};

// Runs `tokens` at positions 0 .. T-1 and fills `acts` (logits included).
void reference_forward(const ReferenceModel& model, std::span<const int32_t> tokens, Activations& acts);

// From dlogits [T, V], ADDS the gradient of every parameter into `grads` (zeros_like(params) first).
void reference_backward(const ReferenceModel& model, const Activations& acts, std::span<const double> dlogits,
                        ReferenceParams& grads);

// The supervised fine-tuning targets: row i predicts tokens[i + 1], counted where 2 (i + 1) >= T
// (the answer half, shared/train's sft mask). targets and mask [T] (the last row never counts).
void sft_targets(std::span<const int32_t> tokens, std::vector<int32_t>& targets, std::vector<uint8_t>& mask);

// A loss over logits [T, V] (float32, train/loss.h's interface): returns the loss and writes its
// gradient with respect to the logits into the second span [T, V].
using LogitLoss = std::function<double(std::span<const float> logits, std::span<float> dlogits)>;

// Forward, `loss` on the logits (rounded to float32), and backward from its gradient: returns the
// loss and ADDS the gradients into `grads`.
double reference_loss_gradients(const ReferenceModel& model, std::span<const int32_t> tokens, const LogitLoss& loss,
                                ReferenceParams& grads);

// Forward, train/loss.h's cross_entropy on the logits (rounded to float32 there: its interface)
// with `targets` and `mask`, and backward: returns the loss and ADDS the gradients into `grads`.
double reference_cross_entropy_gradients(const ReferenceModel& model, std::span<const int32_t> tokens,
                                         std::span<const int32_t> targets, std::span<const uint8_t> mask,
                                         ReferenceParams& grads);

}  // namespace orchard::train
