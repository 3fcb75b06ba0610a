// The scalar reference of each layer of the trainer's transformer: a forward and a `_backward` per
// operation, plain loops in double, one thread (issue 17). They define what the fast path must
// compute; reference_model.h strings them into the whole model. Double, not float32, so that the
// reference sits far inside the oracle's bounds (float32 PyTorch reaches 6.4e-6) and any gap the
// fast path shows is its own.
//
// Conventions, as in llm.c: row-major arrays, shapes in the comments, T = tokens, a weight W of
// shape [O, I] (rows = out features, as the GGUF stores it: y = W x). Every `_backward` ADDS into
// its input and parameter gradients (so that uses of one tensor accumulate), and reads the
// forward's saved inputs, never its outputs unless said.
#pragma once
#include <cstdint>

#include "orchard/model.h"

namespace orchard::train {

// out[T, O] = inp[T, I] · W[O, I]^T + b[O]   (b may be null)
void matmul_forward(double* out, const double* inp, const double* W, const double* b, int64_t T, int64_t I, int64_t O);
// dinp[T, I] += dout · W;  dW[O, I] += dout^T · inp;  db[O] += sum_t dout   (dinp, dW, db may be null)
void matmul_backward(double* dinp, double* dW, double* db, const double* dout, const double* inp, const double* W,
                     int64_t T, int64_t I, int64_t O);

// One row of n: out[n] = x * w / sqrt(mean(x^2) + eps)
void rmsnorm_forward(double* out, const double* x, const double* w, int64_t n, double eps);
// With r = 1/sqrt(mean(x^2) + eps):  dw += dout * x * r;
// dx += r * (dout * w) - x * r^3 / n * sum_i(dout_i * w_i * x_i)
void rmsnorm_backward(double* dx, double* dw, const double* dout, const double* x, const double* w, int64_t n,
                      double eps);

// One head in place: pairs (i, i + rope_dims/2) for neox, (2i, 2i+1) for interleaved, i < rope_dims/2,
// turn by angle[i] = position * freq[i]:  a' = a cos - b sin, b' = a sin + b cos. The dimensions
// past rope_dims stay.
void rope_forward(double* head, int64_t rope_dims, RopeStyle style, const double* cos, const double* sin);
// The transpose rotation on the gradient, in place: da = da' cos + db' sin, db = -da' sin + db' cos.
void rope_backward(double* dhead, int64_t rope_dims, RopeStyle style, const double* cos, const double* sin);

// Causal grouped-query attention of one sequence. q [T, H * hd], k and v [T, KV * hd], query head h
// reads KV head h / (H / KV). probs [H, T, T] (row t holds p_t0 .. p_tt, the rest zero),
// out [T, H * hd]:  p_tj = softmax_j<=t(scale * q_t · k_j),  out_t = sum_j p_tj v_j.
void attention_forward(double* out, double* probs, const double* q, const double* k, const double* v, int64_t T,
                       int64_t H, int64_t KV, int64_t hd, double scale);
// From dout [T, H * hd] and the saved probs: dv_j += p_tj dout_t; dp_tj = dout_t · v_j;
// ds_tj = p_tj (dp_tj - sum_j' p_tj' dp_tj'); dq_t += scale ds_tj k_j; dk_j += scale ds_tj q_t.
void attention_backward(double* dq, double* dk, double* dv, const double* dout, const double* probs, const double* q,
                        const double* k, const double* v, int64_t T, int64_t H, int64_t KV, int64_t hd, double scale);

// out[n] = silu(gate) * up, silu(g) = g * sigmoid(g)
void swiglu_forward(double* out, const double* gate, const double* up, int64_t n);
// dgate += dout * up * sigmoid(g) * (1 + g (1 - sigmoid(g)));  dup += dout * silu(g)
void swiglu_backward(double* dgate, double* dup, const double* dout, const double* gate, const double* up, int64_t n);

}  // namespace orchard::train
