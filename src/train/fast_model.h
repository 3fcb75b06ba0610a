// The trainer's fast path (issue 17): the model's forward and backward pass in float32 over a batch
// of sequences, on the kernel table's matrix product (Kernels::gemm_f32) and the thread pool. It
// computes what reference_model.h defines (tests/train/fast_model_test.cpp holds the two together
// on awkward shapes and against shared/train's oracles), in the same layer order:
//
//   x = token_embd[tokens]                                  [N, D]  (N = all tokens of the batch)
//   per layer:  a = rmsnorm(x) ; q,k,v = a·Wq^T+bq, a·Wk^T+bk, a·Wv^T+bv ; q/k norm ; RoPE
//               o = causal GQA attention per sequence ; x += o·Wo^T
//               f = rmsnorm(x) ; x += (silu(f·Wg^T) * f·Wu^T)·Wd^T
//   logits = rmsnorm(x)·Wout^T                              [N, V]
//
// Each `_backward` mirrors its forward. Matrices go through gemm_f32 as y = x W^T (forward),
// dx = dy W and dW += dy^T x (backward), over all N tokens at once. Attention runs per (sequence,
// head) with the scores in a [T, T] scratch per thread, keeping only each row's log-sum-exp for
// the backward (which recomputes the probabilities, as FlashAttention does), so a layer's saved
// state is O(N) and not O(T^2).
//
// Two ways to train: every tensor (full fine-tuning: float32 copies of the weights are the
// parameters), or LoRA adapters on chosen projections over a frozen base of any type the engine
// reads (4-bit included): the base's matrices are dequantized one layer at a time into a scratch
// buffer as the pass reaches them, y = x W^T + s (x A^T) B^T, and the gradient reaches A and B
// without ever forming dW.
//
// With `recompute`, the forward keeps only each layer's input and the backward recomputes the
// layer's activations from it before going back through it (activation checkpointing per layer):
// memory O(layers · N · D) instead of O(layers · N · (D + F)), for a second forward's time.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "orchard/model.h"
#include "train/lora.h"
#include "train/optimizer.h"

namespace orchard::train {

struct FastModelOptions {
  KernelChoice kernels = KernelChoice::fast;  // reference: gemm_f32's scalar definition
  int n_threads = 0;                          // <= 0: one per CPU
  bool recompute = false;                     // activation checkpointing per layer
  // Adapters on a frozen base when lora_rank > 0; otherwise full fine-tuning.
  int64_t lora_rank = 0;
  double lora_alpha = 16;
  std::vector<LoraTarget> lora_targets = {LoraTarget::q, LoraTarget::v};
  uint64_t seed = 0;  // LoRA's A init (Kaiming-uniform as PEFT; B starts at zero)
};

// The loss of sequence `index` on its logits [T, V]: returns the loss and writes its gradient with
// respect to the logits into `dlogits` [T, V] (zero where the loss does not reach).
using SequenceLoss =
    std::function<double(size_t index, std::span<const float> logits, std::span<float> dlogits)>;

class FastModel {
 public:
  // `model` must outlive this object; load it with KernelChoice::reference so that no packed copy
  // of the weights is made (this path reads the weights as stored).
  FastModel(const Model& model, const FastModelOptions& options);
  ~FastModel();
  FastModel(const FastModel&) = delete;
  FastModel& operator=(const FastModel&) = delete;

  const ModelConfig& config() const;
  bool is_lora() const;

  // The trainable tensors, in a fixed order: full fine-tuning, every tensor under its GGUF name
  // (reference_model.h's named_tensors order); LoRA, blk.L.<proj>.weight.lora_a / .lora_b.
  std::span<Parameter> parameters();
  void zero_gradients();

  // Forward every sequence (each at positions 0 .. T-1), `loss` on each one's logits, backward:
  // returns the sum of the losses and ADDS every parameter's gradient into its grad.
  double loss_gradients(std::span<const std::vector<int32_t>> sequences, const SequenceLoss& loss);
  // Forward only: the sum of `loss` over the sequences (its dlogits are discarded).
  double loss_only(std::span<const std::vector<int32_t>> sequences, const SequenceLoss& loss);

  // LoRA: the adapters (as lora.h's Lora, for export and the reference path) and setting them.
  Lora lora() const;
  void set_lora(const Lora& lora);

  // Bytes held: parameters and their gradients; the most a batch's activations reached (the saved
  // layer state, the logits and their gradient included), and of that the logits and their gradient.
  uint64_t parameter_bytes() const;
  uint64_t peak_activation_bytes() const;
  uint64_t peak_logit_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::train
