// The trainer's fast path (see fast_model.h).
#include "train/fast_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "base/error.h"
#include "kernels/kernels.h"
#include "kernels/thread_pool.h"
#include "model/model_impl.h"
#include "model/transformer.h"
#include "tensor/dequantize.h"

namespace orchard::train {
namespace {

size_t sz(int64_t n) { return static_cast<size_t>(n); }

constexpr int kTargets = 7;  // LoraTarget q, k, v, o, gate, up, down
constexpr LoraTarget kAllTargets[kTargets] = {LoraTarget::q,    LoraTarget::k,  LoraTarget::v,   LoraTarget::o,
                                              LoraTarget::gate, LoraTarget::up, LoraTarget::down};

// A LoRA adapter of one projection: A [rank, in], B [out, rank], their gradients, scale s.
struct Adapter {
  int64_t in = 0, out = 0, rank = 0;
  float scale = 0;
  float *a = nullptr, *b = nullptr, *ga = nullptr, *gb = nullptr;
};

// A projection y = x W^T + bias (+ s x A^T B^T), W [out, in]. Gradients null where frozen.
struct Linear {
  const float* w = nullptr;
  float* dw = nullptr;
  const float* bias = nullptr;
  float* dbias = nullptr;
  const Adapter* lora = nullptr;
  int64_t in = 0, out = 0;
};

// One layer's weights as float pointers (into parameters, the mapped file, or a dequantized scratch).
struct LayerView {
  const float *attn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr, *ffn_norm = nullptr;
  float *d_attn_norm = nullptr, *d_q_norm = nullptr, *d_k_norm = nullptr, *d_ffn_norm = nullptr;
  std::array<Linear, kTargets> proj;  // indexed as kAllTargets
};

// What one layer's backward needs (N tokens). lora_t[p] = s * (input · A^T) [N, rank] of projection p.
struct LayerActs {
  std::vector<float> attn_in, q_pre, k_pre, q, k, v, lse, attn_out, x_mid, ffn_in, gate, up, hidden;
  std::array<std::vector<float>, kTargets> lora_t;
};

GemmF32 gemm(bool at, bool bt, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
             int64_t ldb, float* c, int64_t ldc, bool acc) {
  GemmF32 g;
  g.a_trans = at;
  g.b_trans = bt;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = lda;
  g.b = b;
  g.ldb = ldb;
  g.c = c;
  g.ldc = ldc;
  g.accumulate = acc;
  return g;
}

}  // namespace

struct FastModel::Impl {
  const Model::Impl& model;
  ModelConfig c;
  FastModelOptions options;
  const Kernels& kernels;
  ThreadPool pool;
  std::vector<double> rope_freq = rope_frequencies(c, model.weights.rope_freq_factors);  // [rope_dims / 2]

  // Parameter storage: values and gradients, one vector per tensor.
  std::vector<std::vector<float>> values, grads;
  std::vector<Parameter> params;

  // Full fine-tuning: pointers into the parameters.
  float *embd = nullptr, *d_embd = nullptr, *out_norm = nullptr, *d_out_norm = nullptr, *out_w = nullptr,
        *d_out_w = nullptr;
  std::vector<LayerView> full_layers;
  // LoRA: adapters[layer][target] (rank 0 where the target is not trained).
  std::vector<std::array<Adapter, kTargets>> adapters;
  std::array<std::vector<float>, kTargets> dequantized;  // a frozen layer's matrices as float32

  uint64_t peak_activations = 0, peak_logits = 0;

  // Buffers kept from batch to batch: a step allocates nothing once the shapes repeat (fresh
  // allocations of this size come from mmap and cost a page fault per 4 KiB: they were a third of
  // a step's time on the 26M-parameter benchmark shape).
  struct Scratch {
    std::vector<float> x, normed, logits, dlogits, dnormed, dx, layer_out;
    std::vector<std::vector<float>> inputs;  // each layer's input: the checkpoints
    std::vector<LayerActs> acts;
    std::vector<float> dhidden, dgate, dup, dffn_in, dattn_out, dq, dk, dv, dq_pre, dk_pre, dattn_in, lora_u;
    std::vector<std::vector<float>> attention;  // per thread: two [T, T] score buffers
  } scratch;

  Impl(const Model& m, const FastModelOptions& o)
      : model(m.impl()), c(m.impl().config), options(o), kernels(select_kernels(o.kernels)), pool(o.n_threads) {
    if (!model.weights.token_embedding.data)
      fail("training needs the model's weights mapped: load it without a memory budget");
    if (options.lora_rank > 0) make_lora();
    else make_full();
  }

