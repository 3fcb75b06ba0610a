// The optimizer step of the trainer: AdamW with decoupled weight decay, gradient clipping by the
// global L2 norm, and gradient accumulation over micro-batches (issue 17). Plain loops in a fixed
// order, no threads: the same inputs give bitwise the same outputs, so a run that saves its
// optimizer state (AdamW::save) and resumes from it (AdamW::restore) continues bit-identically.
//
// One AdamW step t (counted from 1) on a parameter w with gradient g, moments m and v (float32,
// zero before step 1). Every element is computed in double from the float32 values and rounded to
// float32 once at the end of each of the three lines:
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   w = w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) - lr * weight_decay * w * [w is 2-D]
// The decay is decoupled (Loshchilov & Hutter): it shrinks the weight itself, not the gradient, and
// uses the weight from before the step. It applies to 2-D tensors only (matrices and embeddings),
// never to norms or biases. This is torch.optim.AdamW's update (maximize and amsgrad off).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace orchard::train {

// A named float32 tensor that training changes: its value and its gradient, both row-major over
// `shape` ([rows, cols] as the tensor lies in the GGUF: rows = ne[1]; 1-D tensors [n]). The
// spans view memory that the caller owns. A list of these will be the trainer's parameter list.
struct Parameter {
  std::string name;
  std::vector<int64_t> shape;
  std::span<float> value;
  std::span<float> grad;

  int64_t element_count() const;  // the product of `shape`
  bool is_matrix() const { return shape.size() == 2; }
};

struct AdamWConfig {
  double lr = 1e-3;  // used by step() without a rate; a schedule passes its own to step(params, lr)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // on 2-D parameters only
};

class AdamW {
 public:
  // Zero moments for each parameter of `params` (by name and element count), step count 0.
  // Throws orchard::Error for a config outside lr >= 0, 0 <= beta < 1, eps > 0, weight_decay >= 0
  // (NaN included), or for a parameter whose shape does not match its spans.
  AdamW(const AdamWConfig& config, std::span<const Parameter> params);

  // One step over `params`, which must be the list the optimizer was built with (same order, names
  // and sizes). Every gradient is checked first: a NaN or infinite gradient throws orchard::Error
  // naming the parameter and the element, and then nothing (weights, moments, step count) has
  // changed, so the caller may skip the step and report it. lr < 0 or NaN throws.
  void step(std::span<Parameter> params) { step(params, config_.lr); }
  void step(std::span<Parameter> params, double lr);

  const AdamWConfig& config() const { return config_; }
  int64_t steps_taken() const { return steps_; }
  size_t size() const { return state_.size(); }
  const std::string& name(size_t i) const { return state_.at(i).name; }
  std::span<const float> exp_avg(size_t i) const { return state_.at(i).m; }     // m
  std::span<const float> exp_avg_sq(size_t i) const { return state_.at(i).v; }  // v

  // The whole state (config, step count, each parameter's name, m and v) as bytes, little-endian:
  //   "ORCHADAM" u32 version=1 | f64 lr, beta1, beta2, eps, weight_decay | i64 steps | u64 count |
  //   count x ( u32 name_len, name | u64 n | n x f32 m | n x f32 v )
  // restore() gives back an optimizer that is bitwise the one saved; it throws orchard::Error
  // naming what is wrong for bytes that are not such a state (truncated, trailing, bad sizes).
  std::vector<uint8_t> save() const;
  static AdamW restore(std::span<const uint8_t> bytes);

 private:
  struct State {
    std::string name;
    std::vector<float> m;
    std::vector<float> v;
  };
  AdamW() = default;
  AdamWConfig config_;
  int64_t steps_ = 0;
  std::vector<State> state_;
};

// Gradient clipping by global norm: the L2 norm of all gradients of `params` together, summed in
// double in list order. When it is above `max_norm`, every gradient is multiplied by
// max_norm / norm (in double, rounded to float32 per element), so the norm becomes max_norm up to
// float32 rounding; at or below it the gradients are left untouched. Returns the norm from before
// clipping. Throws orchard::Error for max_norm <= 0 or NaN, or for a non-finite gradient (naming
// the parameter), before changing anything.
double clip_grad_norm(std::span<Parameter> params, double max_norm);

// Gradient accumulation: the step's gradient is the mean of the micro-batches' gradients. Start
// with zero gradients, add each micro-batch with accumulate_gradients (micro[i] is the gradient of
// params[i], added in float32 elementwise), then divide by the number of micro-batches with
// average_gradients (each element divided by count, correctly rounded). Both throw orchard::Error
// naming the parameter when a size does not match, and for count < 1.
void accumulate_gradients(std::span<Parameter> params, std::span<const std::span<const float>> micro);
void average_gradients(std::span<Parameter> params, int64_t count);

}  // namespace orchard::train
