// Activation statistics estimated from the weights alone, for quantizing without calibration
// data. The error of weight w[o][i] costs E[x_i^2] * err^2 in the layer's output, so the scale
// search needs E[x_i^2] for every input column i of every matrix. Without calibration tokens
// these second moments are propagated through the network in closed form: each column of the
// residual stream is modelled as a mean (the part every token shares) plus independent noise of
// some variance, starting from the token embedding averaged over the vocabulary, and each layer
// maps (mean, variance) to (mean, variance):
//   RMSNorm   x = g * r / rms(r), with rms(r)^2 the mean over columns of mean^2 + variance;
//   linear    mean W*m + b, variance (W.^2) * v (independent columns);
//   attention a convex mix of value vectors: the mean (including the value bias) passes whole,
//             the variance shrinks by the sum of squared attention weights;
//   SwiGLU    silu(gate) * up with gate and up Gaussian and independent (exact 1-D integrals).
// What this catches that the RMSNorm weights alone do not: biases and shared offsets that every
// token adds to the stream (Qwen's value bias passes through attention and is then projected
// into the residual of every token), which make a few columns of attn_output, ffn_down and the
// later layers' inputs carry most of the signal.
#pragma once
#include "orchard/model.h"
#include "quant/importance.h"

namespace orchard {

// E[x_i^2] for the input columns of every matrix, by GGUF tensor name (the tied head is
// token_embd.weight), estimated from the weights as above.
ImportanceTable estimate_activation_moments(const Model& model);

}  // namespace orchard