  Parameter& add(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    values.emplace_back(sz(n), 0.0f);
    grads.emplace_back(sz(n), 0.0f);
    params.push_back({name, std::move(shape), {}, {}});
    return params.back();
  }
  // Spans are bound once every vector exists (emplace_back moves them while the list grows).
  void bind_spans() {
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].value = values[i];
      params[i].grad = grads[i];
    }
  }

  static void copy_tensor(const TensorRef& t, std::vector<float>& out) {
    const int64_t cols = t.row_length();
    for (int64_t r = 0; r < t.rows(); ++r) dequantize_row(t.type, t.row(r), out.data() + r * cols, cols);
  }

  void make_full() {
    const ModelWeights& w = model.weights;
    const int64_t D = c.dim, Q = c.n_heads * c.head_dim, K = c.n_kv_heads * c.head_dim, F = c.ffn_dim, V = c.n_vocab;
    struct Source {
      size_t index;
      const TensorRef* ref;
      const std::vector<float>* vec;
    };
    std::vector<Source> sources;
    const auto tensor = [&](const std::string& name, std::vector<int64_t> shape, const TensorRef* ref,
                            const std::vector<float>* vec) {
      add(name, std::move(shape));
      sources.push_back({params.size() - 1, ref, vec});
    };
    tensor("token_embd.weight", {V, D}, &w.token_embedding, nullptr);
    tensor("output_norm.weight", {D}, nullptr, &w.output_norm);
    if (!c.tied_output) tensor("output.weight", {V, D}, &w.output, nullptr);
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const LayerWeights& lw = w.layers[l];
      const std::string b = "blk." + std::to_string(l) + ".";
      tensor(b + "attn_norm.weight", {D}, nullptr, &lw.attn_norm);
      tensor(b + "attn_q.weight", {Q, D}, &lw.wq, nullptr);
      tensor(b + "attn_k.weight", {K, D}, &lw.wk, nullptr);
      tensor(b + "attn_v.weight", {K, D}, &lw.wv, nullptr);
      tensor(b + "attn_output.weight", {D, Q}, &lw.wo, nullptr);
      if (!lw.bq.empty()) tensor(b + "attn_q.bias", {Q}, nullptr, &lw.bq);
      if (!lw.bk.empty()) tensor(b + "attn_k.bias", {K}, nullptr, &lw.bk);
      if (!lw.bv.empty()) tensor(b + "attn_v.bias", {K}, nullptr, &lw.bv);
      if (!lw.q_norm.empty()) tensor(b + "attn_q_norm.weight", {c.head_dim}, nullptr, &lw.q_norm);
      if (!lw.k_norm.empty()) tensor(b + "attn_k_norm.weight", {c.head_dim}, nullptr, &lw.k_norm);
      tensor(b + "ffn_norm.weight", {D}, nullptr, &lw.ffn_norm);
      tensor(b + "ffn_gate.weight", {F, D}, &lw.w_gate, nullptr);
      tensor(b + "ffn_up.weight", {F, D}, &lw.w_up, nullptr);
      tensor(b + "ffn_down.weight", {D, F}, &lw.w_down, nullptr);
    }
    for (const Source& s : sources) {
      if (s.ref) copy_tensor(*s.ref, values[s.index]);
      else values[s.index] = *s.vec;
    }
    bind_spans();
    // Bind the views by name order, as added above.
    size_t i = 0;
    const auto next = [&](float*& v, float*& g) {
      v = values[i].data();
      g = grads[i].data();
      ++i;
    };
    next(embd, d_embd);
    next(out_norm, d_out_norm);
    if (!c.tied_output) next(out_w, d_out_w);
    else {
      out_w = embd;
      d_out_w = d_embd;
    }
    for (const LayerWeights& lw : w.layers) {
      LayerView v;
      float* value;
      float* grad;
      const auto linear = [&](LoraTarget t, int64_t in, int64_t out) {
        Linear& p = v.proj[static_cast<int>(t)];
        next(value, grad);
        p.w = value;
        p.dw = grad;
        p.in = in;
        p.out = out;
      };
      next(value, grad);
      v.attn_norm = value;
      v.d_attn_norm = grad;
      linear(LoraTarget::q, D, Q);
      linear(LoraTarget::k, D, K);
      linear(LoraTarget::v, D, K);
      linear(LoraTarget::o, Q, D);
      const auto bias = [&](LoraTarget t, bool present) {
        if (!present) return;
        next(value, grad);
        v.proj[static_cast<int>(t)].bias = value;
        v.proj[static_cast<int>(t)].dbias = grad;
      };
      bias(LoraTarget::q, !lw.bq.empty());
      bias(LoraTarget::k, !lw.bk.empty());
      bias(LoraTarget::v, !lw.bv.empty());
      if (!lw.q_norm.empty()) {
        next(value, grad);
        v.q_norm = value;
        v.d_q_norm = grad;
      }
      if (!lw.k_norm.empty()) {
        next(value, grad);
        v.k_norm = value;
        v.d_k_norm = grad;
      }
      next(value, grad);
      v.ffn_norm = value;
      v.d_ffn_norm = grad;
      linear(LoraTarget::gate, D, F);
      linear(LoraTarget::up, D, F);
      linear(LoraTarget::down, F, D);
      full_layers.push_back(v);
    }
  }

  static std::pair<int64_t, int64_t> in_out(const ModelConfig& c, LoraTarget t) {
    const int64_t D = c.dim, Q = c.n_heads * c.head_dim, K = c.n_kv_heads * c.head_dim, F = c.ffn_dim;
    switch (t) {
      case LoraTarget::q: return {D, Q};
      case LoraTarget::k:
      case LoraTarget::v: return {D, K};
      case LoraTarget::o: return {Q, D};
      case LoraTarget::gate:
      case LoraTarget::up: return {D, F};
      case LoraTarget::down: return {F, D};
    }
    return {0, 0};
  }

  void make_lora() {
    const int64_t r = options.lora_rank;
    if (!(options.lora_alpha > 0)) fail("LoRA: alpha must be above 0, got ", options.lora_alpha);
    if (options.lora_targets.empty()) fail("LoRA: no target projections");
    std::array<bool, kTargets> chosen{};
    for (LoraTarget t : options.lora_targets) {
      if (chosen[static_cast<int>(t)]) fail("LoRA: the target ", lora_target_gguf(t), " is named twice");
      chosen[static_cast<int>(t)] = true;
    }
    std::mt19937_64 rng(options.seed);
    adapters.resize(sz(c.n_layers));
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (LoraTarget t : options.lora_targets) {
        const auto [in, out] = in_out(c, t);
        if (r > std::min(in, out)) fail("LoRA: rank ", r, " is above the size of ", lora_target_gguf(t), " (", out, " x ", in, ")");
        const std::string name = "blk." + std::to_string(l) + "." + lora_target_gguf(t) + ".weight";
        add(name + ".lora_a", {r, in});
        // PEFT's default: A from Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
        std::uniform_real_distribution<double> uniform(-1.0 / std::sqrt(static_cast<double>(in)),
                                                       1.0 / std::sqrt(static_cast<double>(in)));
        for (float& a : values.back()) a = static_cast<float>(uniform(rng));
        add(name + ".lora_b", {out, r});
      }
    bind_spans();
    size_t i = 0;
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (LoraTarget t : options.lora_targets) {
        const auto [in, out] = in_out(c, t);
        Adapter& a = adapters[sz(l)][static_cast<int>(t)];
        a.in = in;
        a.out = out;
        a.rank = r;
        a.scale = static_cast<float>(options.lora_alpha / static_cast<double>(r));
        a.a = values[i].data();
        a.ga = grads[i].data();
        a.b = values[i + 1].data();
        a.gb = grads[i + 1].data();
        i += 2;
      }
  }

  // Layer l's weights: the parameters (full fine-tuning) or the frozen base, whose matrices are
  // read in place when float32 and dequantized into `dequantized` otherwise.
  LayerView layer(int64_t l) {
    if (!full_layers.empty()) return full_layers[sz(l)];
    const LayerWeights& lw = model.weights.layers[sz(l)];
    LayerView v;
    v.attn_norm = lw.attn_norm.data();
    v.ffn_norm = lw.ffn_norm.data();
    v.q_norm = lw.q_norm.empty() ? nullptr : lw.q_norm.data();
    v.k_norm = lw.k_norm.empty() ? nullptr : lw.k_norm.data();
    const TensorRef* refs[kTargets] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down};
    for (int p = 0; p < kTargets; ++p) {
      const TensorRef& t = *refs[p];
      Linear& lin = v.proj[sz(p)];
      lin.in = t.row_length();
      lin.out = t.rows();
      if (t.type == DType::F32) {
        lin.w = reinterpret_cast<const float*>(t.data);
      } else {
        std::vector<float>& buffer = dequantized[sz(p)];
        buffer.resize(sz(lin.in * lin.out));
        pool.parallel_for(lin.out, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) dequantize_row(t.type, t.row(r), buffer.data() + r * lin.in, lin.in);
        });
        lin.w = buffer.data();
      }
      const Adapter& a = adapters[sz(l)][sz(p)];
      if (a.rank > 0) lin.lora = &a;
    }
    v.proj[0].bias = lw.bq.empty() ? nullptr : lw.bq.data();
    v.proj[1].bias = lw.bk.empty() ? nullptr : lw.bk.data();
    v.proj[2].bias = lw.bv.empty() ? nullptr : lw.bv.data();
    return v;
  }

  void run(const GemmF32& g) { kernels.gemm_f32(g, &pool); }

  // ---- layers -------------------------------------------------------------------------------------

  // y[N, out] = x[N, in] W^T + bias + lora_t B^T, lora_t = s x A^T [N, rank] (kept for the backward).
  void linear_forward(const Linear& p, const float* x, int64_t N, float* y, std::vector<float>& lora_t) {
    run(gemm(false, true, N, p.out, p.in, x, p.in, p.w, p.in, y, p.out, false));
    if (p.bias)
      pool.parallel_for(N, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
          for (int64_t o = 0; o < p.out; ++o) y[t * p.out + o] += p.bias[o];
      });
    if (const Adapter* a = p.lora) {
      lora_t.resize(sz(N * a->rank));
      run(gemm(false, true, N, a->rank, p.in, x, p.in, a->a, p.in, lora_t.data(), a->rank, false));
      for (float& v : lora_t) v *= a->scale;
      run(gemm(false, true, N, p.out, a->rank, lora_t.data(), a->rank, a->b, a->rank, y, p.out, true));
    }
  }

  // From dy [N, out]: dx [N, in] += dy W (+ the adapter's path), dW += dy^T x, dbias += sum dy,
  // dB += dy^T lora_t, dA += (s dy B)^T x.
  void linear_backward(const Linear& p, const float* x, const float* dy, int64_t N, float* dx,
                       const std::vector<float>& lora_t) {
    run(gemm(false, false, N, p.in, p.out, dy, p.out, p.w, p.in, dx, p.in, true));
    if (p.dw) run(gemm(true, false, p.out, p.in, N, dy, p.out, x, p.in, p.dw, p.in, true));
    if (p.dbias)
      for (int64_t t = 0; t < N; ++t)
        for (int64_t o = 0; o < p.out; ++o) p.dbias[o] += dy[t * p.out + o];
    if (const Adapter* a = p.lora) {
      run(gemm(true, false, p.out, a->rank, N, dy, p.out, lora_t.data(), a->rank, a->gb, a->rank, true));
      std::vector<float>& u = scratch.lora_u;
      u.resize(sz(N * a->rank));
      run(gemm(false, false, N, a->rank, p.out, dy, p.out, a->b, a->rank, u.data(), a->rank, false));
      for (float& v : u) v *= a->scale;
      run(gemm(true, false, a->rank, p.in, N, u.data(), a->rank, x, p.in, a->ga, p.in, true));
      run(gemm(false, false, N, p.in, a->rank, u.data(), a->rank, a->a, p.in, dx, p.in, true));
    }
  }

  // Rows of n: out = x * w / sqrt(mean(x^2) + eps), the mean in double.
  void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t n, float* out) {
    const double eps = c.rms_norm_eps;
    pool.parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* xr = x + r * n;
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float rstd = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
        for (int64_t i = 0; i < n; ++i) out[r * n + i] = xr[i] * rstd * w[i];
      }
    });
  }

  // dx += r (dout * w) - x r^3 / n * sum(dout * w * x);  dw += sum_rows dout * x * r (null: frozen).
  void rmsnorm_backward(const float* x, const float* w, const float* dout, int64_t rows, int64_t n, float* dx,
                        float* dw) {
    const double eps = c.rms_norm_eps;
    const int threads = pool.size();
    std::vector<double> partial(dw ? sz(threads * n) : 0, 0.0);
    pool.run([&](int thread, int n_threads) {
      const int64_t b = rows * thread / n_threads, e = rows * (thread + 1) / n_threads;
      double* dw_part = dw ? partial.data() + thread * n : nullptr;
      for (int64_t r = b; r < e; ++r) {
        const float* xr = x + r * n;
        const float* dr = dout + r * n;
        double ss = 0, dot = 0;
        for (int64_t i = 0; i < n; ++i) {
          ss += static_cast<double>(xr[i]) * xr[i];
          dot += static_cast<double>(dr[i]) * w[i] * xr[i];
        }
        const double rstd = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
        const double k = rstd * rstd * rstd * dot / static_cast<double>(n);
        for (int64_t i = 0; i < n; ++i) {
          dx[r * n + i] += static_cast<float>(rstd * dr[i] * w[i] - xr[i] * k);
          if (dw_part) dw_part[i] += static_cast<double>(dr[i]) * xr[i] * rstd;
        }
      }
    });
    if (dw)
      for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int t = 0; t < threads; ++t) s += partial[sz(t * n + i)];
        dw[i] += static_cast<float>(s);
      }
  }

  struct Batch {
    std::vector<int64_t> start, length;  // per sequence, in tokens
    int64_t N = 0, T_max = 0;
    std::vector<float> cos, sin, neg_sin;  // [N, rope_dims / 2], by each token's position
  };

  Batch make_batch(std::span<const std::vector<int32_t>> sequences) {
    Batch b;
    const int64_t pairs = c.rope_dims / 2;
    for (const std::vector<int32_t>& s : sequences) {
      if (s.empty()) fail("training batch: sequence ", b.start.size(), " has no tokens");
      b.start.push_back(b.N);
      b.length.push_back(static_cast<int64_t>(s.size()));
      b.N += static_cast<int64_t>(s.size());
      b.T_max = std::max<int64_t>(b.T_max, static_cast<int64_t>(s.size()));
      for (size_t t = 0; t < s.size(); ++t) {
        if (s[t] < 0 || s[t] >= c.n_vocab)
          fail("training batch: token ", s[t], " at position ", t, " of sequence ", b.start.size() - 1,
               " is outside the vocabulary of ", c.n_vocab);
        for (int64_t i = 0; i < pairs; ++i) {
          const double angle = static_cast<double>(t) * rope_freq[sz(i)];
          b.cos.push_back(static_cast<float>(std::cos(angle)));
          b.sin.push_back(static_cast<float>(std::sin(angle)));
          b.neg_sin.push_back(-static_cast<float>(std::sin(angle)));
        }
      }
    }
    if (b.N == 0) fail("training batch: no sequences");
    return b;
  }

  void attention_buffers(int64_t T_max) {
    scratch.attention.resize(sz(2 * pool.size()));
    for (std::vector<float>& b : scratch.attention) b.resize(sz(T_max * T_max));
  }

  // Causal GQA attention of each sequence: out [N, Q], lse [H, N] (each row's log-sum-exp of its
  // scaled scores). Work per (sequence, head), each thread with its own [T, T] scores.
  void attention_forward(const Batch& batch, const float* q, const float* k, const float* v, float* out, float* lse) {
    const int64_t H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim, Q = H * hd, K = KV * hd, N = batch.N;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    const int64_t tasks = static_cast<int64_t>(batch.start.size()) * H;
    attention_buffers(batch.T_max);
    pool.run([&](int thread, int n_threads) {
      std::vector<float>& scores = scratch.attention[sz(2 * thread)];
      for (int64_t task = tasks * thread / n_threads; task < tasks * (thread + 1) / n_threads; ++task) {
        const int64_t s = task / H, h = task % H, kvh = h / (H / KV), T = batch.length[sz(s)], t0 = batch.start[sz(s)];
        const float* qh = q + t0 * Q + h * hd;
        const float* kh = k + t0 * K + kvh * hd;
        const float* vh = v + t0 * K + kvh * hd;
        kernels.gemm_f32(gemm(false, true, T, T, hd, qh, Q, kh, K, scores.data(), T, false), nullptr);
        for (int64_t t = 0; t < T; ++t) {
          float* row = scores.data() + t * T;
          float max = -INFINITY;
          for (int64_t j = 0; j <= t; ++j) max = std::max(max, row[j] * scale);
          double sum = 0;
          for (int64_t j = 0; j <= t; ++j) {
            row[j] = std::exp(row[j] * scale - max);
            sum += row[j];
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j <= t; ++j) row[j] *= inv;
          for (int64_t j = t + 1; j < T; ++j) row[j] = 0;
          lse[h * N + t0 + t] = max + static_cast<float>(std::log(sum));
        }
        kernels.gemm_f32(gemm(false, false, T, hd, T, scores.data(), T, vh, K, out + t0 * Q + h * hd, Q, false),
                         nullptr);
      }
    });
  }

  // From dout [N, Q]: dq [N, Q] (written), dk, dv [N, K] (written). The probabilities are
  // recomputed from q, k and lse; per (sequence, KV head) so that the query heads that share a KV
  // head add into its dk, dv on one thread.
  void attention_backward(const Batch& batch, const float* q, const float* k, const float* v, const float* out,
                          const float* lse, const float* dout, float* dq, float* dk, float* dv) {
    const int64_t H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim, Q = H * hd, K = KV * hd, N = batch.N,
                  group = H / KV;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    std::fill(dk, dk + N * K, 0.0f);
    std::fill(dv, dv + N * K, 0.0f);
    const int64_t tasks = static_cast<int64_t>(batch.start.size()) * KV;
    attention_buffers(batch.T_max);
    pool.run([&](int thread, int n_threads) {
      std::vector<float>& p = scratch.attention[sz(2 * thread)];
      std::vector<float>& dp = scratch.attention[sz(2 * thread + 1)];
      for (int64_t task = tasks * thread / n_threads; task < tasks * (thread + 1) / n_threads; ++task) {
        const int64_t s = task / KV, kvh = task % KV, T = batch.length[sz(s)], t0 = batch.start[sz(s)];
        const float* kh = k + t0 * K + kvh * hd;
        const float* vh = v + t0 * K + kvh * hd;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          const float* qh = q + t0 * Q + h * hd;
          const float* doh = dout + t0 * Q + h * hd;
          const float* oh = out + t0 * Q + h * hd;
          kernels.gemm_f32(gemm(false, true, T, T, hd, qh, Q, kh, K, p.data(), T, false), nullptr);
          kernels.gemm_f32(gemm(false, true, T, T, hd, doh, Q, vh, K, dp.data(), T, false), nullptr);
          for (int64_t t = 0; t < T; ++t) {
            float* pr = p.data() + t * T;
            float* dr = dp.data() + t * T;
            const float l = lse[h * N + t0 + t];
            double d = 0;  // sum_j p_tj dp_tj = dout_t · out_t
            for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(doh[t * Q + i]) * oh[t * Q + i];
            for (int64_t j = 0; j <= t; ++j) {
              pr[j] = std::exp(pr[j] * scale - l);
              dr[j] = pr[j] * (dr[j] - static_cast<float>(d)) * scale;  // dS, times scale
            }
            for (int64_t j = t + 1; j < T; ++j) pr[j] = dr[j] = 0;
          }
          kernels.gemm_f32(gemm(false, false, T, hd, T, dp.data(), T, kh, K, dq + t0 * Q + h * hd, Q, false), nullptr);
          kernels.gemm_f32(gemm(true, false, T, hd, T, dp.data(), T, qh, Q, dk + t0 * K + kvh * hd, K, true), nullptr);
          kernels.gemm_f32(gemm(true, false, T, hd, T, p.data(), T, doh, Q, dv + t0 * K + kvh * hd, K, true), nullptr);
        }
      }
    });
  }

  // RoPE (and q/k norm before it) on every head of q_pre/k_pre into q/k.
  void qk_forward(const Batch& batch, const LayerView& w, LayerActs& a) {
    const int64_t H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim, N = batch.N, pairs = c.rope_dims / 2;
    a.q.resize(sz(N * H * hd));
    a.k.resize(sz(N * KV * hd));
    if (w.q_norm) rmsnorm_forward(a.q_pre.data(), w.q_norm, N * H, hd, a.q.data());
    else std::copy(a.q_pre.begin(), a.q_pre.end(), a.q.begin());
    if (w.k_norm) rmsnorm_forward(a.k_pre.data(), w.k_norm, N * KV, hd, a.k.data());
    else std::copy(a.k_pre.begin(), a.k_pre.end(), a.k.begin());
    pool.parallel_for(N, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        for (int64_t h = 0; h < H; ++h)
          kernels.rope(a.q.data() + (t * H + h) * hd, c.rope_dims, c.rope_style, &batch.cos[sz(t * pairs)],
                       &batch.sin[sz(t * pairs)]);
        for (int64_t h = 0; h < KV; ++h)
          kernels.rope(a.k.data() + (t * KV + h) * hd, c.rope_dims, c.rope_style, &batch.cos[sz(t * pairs)],
                       &batch.sin[sz(t * pairs)]);
      }
    });
  }

  // One layer forward: x [N, D] in, x_out [N, D] out, activations into a.
  void layer_forward(const Batch& batch, const LayerView& w, const float* x, LayerActs& a, float* x_out) {
    const int64_t N = batch.N, D = c.dim, Q = c.n_heads * c.head_dim, K = c.n_kv_heads * c.head_dim, F = c.ffn_dim;
    a.attn_in.resize(sz(N * D));
    rmsnorm_forward(x, w.attn_norm, N, D, a.attn_in.data());
    a.q_pre.resize(sz(N * Q));
    a.k_pre.resize(sz(N * K));
    a.v.resize(sz(N * K));
    linear_forward(w.proj[0], a.attn_in.data(), N, a.q_pre.data(), a.lora_t[0]);
    linear_forward(w.proj[1], a.attn_in.data(), N, a.k_pre.data(), a.lora_t[1]);
    linear_forward(w.proj[2], a.attn_in.data(), N, a.v.data(), a.lora_t[2]);
    qk_forward(batch, w, a);
    a.attn_out.resize(sz(N * Q));
    a.lse.resize(sz(c.n_heads * N));
    attention_forward(batch, a.q.data(), a.k.data(), a.v.data(), a.attn_out.data(), a.lse.data());
    a.x_mid.resize(sz(N * D));
    linear_forward(w.proj[3], a.attn_out.data(), N, a.x_mid.data(), a.lora_t[3]);
    for (int64_t i = 0; i < N * D; ++i) a.x_mid[sz(i)] += x[i];
    a.ffn_in.resize(sz(N * D));
    rmsnorm_forward(a.x_mid.data(), w.ffn_norm, N, D, a.ffn_in.data());
    a.gate.resize(sz(N * F));
    a.up.resize(sz(N * F));
    linear_forward(w.proj[4], a.ffn_in.data(), N, a.gate.data(), a.lora_t[4]);
    linear_forward(w.proj[5], a.ffn_in.data(), N, a.up.data(), a.lora_t[5]);
    a.hidden = a.gate;
    kernels.swiglu(a.hidden.data(), a.up.data(), N * F, pool);
    linear_forward(w.proj[6], a.hidden.data(), N, x_out, a.lora_t[6]);
    for (int64_t i = 0; i < N * D; ++i) x_out[i] += a.x_mid[sz(i)];
  }

  // One layer backward: dx [N, D] holds d(layer output) and becomes d(layer input); x is the input.
  void layer_backward(const Batch& batch, const LayerView& w, const float* x, const LayerActs& a, float* dx) {
    const int64_t N = batch.N, D = c.dim, H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim, Q = H * hd,
                  K = KV * hd, F = c.ffn_dim, pairs = c.rope_dims / 2;
    // Feed-forward: x_out = x_mid + down(silu(gate) * up), gate/up from ffn_in = rmsnorm(x_mid).
    Scratch& b = scratch;
    std::vector<float>& dhidden = b.dhidden;
    dhidden.assign(sz(N * F), 0.0f);
    linear_backward(w.proj[6], a.hidden.data(), dx, N, dhidden.data(), a.lora_t[6]);
    std::vector<float>& dgate = b.dgate;
    std::vector<float>& dup = b.dup;
    dgate.resize(sz(N * F));
    dup.resize(sz(N * F));
    pool.parallel_for(N * F, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float g = a.gate[sz(i)], sig = 1.0f / (1.0f + std::exp(-g));
        dup[sz(i)] = dhidden[sz(i)] * g * sig;
        dgate[sz(i)] = dhidden[sz(i)] * a.up[sz(i)] * sig * (1.0f + g * (1.0f - sig));
      }
    });
    std::vector<float>& dffn_in = b.dffn_in;
    dffn_in.assign(sz(N * D), 0.0f);
    linear_backward(w.proj[4], a.ffn_in.data(), dgate.data(), N, dffn_in.data(), a.lora_t[4]);
    linear_backward(w.proj[5], a.ffn_in.data(), dup.data(), N, dffn_in.data(), a.lora_t[5]);
    rmsnorm_backward(a.x_mid.data(), w.ffn_norm, dffn_in.data(), N, D, dx, w.d_ffn_norm);
    // Attention: x_mid = x + o(attention(rope(norm(q)), rope(norm(k)), v)).
    std::vector<float>& dattn_out = b.dattn_out;
    dattn_out.assign(sz(N * Q), 0.0f);
    linear_backward(w.proj[3], a.attn_out.data(), dx, N, dattn_out.data(), a.lora_t[3]);
    std::vector<float>& dq = b.dq;
    std::vector<float>& dk = b.dk;
    std::vector<float>& dv = b.dv;
    dq.resize(sz(N * Q));
    dk.resize(sz(N * K));
    dv.resize(sz(N * K));
    attention_backward(batch, a.q.data(), a.k.data(), a.v.data(), a.attn_out.data(), a.lse.data(), dattn_out.data(),
                       dq.data(), dk.data(), dv.data());
    pool.parallel_for(N, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        for (int64_t h = 0; h < H; ++h)
          kernels.rope(dq.data() + (t * H + h) * hd, c.rope_dims, c.rope_style, &batch.cos[sz(t * pairs)],
                       &batch.neg_sin[sz(t * pairs)]);
        for (int64_t h = 0; h < KV; ++h)
          kernels.rope(dk.data() + (t * KV + h) * hd, c.rope_dims, c.rope_style, &batch.cos[sz(t * pairs)],
                       &batch.neg_sin[sz(t * pairs)]);
      }
    });
    std::vector<float>& dq_pre = b.dq_pre;
    std::vector<float>& dk_pre = b.dk_pre;
    if (w.q_norm) {
      dq_pre.assign(sz(N * Q), 0.0f);
      rmsnorm_backward(a.q_pre.data(), w.q_norm, dq.data(), N * H, hd, dq_pre.data(), w.d_q_norm);
    }
    if (w.k_norm) {
      dk_pre.assign(sz(N * K), 0.0f);
      rmsnorm_backward(a.k_pre.data(), w.k_norm, dk.data(), N * KV, hd, dk_pre.data(), w.d_k_norm);
    }
    std::vector<float>& dattn_in = b.dattn_in;
    dattn_in.assign(sz(N * D), 0.0f);
    linear_backward(w.proj[0], a.attn_in.data(), w.q_norm ? dq_pre.data() : dq.data(), N, dattn_in.data(), a.lora_t[0]);
    linear_backward(w.proj[1], a.attn_in.data(), w.k_norm ? dk_pre.data() : dk.data(), N, dattn_in.data(), a.lora_t[1]);
    linear_backward(w.proj[2], a.attn_in.data(), dv.data(), N, dattn_in.data(), a.lora_t[2]);
    rmsnorm_backward(x, w.attn_norm, dattn_in.data(), N, D, dx, w.d_attn_norm);
  }

  // The output matrix [V, D] in row chunks: float32 in place, or dequantized chunk by chunk.
  template <typename Fn>
  void for_output_chunks(Fn&& fn) {
    const int64_t V = c.n_vocab, D = c.dim;
    if (out_w) return fn(int64_t{0}, V, static_cast<const float*>(out_w));
    const TensorRef& t = c.tied_output ? model.weights.token_embedding : model.weights.output;
    if (t.type == DType::F32) return fn(int64_t{0}, V, reinterpret_cast<const float*>(t.data));
    constexpr int64_t kChunk = 8192;
    std::vector<float> chunk(sz(std::min(kChunk, V) * D));
    for (int64_t first = 0; first < V; first += kChunk) {
      const int64_t rows = std::min(kChunk, V - first);
      pool.parallel_for(rows, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) dequantize_row(t.type, t.row(first + r), chunk.data() + r * D, D);
      });
      fn(first, rows, static_cast<const float*>(chunk.data()));
    }
  }

  double run_batch(std::span<const std::vector<int32_t>> sequences, const SequenceLoss& loss, bool backward) {
    const Batch batch = make_batch(sequences);
    const int64_t N = batch.N, D = c.dim, V = c.n_vocab, L = c.n_layers;
    Scratch& b = scratch;
    // Embedding rows.
    std::vector<float>& x = b.x;
    x.resize(sz(N * D));
    {
      int64_t t = 0;
      const TensorRef& e = model.weights.token_embedding;
      for (const std::vector<int32_t>& s : sequences)
        for (int32_t id : s) {
          if (embd) std::copy_n(embd + static_cast<int64_t>(id) * D, D, x.data() + t * D);
          else dequantize_row(e.type, e.row(id), x.data() + t * D, D);
          ++t;
        }
    }
    // Layers: the inputs of each kept (they are the checkpoints), the activations of each unless
    // recomputing (or not going back at all).
    const bool one_layer_of_acts = options.recompute || !backward;
    b.inputs.resize(sz(L));
    b.acts.resize(one_layer_of_acts ? 1 : sz(L));
    const auto count = [](const LayerActs& a) {
      uint64_t n = 0;
      for (const auto* v : {&a.attn_in, &a.q_pre, &a.k_pre, &a.q, &a.k, &a.v, &a.lse, &a.attn_out, &a.x_mid,
                            &a.ffn_in, &a.gate, &a.up, &a.hidden})
        n += v->size() * sizeof(float);
      for (const auto& t : a.lora_t) n += t.size() * sizeof(float);
      return n;
    };
    for (int64_t l = 0; l < L; ++l) {
      std::vector<float>& input = b.inputs[sz(l)];
      input.assign(x.begin(), x.end());
      layer_forward(batch, layer(l), input.data(), b.acts[one_layer_of_acts ? 0 : sz(l)], x.data());
    }
    uint64_t activation_bytes = static_cast<uint64_t>(L) * N * D * sizeof(float);
    for (const LayerActs& a : b.acts) activation_bytes += count(a);
    // Output.
    std::vector<float>& normed = b.normed;
    normed.resize(sz(N * D));
    const float* final_norm = out_norm ? out_norm : model.weights.output_norm.data();
    rmsnorm_forward(x.data(), final_norm, N, D, normed.data());
    b.logits.resize(sz(N * V));
    b.dlogits.assign(sz(N * V), 0.0f);
    const uint64_t logit_bytes = 2 * static_cast<uint64_t>(N) * V * sizeof(float);
    peak_activations = std::max(peak_activations, activation_bytes + logit_bytes);
    peak_logits = std::max(peak_logits, logit_bytes);
    for_output_chunks([&](int64_t first, int64_t rows, const float* w) {
      run(gemm(false, true, N, rows, D, normed.data(), D, w, D, b.logits.data() + first, V, false));
    });
    double total = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
      const size_t offset = sz(batch.start[s] * V), n = sz(batch.length[s] * V);
      total += loss(s, std::span<const float>(b.logits).subspan(offset, n), std::span<float>(b.dlogits).subspan(offset, n));
    }
    // Large vocabularies: logits that outweigh the page faults of allocating them again are given
    // back as soon as they are spent, so that they never sit beside the layers' backward (Qwen's
    // 151,936 columns at 512 tokens: 297 MiB each; the LoRA run's peak RSS 1523 -> 1334 MiB).
    constexpr uint64_t kKeptLogitBytes = 64ull << 20;
    const auto release = [](std::vector<float>& v) { std::vector<float>().swap(v); };
    if (logit_bytes / 2 > kKeptLogitBytes) release(b.logits);
    if (!backward) return total;

    // Back through the output: logits = normed · W^T, normed = rmsnorm(x).
    std::vector<float>& dnormed = b.dnormed;
    dnormed.assign(sz(N * D), 0.0f);
    for_output_chunks([&](int64_t first, int64_t rows, const float* w) {
      run(gemm(false, false, N, D, rows, b.dlogits.data() + first, V, w, D, dnormed.data(), D, true));
    });
    if (d_out_w) run(gemm(true, false, V, D, N, b.dlogits.data(), V, normed.data(), D, d_out_w, D, true));
    if (logit_bytes / 2 > kKeptLogitBytes) release(b.dlogits);
    std::vector<float>& dx = b.dx;
    dx.assign(sz(N * D), 0.0f);
    rmsnorm_backward(x.data(), final_norm, dnormed.data(), N, D, dx.data(), d_out_norm);
    b.layer_out.resize(options.recompute ? sz(N * D) : 0);
    for (int64_t l = L; l-- > 0;) {
      const LayerView w = layer(l);
      const float* input = b.inputs[sz(l)].data();
      if (options.recompute) layer_forward(batch, w, input, b.acts[0], b.layer_out.data());
      layer_backward(batch, w, input, b.acts[options.recompute ? 0 : sz(l)], dx.data());
    }
    if (d_embd) {
      int64_t t = 0;
      for (const std::vector<int32_t>& s : sequences)
        for (int32_t id : s) {
          float* row = d_embd + static_cast<int64_t>(id) * D;
          for (int64_t i = 0; i < D; ++i) row[i] += dx[sz(t * D + i)];
          ++t;
        }
    }
    return total;
  }
};

