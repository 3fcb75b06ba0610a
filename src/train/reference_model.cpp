// The reference model's forward and backward pass (see reference_model.h).
#include "train/reference_model.h"

#include <cmath>

#include "base/error.h"
#include "model/model_impl.h"
#include "model/transformer.h"
#include "tensor/dequantize.h"
#include "train/loss.h"
#include "train/reference_layers.h"

namespace orchard::train {
namespace {

// The tensor as doubles, row by row (a quantized row is decoded whole), in its stored layout.
std::vector<double> to_doubles(const TensorRef& t) {
  const int64_t cols = t.row_length(), rows = t.rows();
  std::vector<double> out(static_cast<size_t>(rows * cols));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(t.type, t.row(r), row.data(), cols);
    for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(r * cols + c)] = row[static_cast<size_t>(c)];
  }
  return out;
}

std::vector<double> to_doubles(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<double> zeros(const std::vector<double>& v) { return std::vector<double>(v.size(), 0.0); }

const double* or_null(const std::vector<double>& v) { return v.empty() ? nullptr : v.data(); }
double* or_null(std::vector<double>& v) { return v.empty() ? nullptr : v.data(); }

// Double copies of a bound model's weights.
ReferenceModel reference_model(const Model::Impl& model) {
  ReferenceModel m;
  m.config = model.config;
  m.rope_freq = rope_frequencies(model.config, model.weights.rope_freq_factors);
  const ModelWeights& w = model.weights;
  m.params.token_embd = to_doubles(w.token_embedding);
  m.params.output_norm = to_doubles(w.output_norm);
  if (!model.config.tied_output) m.params.output = to_doubles(w.output);
  for (const LayerWeights& l : w.layers) {
    ReferenceLayer r;
    r.attn_norm = to_doubles(l.attn_norm);
    r.wq = to_doubles(l.wq);
    r.wk = to_doubles(l.wk);
    r.wv = to_doubles(l.wv);
    r.wo = to_doubles(l.wo);
    r.bq = to_doubles(l.bq);
    r.bk = to_doubles(l.bk);
    r.bv = to_doubles(l.bv);
    r.q_norm = to_doubles(l.q_norm);
    r.k_norm = to_doubles(l.k_norm);
    r.ffn_norm = to_doubles(l.ffn_norm);
    r.w_gate = to_doubles(l.w_gate);
    r.w_up = to_doubles(l.w_up);
    r.w_down = to_doubles(l.w_down);
    m.params.layers.push_back(std::move(r));
  }
  return m;
}

}  // namespace

ReferenceModel load_reference_model(const std::string& path) { return reference_model(*read_model(path)); }

ReferenceParams zeros_like(const ReferenceParams& p) {
  ReferenceParams z;
  z.token_embd = zeros(p.token_embd);
  z.output_norm = zeros(p.output_norm);
  z.output = zeros(p.output);
  for (const ReferenceLayer& l : p.layers) {
    ReferenceLayer r;
    r.attn_norm = zeros(l.attn_norm);
    r.wq = zeros(l.wq);
    r.wk = zeros(l.wk);
    r.wv = zeros(l.wv);
    r.wo = zeros(l.wo);
    r.bq = zeros(l.bq);
    r.bk = zeros(l.bk);
    r.bv = zeros(l.bv);
    r.q_norm = zeros(l.q_norm);
    r.k_norm = zeros(l.k_norm);
    r.ffn_norm = zeros(l.ffn_norm);
    r.w_gate = zeros(l.w_gate);
    r.w_up = zeros(l.w_up);
    r.w_down = zeros(l.w_down);
    z.layers.push_back(std::move(r));
  }
  return z;
}

