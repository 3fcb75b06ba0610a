// The operations the transformer needs, as a table of functions, so that the whole model runs on
// either the scalar reference kernels (which define correctness) or the fast ones.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"
#include "orchard/types.h"
#include "tensor/tensor.h"

namespace orchard {

struct PackedMatrix;
class ThreadPool;

// A weight matrix {in, out} as stored, and its repacked form when the model has one (which says
// how many levels of int8 its activations take: PackedMatrix::single_level).
struct MatmulWeight {
  const TensorRef& ref;
  const PackedMatrix* packed = nullptr;
};

// What the KV cache stores: float32, float16, or int8 per (position, KV head) row with one
// float32 scale per row (x = scale * q, scale = max |x| / 127), half of f16's bytes.
enum class KvType { f32, f16, q8 };

// Keys in blocks (KvCache's layout): each KV head's positions in blocks of kKeyBlock, a block
// [head_dim][kKeyBlock], so that one vector load takes dimension d of consecutive keys. The score
// pass then multiplies a broadcast query element into a vector of keys' scores: no horizontal
// sums (with keys as rows, summing each key's products across the vector was a third of the
// score pass's instructions and its 16 accumulators spilled; measured in docs/performance.md).
constexpr int64_t kKeyBlock = 16;

// Element d of key `position` within its KV head's blocks.
inline int64_t key_block_offset(int64_t position, int64_t d, int64_t head_dim) {
  return (position - position % kKeyBlock) * head_dim + d * kKeyBlock + position % kKeyBlock;
}

// Causal attention of a batch of query tokens over the KV cache of one layer.
// Token t (position start + t) attends to cached positions 0 .. start + t.
struct AttentionBatch {
  const float* q;          // [n_tokens, n_heads * head_dim]
  const void* keys;        // [n_ctx, n_kv_heads * head_dim] of kv_type, or in blocks: key_head_stride
  const void* values;      // [n_ctx, n_kv_heads * head_dim] of kv_type
  KvType kv_type;
  int64_t n_tokens, start;
  int64_t n_heads, n_kv_heads, head_dim;
  float scale;             // applied to q.k before the softmax
  float* out;              // [n_tokens, n_heads * head_dim]
  const float* key_scales = nullptr;    // q8: [n_ctx, n_kv_heads]
  const float* value_scales = nullptr;  // q8: same
  // Row (position, KV head) of values starts at position * position_stride + kv_head *
  // head_stride elements. 0, the default, lays them [position][KV head]: n_kv_heads * head_dim
  // and head_dim. KvCache keeps each KV head's positions together (kv_cache.h says why).
  int64_t position_stride = 0, head_stride = 0;
  // Nonzero: the keys lie in blocks (kKeyBlock), KV head h's from element h * key_head_stride,
  // whole blocks (a last partial block is read to its end). 0: the keys lie as the values do.
  int64_t key_head_stride = 0;

  int64_t kv_position_stride() const { return position_stride ? position_stride : n_kv_heads * head_dim; }
  int64_t kv_offset(int64_t position, int64_t kv_head) const {
    return position * kv_position_stride() + kv_head * (head_stride ? head_stride : head_dim);
  }
  bool keys_in_blocks() const { return key_head_stride != 0; }
  // Element d of key (position, KV head).
  int64_t key_offset(int64_t position, int64_t kv_head, int64_t d) const {
    return keys_in_blocks() ? kv_head * key_head_stride + key_block_offset(position, d, head_dim)
                            : kv_offset(position, kv_head) + d;
  }
};

// Key or value (position, KV head) of `a` as float32, head_dim values: the conversion every
// attention kernel applies, scalar.
void key_to_f32(const AttentionBatch& a, int64_t position, int64_t kv_head, float* out);
void value_to_f32(const AttentionBatch& a, int64_t position, int64_t kv_head, float* out);

// A float32 matrix product, the trainer's workhorse (forward, input and weight gradients):
//   C[M, N] = (accumulate ? C : 0) + op(A) · op(B)
// op(A) [M, K] is A stored row-major [M, K] with row stride lda, or with a_trans its transpose
// (A stored [K, M]); op(B) [K, N] is B stored [K, N] (ldb), or with b_trans B stored [N, K].
// C is row-major [M, N] with row stride ldc. So y = x W^T is {b_trans}, dx = dy W is {}, and
// dW += dy^T x is {a_trans, accumulate}.
struct GemmF32 {
  bool a_trans = false, b_trans = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
};

struct Kernels {
  const char* name;
  KvType kv_type;  // what the KV cache stores for these kernels

  // y[t][o] = sum_i w[o][i] * x[t][i] for t < n_tokens.
  // w: {in, out} of any weight type; x: [n_tokens, in]; y: [n_tokens, out].
  void (*matmul)(const MatmulWeight& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

  // ys[i] = ws[i] x for i < count: several weights that read the same input (q, k and v; gate
  // and up), so that the fast kernels quantize it once and split all their rows in one go.
  void (*matmul_shared_input)(const MatmulWeight* ws, int count, const float* x, int64_t n_tokens, float* const* ys,
                              ThreadPool& pool);

  // out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], for one vector of length n.
  void (*rmsnorm)(const float* x, const float* weight, int64_t n, float eps, float* out);

  // Rotates one head in place: pairs chosen by `style`; pair i turns by the angle whose cosine
  // and sine are cos[i], sin[i] (see rope_angles in transformer.h).
  void (*rope)(float* head, int64_t rope_dims, RopeStyle style, const float* cos, const float* sin);

  // Each batch is one sequence's rows; the sequences of a batched pass are given together so that
  // the fast kernels spread all their heads over the threads in one go (16 decoding sequences
  // would otherwise hand the pool 16 tasks of one token each, per layer).
  void (*attention)(std::span<const AttentionBatch> batches, ThreadPool& pool);

  // gate[i] = silu(gate[i]) * up[i], n elements.
  void (*swiglu)(float* gate, const float* up, int64_t n, ThreadPool& pool);

  // weights[i] = exp((x[i] - shift) * scale) for i < n, returning their sum: a softmax's
  // numerators (the sampler's, over a whole vocabulary). x[i] <= shift; where x[i] is -inf the
  // weight is 0 or below 2e-38.
  double (*exp_weights)(const float* x, int64_t n, float shift, float scale, float* weights);

  // out[i] = x[i] rounded to float16 (to nearest even, as f32_to_f16), n elements: the KV cache's
  // keys and values as they are stored.
  void (*to_f16)(const float* x, int64_t n, uint16_t* out);

  // GemmF32 above; with pool null, on the calling thread only (callers that split the work
  // themselves, e.g. attention heads over the pool's threads).
  void (*gemm_f32)(const GemmF32& g, ThreadPool* pool);
};

const Kernels& reference_kernels();
// The fast kernels on one instruction-set path (which must be supported by this CPU).
const Kernels& fast_kernels(Isa isa);
// The kernels for `choice` on this CPU: for `fast`, the path selected_isa() names, or the
// reference kernels when ORCHARD_ISA=reference.
const Kernels& select_kernels(KernelChoice choice);

}  // namespace orchard
