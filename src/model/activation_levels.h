// Which matrices take their activations in one int8 level instead of two, chosen per matrix from
// measurements at load (docs/performance.md, "Activation levels").
//
// The fast kernels quantize a matrix's input per block of 32 values. Two levels (an int8 and a
// second int8 for its remainder) make that quantization almost exact but double the int8
// multiply-adds, the largest cost of prefill and of a batched decode step; one level (what
// llama.cpp does everywhere) is coarse where a block's values are uneven: one large value sets
// the step for the 31 others. What that costs at the logits depends on the model and the matrix,
// so it is measured, on a fixed sequence of tokens:
// - a pass on two levels gives the reference logits, and each matrix's relative error from one
//   level, sum |y1 - y2|^2 / sum |y2|^2, from its product computed both ways on the same input;
// - a pass with one level everywhere: if its KL at the logits is within the budget, that is the
//   choice (a model whose logits hardly move, such as random weights);
// - else one pass per role (q, k, v, o, gate, up, down, output) with one level in every matrix of
//   that role gives the role's KL at the logits, shared among its matrices in proportion to their errors
//   (how a perturbation grows on its way to the logits depends mostly on where it enters);
// - the matrices with the least KL per multiply-add saved take one level while the sum of their
//   KLs stays within the budget.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model_impl.h"

namespace orchard {

// The mean KL (nats per token) at the logits that single-level activations may add in all, on the
// calibration tokens. Chosen on the golden cases (docs/performance.md): every golden case stays
// within its fast tolerance on every ISA path with it (3e-4 did until a change of the attention's
// rounding moved the estimates of one tiny model by a few percent).
inline constexpr double kSingleLevelKlBudget = 2.5e-4;

// Tokens of the calibration passes (few enough that the 2 + 8 passes cost a small part of a load),
// and the last rows whose logits give the KL.
inline constexpr int64_t kCalibrationTokens = 32;
inline constexpr int64_t kKlRows = 8;

struct MatrixLevel {
  const TensorRef* matrix;
  double error;       // sum |y1 - y2|^2 / sum |y2|^2 over the calibration rows
  double kl;          // its estimated share of its role's KL
  bool single_level;  // chosen within the budget
};

// Measures every packed matrix of `impl` (the fast kernels' path; the model packed, not streamed)
// and sets PackedMatrix::single_level on those chosen; returns the measurements by role, in layer
// order. Does nothing (returns none) for a model without packed matrices.
std::vector<MatrixLevel> choose_activation_levels(Model::Impl& impl, double kl_budget = kSingleLevelKlBudget);

}  // namespace orchard