std::vector<NamedTensor> named_tensors(ReferenceParams& p, const ModelConfig& c) {
  const int64_t D = c.dim, Q = c.n_heads * c.head_dim, K = c.n_kv_heads * c.head_dim, F = c.ffn_dim, V = c.n_vocab;
  std::vector<NamedTensor> out;
  out.push_back({"token_embd.weight", {V, D}, &p.token_embd});
  out.push_back({"output_norm.weight", {D}, &p.output_norm});
  if (!p.output.empty()) out.push_back({"output.weight", {V, D}, &p.output});
  for (size_t l = 0; l < p.layers.size(); ++l) {
    ReferenceLayer& r = p.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    out.push_back({b + "attn_norm.weight", {D}, &r.attn_norm});
    out.push_back({b + "attn_q.weight", {Q, D}, &r.wq});
    out.push_back({b + "attn_k.weight", {K, D}, &r.wk});
    out.push_back({b + "attn_v.weight", {K, D}, &r.wv});
    out.push_back({b + "attn_output.weight", {D, Q}, &r.wo});
    if (!r.bq.empty()) out.push_back({b + "attn_q.bias", {Q}, &r.bq});
    if (!r.bk.empty()) out.push_back({b + "attn_k.bias", {K}, &r.bk});
    if (!r.bv.empty()) out.push_back({b + "attn_v.bias", {K}, &r.bv});
    if (!r.q_norm.empty()) out.push_back({b + "attn_q_norm.weight", {c.head_dim}, &r.q_norm});
    if (!r.k_norm.empty()) out.push_back({b + "attn_k_norm.weight", {c.head_dim}, &r.k_norm});
    out.push_back({b + "ffn_norm.weight", {D}, &r.ffn_norm});
    out.push_back({b + "ffn_gate.weight", {F, D}, &r.w_gate});
    out.push_back({b + "ffn_up.weight", {F, D}, &r.w_up});
    out.push_back({b + "ffn_down.weight", {D, F}, &r.w_down});
  }
  return out;
}

void reference_forward(const ReferenceModel& model, std::span<const int32_t> tokens, Activations& acts) {
  const ModelConfig& c = model.config;
  const int64_t T = static_cast<int64_t>(tokens.size()), D = c.dim, H = c.n_heads, KV = c.n_kv_heads,
                hd = c.head_dim, Q = H * hd, K = KV * hd, F = c.ffn_dim, V = c.n_vocab;
  const int64_t pairs = c.rope_dims / 2;
  const double eps = c.rms_norm_eps, scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto size = [](int64_t n) { return static_cast<size_t>(n); };
  if (T == 0) fail("reference forward: no tokens");
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= V) fail("reference forward: token ", tokens[t], " at position ", t, " is outside the vocabulary of ", V);

  acts.tokens.assign(tokens.begin(), tokens.end());
  acts.rope_cos.resize(size(T * pairs));
  acts.rope_sin.resize(size(T * pairs));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < pairs; ++i) {
      const double angle = static_cast<double>(t) * model.rope_freq[size(i)];
      acts.rope_cos[size(t * pairs + i)] = std::cos(angle);
      acts.rope_sin[size(t * pairs + i)] = std::sin(angle);
    }

  std::vector<double> x(size(T * D)), proj(size(T * D));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) x[size(t * D + i)] = model.params.token_embd[size(tokens[t] * D + i)];

  acts.layers.resize(model.params.layers.size());
  for (size_t l = 0; l < model.params.layers.size(); ++l) {
    const ReferenceLayer& w = model.params.layers[l];
    LayerActivations& a = acts.layers[l];
    a.x = x;
    a.attn_in.resize(size(T * D));
    for (int64_t t = 0; t < T; ++t) rmsnorm_forward(&a.attn_in[size(t * D)], &x[size(t * D)], w.attn_norm.data(), D, eps);
    a.q_pre.resize(size(T * Q));
    a.k_pre.resize(size(T * K));
    a.v.resize(size(T * K));
    matmul_forward(a.q_pre.data(), a.attn_in.data(), w.wq.data(), or_null(w.bq), T, D, Q);
    matmul_forward(a.k_pre.data(), a.attn_in.data(), w.wk.data(), or_null(w.bk), T, D, K);
    matmul_forward(a.v.data(), a.attn_in.data(), w.wv.data(), or_null(w.bv), T, D, K);
    a.q = a.q_pre;
    a.k = a.k_pre;
    for (int64_t t = 0; t < T; ++t) {
      const double* cos = &acts.rope_cos[size(t * pairs)];
      const double* sin = &acts.rope_sin[size(t * pairs)];
      for (int64_t h = 0; h < H; ++h) {
        double* head = &a.q[size(t * Q + h * hd)];
        if (c.qk_norm) rmsnorm_forward(head, &a.q_pre[size(t * Q + h * hd)], w.q_norm.data(), hd, eps);
        rope_forward(head, c.rope_dims, c.rope_style, cos, sin);
      }
      for (int64_t h = 0; h < KV; ++h) {
        double* head = &a.k[size(t * K + h * hd)];
        if (c.qk_norm) rmsnorm_forward(head, &a.k_pre[size(t * K + h * hd)], w.k_norm.data(), hd, eps);
        rope_forward(head, c.rope_dims, c.rope_style, cos, sin);
      }
    }
    a.probs.resize(size(H * T * T));
    a.attn_out.resize(size(T * Q));
    attention_forward(a.attn_out.data(), a.probs.data(), a.q.data(), a.k.data(), a.v.data(), T, H, KV, hd, scale);
    matmul_forward(proj.data(), a.attn_out.data(), w.wo.data(), nullptr, T, Q, D);
    for (int64_t i = 0; i < T * D; ++i) x[size(i)] += proj[size(i)];
    a.x_mid = x;
    a.ffn_in.resize(size(T * D));
    for (int64_t t = 0; t < T; ++t) rmsnorm_forward(&a.ffn_in[size(t * D)], &x[size(t * D)], w.ffn_norm.data(), D, eps);
    a.gate.resize(size(T * F));
    a.up.resize(size(T * F));
    a.hidden.resize(size(T * F));
    matmul_forward(a.gate.data(), a.ffn_in.data(), w.w_gate.data(), nullptr, T, D, F);
    matmul_forward(a.up.data(), a.ffn_in.data(), w.w_up.data(), nullptr, T, D, F);
    swiglu_forward(a.hidden.data(), a.gate.data(), a.up.data(), T * F);
    matmul_forward(proj.data(), a.hidden.data(), w.w_down.data(), nullptr, T, F, D);
    for (int64_t i = 0; i < T * D; ++i) x[size(i)] += proj[size(i)];
  }
  acts.x_final = x;
  acts.normed.resize(size(T * D));
  for (int64_t t = 0; t < T; ++t)
    rmsnorm_forward(&acts.normed[size(t * D)], &x[size(t * D)], model.params.output_norm.data(), D, eps);
  const std::vector<double>& out_w = c.tied_output ? model.params.token_embd : model.params.output;
  acts.logits.resize(size(T * V));
  matmul_forward(acts.logits.data(), acts.normed.data(), out_w.data(), nullptr, T, D, V);
}

