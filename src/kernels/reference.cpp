// Scalar reference kernels: plain loops, float32 accumulation, one thread. They define what
// every fast kernel must compute.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "kernels/kernels.h"
#include "kernels/rope.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

void matmul_reference(const MatmulWeight& weight, const float* x, int64_t n_tokens, float* y,
                      ThreadPool&) {
  const TensorRef& w = weight.ref;
  const int64_t in = w.row_length(), out = w.rows();
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    dequantize_row(w.type, w.row(o), row.data(), in);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * in;
      float sum = 0.0f;
      for (int64_t i = 0; i < in; ++i) sum += row[i] * xt[i];
      y[t * out + o] = sum;
    }
  }
}

void matmul_shared_input_reference(const MatmulWeight* ws, int count, const float* x, int64_t n_tokens,
                                   float* const* ys, ThreadPool& pool) {
  for (int i = 0; i < count; ++i) matmul_reference(ws[i], x, n_tokens, ys[i], pool);
}

void rmsnorm_reference(const float* x, const float* weight, int64_t n, float eps, float* out) {
  float sum_squares = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum_squares += x[i] * x[i];
  const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv_rms * weight[i];
}

// One query head over n_keys cached rows `stride` floats apart.
void attend_one(const float* q, const float* keys, const float* values, int64_t n_keys,
                int64_t stride, int64_t head_dim, float scale, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* k = keys + j * stride;
    float dot = 0.0f;
    for (int64_t d = 0; d < head_dim; ++d) dot += q[d] * k[d];
    scores[j] = dot * scale;
    max_score = std::max(max_score, scores[j]);
  }
  float total = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    total += scores[j];
  }
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float p = scores[j] / total;
    const float* v = values + j * stride;
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * v[d];
  }
}

// The cache's keys or values [0, n) as float32 rows ([n, n_kv_heads * head_dim]).
std::vector<float> kv_rows_f32(const AttentionBatch& a, bool keys, int64_t n) {
  const int64_t hd = a.head_dim, kv_dim = a.n_kv_heads * hd;
  std::vector<float> rows(static_cast<size_t>(n * kv_dim));
  for (int64_t p = 0; p < n; ++p)
    for (int64_t h = 0; h < a.n_kv_heads; ++h) {
      float* row = &rows[static_cast<size_t>(p * kv_dim + h * hd)];
      keys ? key_to_f32(a, p, h, row) : value_to_f32(a, p, h, row);
    }
  return rows;
}

void attention_reference_one(const AttentionBatch& a) {
  const int64_t hd = a.head_dim, q_dim = a.n_heads * hd, kv_dim = a.n_kv_heads * hd;
  const int64_t group = a.n_heads / a.n_kv_heads;
  const std::vector<float> key_rows = kv_rows_f32(a, true, a.start + a.n_tokens);
  const std::vector<float> value_rows = kv_rows_f32(a, false, a.start + a.n_tokens);
  const float* keys = key_rows.data();
  const float* values = value_rows.data();
  std::vector<float> scores(static_cast<size_t>(a.start + a.n_tokens));
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t h = 0; h < a.n_heads; ++h) {
      const int64_t kv_head = h / group;
      attend_one(a.q + t * q_dim + h * hd, keys + kv_head * hd, values + kv_head * hd,
                 a.start + t + 1, kv_dim, hd, a.scale, scores.data(), a.out + t * q_dim + h * hd);
    }
}

void attention_reference(std::span<const AttentionBatch> batches, ThreadPool&) {
  for (const AttentionBatch& a : batches) attention_reference_one(a);
}

void swiglu_reference(float* gate, const float* up, int64_t n, ThreadPool&) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

double exp_weights_reference(const float* x, int64_t n, float shift, float scale, float* weights) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    weights[i] = static_cast<float>(std::exp((static_cast<double>(x[i]) - shift) * scale));
    total += weights[i];
  }
  return total;
}

void to_f16_reference(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

// Each element summed in double in k order: the definition the fast product is held against.
void gemm_f32_reference(const GemmF32& g, ThreadPool*) {
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        const float a = g.a_trans ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
        const float b = g.b_trans ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j];
        sum += static_cast<double>(a) * b;
      }
      float& c = g.c[i * g.ldc + j];
      c = g.accumulate ? static_cast<float>(c + sum) : static_cast<float>(sum);
    }
}

}  // namespace

namespace {

// Element offset(d) of `base`, converted from a's kv_type (q8: times `scale`).
template <typename Offset>
void element_row_to_f32(const AttentionBatch& a, const void* base, float scale, Offset offset, float* out) {
  for (int64_t d = 0; d < a.head_dim; ++d) {
    const int64_t i = offset(d);
    switch (a.kv_type) {
      case KvType::f32: out[d] = static_cast<const float*>(base)[i]; break;
      case KvType::f16: out[d] = f16_to_f32(static_cast<const uint16_t*>(base)[i]); break;
      case KvType::q8: out[d] = scale * static_cast<float>(static_cast<const int8_t*>(base)[i]); break;
    }
  }
}

float row_scale(const AttentionBatch& a, const float* scales, int64_t position, int64_t kv_head) {
  return a.kv_type == KvType::q8 ? scales[position * a.n_kv_heads + kv_head] : 1.0f;
}

}  // namespace

void key_to_f32(const AttentionBatch& a, int64_t position, int64_t kv_head, float* out) {
  element_row_to_f32(a, a.keys, row_scale(a, a.key_scales, position, kv_head),
                     [&](int64_t d) { return a.key_offset(position, kv_head, d); }, out);
}

void value_to_f32(const AttentionBatch& a, int64_t position, int64_t kv_head, float* out) {
  const int64_t row = a.kv_offset(position, kv_head);
  element_row_to_f32(a, a.values, row_scale(a, a.value_scales, position, kv_head),
                     [&](int64_t d) { return row + d; }, out);
}

const Kernels& reference_kernels() {
  static const Kernels kernels{"reference",       KvType::f32,         matmul_reference, matmul_shared_input_reference,
                               rmsnorm_reference, rope_rotate,         attention_reference,
                               swiglu_reference,  exp_weights_reference, to_f16_reference,
                               gemm_f32_reference};
  return kernels;
}

const Kernels& select_kernels(KernelChoice choice) {
  if (choice == KernelChoice::reference) return reference_kernels();
  if (const char* env = std::getenv("ORCHARD_ISA"); env && std::string_view(env) == "reference")
    return reference_kernels();
  return fast_kernels(selected_isa());
}

}  // namespace orchard
