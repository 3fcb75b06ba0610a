// The operations the transformer needs, as a table of functions, so that the whole model runs on
// either the scalar reference kernels (which define correctness) or the fast ones.
#pragma once
#include <cstdint>

#include "orchard/model.h"
#include "tensor/tensor.h"

namespace orchard {

struct Kernels {
  const char* name;

  // y[t][o] = sum_i w[o][i] * x[t][i] for t < n_tokens.
  // w: {in, out} of any weight type; x: [n_tokens, in]; y: [n_tokens, out].
  void (*matmul)(const TensorRef& w, const float* x, int64_t n_tokens, float* y);

  // out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], for one vector of length n.
  void (*rmsnorm)(const float* x, const float* weight, int64_t n, float eps, float* out);

  // Rotates one head in place: pairs chosen by `style`, angle of pair i = position * freq[i].
  // freq: [rope_dims / 2] angles per unit position.
  void (*rope)(float* head, int64_t rope_dims, RopeStyle style, int64_t position, const double* freq);

  // Causal attention of one query head over its cached keys and values.
  // q: [head_dim]; keys/values: n_keys rows, `stride` floats apart; out: [head_dim].
  // scratch: at least n_keys floats.
  void (*attend)(const float* q, const float* keys, const float* values, int64_t n_keys,
                 int64_t stride, int64_t head_dim, float scale, float* scratch, float* out);

  // gate[i] = silu(gate[i]) * up[i], n elements.
  void (*swiglu)(float* gate, const float* up, int64_t n);
};

const Kernels& reference_kernels();
// The kernels for `choice` on this CPU.
const Kernels& select_kernels(KernelChoice choice);

}  // namespace orchard