void reference_backward(const ReferenceModel& model, const Activations& acts, std::span<const double> dlogits,
                        ReferenceParams& g) {
  const ModelConfig& c = model.config;
  const int64_t T = static_cast<int64_t>(acts.tokens.size()), D = c.dim, H = c.n_heads, KV = c.n_kv_heads,
                hd = c.head_dim, Q = H * hd, K = KV * hd, F = c.ffn_dim, V = c.n_vocab;
  const int64_t pairs = c.rope_dims / 2;
  const double eps = c.rms_norm_eps, scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto size = [](int64_t n) { return static_cast<size_t>(n); };
  if (static_cast<int64_t>(dlogits.size()) != T * V)
    fail("reference backward: dlogits has ", dlogits.size(), " values, expected ", T * V);

  // Output: logits = normed · out_w^T; normed = rmsnorm(x_final).
  const bool tied = c.tied_output;
  std::vector<double> dnormed(size(T * D), 0.0), dx(size(T * D), 0.0);
  matmul_backward(dnormed.data(), tied ? g.token_embd.data() : g.output.data(), nullptr, dlogits.data(),
                  acts.normed.data(), tied ? model.params.token_embd.data() : model.params.output.data(), T, D, V);
  for (int64_t t = 0; t < T; ++t)
    rmsnorm_backward(&dx[size(t * D)], g.output_norm.data(), &dnormed[size(t * D)], &acts.x_final[size(t * D)],
                     model.params.output_norm.data(), D, eps);

  std::vector<double> dproj, dhidden, dgate, dup, dffn_in, dattn_out, dq, dk, dv, dq_pre, dk_pre, dattn_in;
  for (size_t li = model.params.layers.size(); li-- > 0;) {
    const ReferenceLayer& w = model.params.layers[li];
    ReferenceLayer& gw = g.layers[li];
    const LayerActivations& a = acts.layers[li];
    // dx holds d(layer output) = d(x_mid + down·hidden); it becomes d(x_mid), then d(x).
    // Feed-forward.
    dhidden.assign(size(T * F), 0.0);
    matmul_backward(dhidden.data(), gw.w_down.data(), nullptr, dx.data(), a.hidden.data(), w.w_down.data(), T, F, D);
    dgate.assign(size(T * F), 0.0);
    dup.assign(size(T * F), 0.0);
    swiglu_backward(dgate.data(), dup.data(), dhidden.data(), a.gate.data(), a.up.data(), T * F);
    dffn_in.assign(size(T * D), 0.0);
    matmul_backward(dffn_in.data(), gw.w_gate.data(), nullptr, dgate.data(), a.ffn_in.data(), w.w_gate.data(), T, D, F);
    matmul_backward(dffn_in.data(), gw.w_up.data(), nullptr, dup.data(), a.ffn_in.data(), w.w_up.data(), T, D, F);
    for (int64_t t = 0; t < T; ++t)
      rmsnorm_backward(&dx[size(t * D)], gw.ffn_norm.data(), &dffn_in[size(t * D)], &a.x_mid[size(t * D)],
                       w.ffn_norm.data(), D, eps);
    // Attention.
    dattn_out.assign(size(T * Q), 0.0);
    matmul_backward(dattn_out.data(), gw.wo.data(), nullptr, dx.data(), a.attn_out.data(), w.wo.data(), T, Q, D);
    dq.assign(size(T * Q), 0.0);
    dk.assign(size(T * K), 0.0);
    dv.assign(size(T * K), 0.0);
    attention_backward(dq.data(), dk.data(), dv.data(), dattn_out.data(), a.probs.data(), a.q.data(), a.k.data(),
                       a.v.data(), T, H, KV, hd, scale);
    dq_pre.assign(size(T * Q), 0.0);
    dk_pre.assign(size(T * K), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      const double* cos = &acts.rope_cos[size(t * pairs)];
      const double* sin = &acts.rope_sin[size(t * pairs)];
      for (int64_t h = 0; h < H; ++h) {
        double* d = &dq[size(t * Q + h * hd)];
        rope_backward(d, c.rope_dims, c.rope_style, cos, sin);
        double* d_pre = &dq_pre[size(t * Q + h * hd)];
        if (c.qk_norm)
          rmsnorm_backward(d_pre, gw.q_norm.data(), d, &a.q_pre[size(t * Q + h * hd)], w.q_norm.data(), hd, eps);
        else
          for (int64_t i = 0; i < hd; ++i) d_pre[i] = d[i];
      }
      for (int64_t h = 0; h < KV; ++h) {
        double* d = &dk[size(t * K + h * hd)];
        rope_backward(d, c.rope_dims, c.rope_style, cos, sin);
        double* d_pre = &dk_pre[size(t * K + h * hd)];
        if (c.qk_norm)
          rmsnorm_backward(d_pre, gw.k_norm.data(), d, &a.k_pre[size(t * K + h * hd)], w.k_norm.data(), hd, eps);
        else
          for (int64_t i = 0; i < hd; ++i) d_pre[i] = d[i];
      }
    }
    dattn_in.assign(size(T * D), 0.0);
    matmul_backward(dattn_in.data(), gw.wq.data(), or_null(gw.bq), dq_pre.data(), a.attn_in.data(), w.wq.data(), T, D, Q);
    matmul_backward(dattn_in.data(), gw.wk.data(), or_null(gw.bk), dk_pre.data(), a.attn_in.data(), w.wk.data(), T, D, K);
    matmul_backward(dattn_in.data(), gw.wv.data(), or_null(gw.bv), dv.data(), a.attn_in.data(), w.wv.data(), T, D, K);
    for (int64_t t = 0; t < T; ++t)
      rmsnorm_backward(&dx[size(t * D)], gw.attn_norm.data(), &dattn_in[size(t * D)], &a.x[size(t * D)],
                       w.attn_norm.data(), D, eps);
  }
  // Embedding rows.
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) g.token_embd[size(acts.tokens[size(t)] * D + i)] += dx[size(t * D + i)];
}