FastModel::FastModel(const Model& model, const FastModelOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {}
FastModel::~FastModel() = default;

const ModelConfig& FastModel::config() const { return impl_->c; }
bool FastModel::is_lora() const { return impl_->options.lora_rank > 0; }
std::span<Parameter> FastModel::parameters() { return impl_->params; }

void FastModel::zero_gradients() {
  for (std::vector<float>& g : impl_->grads) std::fill(g.begin(), g.end(), 0.0f);
}

double FastModel::loss_gradients(std::span<const std::vector<int32_t>> sequences, const SequenceLoss& loss) {
  return impl_->run_batch(sequences, loss, true);
}

double FastModel::loss_only(std::span<const std::vector<int32_t>> sequences, const SequenceLoss& loss) {
  return impl_->run_batch(sequences, loss, false);
}

Lora FastModel::lora() const {
  if (!is_lora()) fail("the model is trained in full, not with LoRA adapters");
  Lora out;
  out.config = {.rank = impl_->options.lora_rank, .alpha = impl_->options.lora_alpha, .targets = impl_->options.lora_targets};
  for (int64_t l = 0; l < impl_->c.n_layers; ++l)
    for (LoraTarget t : impl_->options.lora_targets) {
      const Adapter& a = impl_->adapters[sz(l)][static_cast<int>(t)];
      out.adapters.push_back({.layer = l, .target = t, .in = a.in, .out = a.out,
                              .a = std::vector<double>(a.a, a.a + a.rank * a.in),
                              .b = std::vector<double>(a.b, a.b + a.out * a.rank)});
    }
  return out;
}

void FastModel::set_lora(const Lora& lora) {
  if (!is_lora()) fail("the model is trained in full, not with LoRA adapters");
  const FastModelOptions& o = impl_->options;
  if (lora.config.rank != o.lora_rank || lora.config.targets != o.lora_targets ||
      lora.adapters.size() != sz(impl_->c.n_layers) * o.lora_targets.size())
    fail("LoRA adapters of rank ", lora.config.rank, " on ", lora.config.targets.size(), " targets do not fit a model trained with rank ",
         o.lora_rank, " on ", o.lora_targets.size());
  for (const LoraAdapter& in : lora.adapters) {
    if (in.layer < 0 || in.layer >= impl_->c.n_layers) fail("LoRA adapter for layer ", in.layer, " is out of range");
    const Adapter& a = impl_->adapters[sz(in.layer)][static_cast<int>(in.target)];
    if (a.rank == 0 || in.a.size() != sz(a.rank * a.in) || in.b.size() != sz(a.out * a.rank))
      fail("LoRA adapter blk.", in.layer, ".", lora_target_gguf(in.target), " has the wrong shape");
    std::transform(in.a.begin(), in.a.end(), a.a, [](double v) { return static_cast<float>(v); });
    std::transform(in.b.begin(), in.b.end(), a.b, [](double v) { return static_cast<float>(v); });
  }
}

uint64_t FastModel::parameter_bytes() const {
  uint64_t n = 0;
  for (const std::vector<float>& v : impl_->values) n += 2 * v.size() * sizeof(float);
  return n;
}

uint64_t FastModel::peak_activation_bytes() const { return impl_->peak_activations; }
uint64_t FastModel::peak_logit_bytes() const { return impl_->peak_logits; }

}  // namespace orchard::train
