// LoRA on the reference path (issue 17): low-rank adapters on chosen projections of every layer,
// the base weights frozen. PEFT's convention, as shared/train/README.md states it: for a target
// weight W [out, in] (as the GGUF stores it, so llama's q/k rows stay permuted), A [r, in] and
// B [out, r], the forward uses W_eff = W + s * B A with s = alpha / r.
//
// The adapter gradients follow from the effective weight's gradient dW (the gradient the base
// would get, computed only as an intermediate, never applied): dA = s * B^T dW, dB = s * dW A^T.
// So the reference path needs no backward of its own: copy the model with the effective weights,
// run reference_loss_gradients, and map each target's dW to dA and dB.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/reference_model.h"

namespace orchard::train {

enum class LoraTarget { q, k, v, o, gate, up, down };

// "q", "k", "v", "o", "gate", "up", "down"; anything else is refused.
LoraTarget parse_lora_target(const std::string& name);
// The GGUF projection name of a target: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down.
const char* lora_target_gguf(LoraTarget target);

struct LoraConfig {
  int64_t rank = 4;
  double alpha = 8;
  std::vector<LoraTarget> targets = {LoraTarget::q, LoraTarget::v};
  double scale() const { return alpha / static_cast<double>(rank); }
};

// One adapter: A [rank, in], B [out, rank], row-major.
struct LoraAdapter {
  int64_t layer = 0;
  LoraTarget target = LoraTarget::q;
  int64_t in = 0, out = 0;
  std::vector<double> a, b;
};

// The adapters of a model, layer by layer, each layer's targets in `config.targets` order (the
// order of shared/train's files: blk.0.attn_q, blk.0.attn_v, blk.1.attn_q, ...).
struct Lora {
  LoraConfig config;
  std::vector<LoraAdapter> adapters;
};

// Zero adapters in the model's shapes (rank >= 1, alpha > 0 and distinct targets, or refused).
Lora zero_lora(const ReferenceModel& model, const LoraConfig& config);

// The adapter matrices (or their gradients: the same struct) under the adapter names
// blk.L.<proj>.weight.lora_a ([rank, in]) and .lora_b ([out, rank]), in adapter order, A then B.
std::vector<NamedTensor> lora_tensors(Lora& lora);

// A copy of the model whose target weights are W + s * B A.
ReferenceModel lora_effective_model(const ReferenceModel& model, const Lora& lora);

// Forward through the effective weights, `loss`, backward: returns the loss and writes (not adds)
// the adapter gradients into `grads` (made zero-shaped like `lora` if its shapes differ).
double lora_loss_gradients(const ReferenceModel& model, const Lora& lora, std::span<const int32_t> tokens,
                           const LogitLoss& loss, Lora& grads);

}  // namespace orchard::train