void sft_targets(std::span<const int32_t> tokens, std::vector<int32_t>& targets, std::vector<uint8_t>& mask) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  targets.assign(tokens.size(), 0);
  mask.assign(tokens.size(), 0);
  for (int64_t j = 1; j < n; ++j)
    if (2 * j >= n) {
      targets[static_cast<size_t>(j - 1)] = tokens[static_cast<size_t>(j)];
      mask[static_cast<size_t>(j - 1)] = 1;
    }
}

double reference_loss_gradients(const ReferenceModel& model, std::span<const int32_t> tokens, const LogitLoss& loss,
                                ReferenceParams& grads) {
  Activations acts;
  reference_forward(model, tokens, acts);
  const std::vector<float> logits(acts.logits.begin(), acts.logits.end());
  std::vector<float> dlogits_f(logits.size(), 0.0f);
  const double value = loss(logits, dlogits_f);
  const std::vector<double> dlogits(dlogits_f.begin(), dlogits_f.end());
  reference_backward(model, acts, dlogits, grads);
  return value;
}

double reference_cross_entropy_gradients(const ReferenceModel& model, std::span<const int32_t> tokens,
                                         std::span<const int32_t> targets, std::span<const uint8_t> mask,
                                         ReferenceParams& grads) {
  const int64_t T = static_cast<int64_t>(tokens.size()), V = model.config.n_vocab;
  return reference_loss_gradients(
      model, tokens,
      [&](std::span<const float> logits, std::span<float> dlogits) {
        return cross_entropy(logits, T, V, targets, mask, dlogits);
      },
      grads);
}

}  // namespace orchard::train
