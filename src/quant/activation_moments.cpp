#include "quant/activation_moments.h"

#include <cmath>

#include "model/model_impl.h"
#include "quant/model_tensors.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

// Per column: the mean over tokens and the variance around it.
struct Moments {
  std::vector<double> mean, var;
};

// Attention output is sum_t a_t v_t with sum_t a_t = 1: the shared mean passes whole and
// independent noise keeps sum_t a_t^2 of its variance. That sum is 1 for attention on one token
// and 1/n spread evenly over n; 1/8 stands for attention spread over a handful of tokens.
constexpr double kAttentionNoiseKept = 1.0 / 8.0;

// The token embedding over a uniformly drawn token: the mean and variance of each column
// across the vocabulary.
Moments embedding_moments(const TensorRef& e) {
  const int64_t dim = e.row_length(), vocab = e.rows();
  Moments m{std::vector<double>(static_cast<size_t>(dim), 0.0), std::vector<double>(static_cast<size_t>(dim), 0.0)};
  std::vector<float> row(static_cast<size_t>(dim));
  for (int64_t t = 0; t < vocab; ++t) {
    dequantize_row(e.type, e.row(t), row.data(), dim);
    for (int64_t j = 0; j < dim; ++j) {
      m.mean[j] += row[j];
      m.var[j] += double(row[j]) * row[j];
    }
  }
  for (int64_t j = 0; j < dim; ++j) {
    m.mean[j] /= double(vocab);
    m.var[j] = std::max(0.0, m.var[j] / double(vocab) - m.mean[j] * m.mean[j]);
  }
  return m;
}

// x = g * r / rms(r), taking rms(r) as its typical value over tokens.
Moments rms_norm(const Moments& r, const std::vector<float>& g) {
  double mean_square = 0;
  for (size_t j = 0; j < r.mean.size(); ++j) mean_square += r.mean[j] * r.mean[j] + r.var[j];
  mean_square /= double(std::max<size_t>(1, r.mean.size()));
  const double inv = mean_square > 0 ? 1.0 / std::sqrt(mean_square) : 0.0;
  Moments x = r;
  for (size_t j = 0; j < x.mean.size(); ++j) {
    const double gj = j < g.size() ? g[j] : 1.0;
    x.mean[j] *= gj * inv;
    x.var[j] *= gj * gj * inv * inv;
  }
  return x;
}

// y = W x + b with the columns of x independent.
Moments linear(const TensorRef& w, const Moments& x, const std::vector<float>& bias) {
  const int64_t in = w.row_length(), out = w.rows();
  Moments y{std::vector<double>(static_cast<size_t>(out)), std::vector<double>(static_cast<size_t>(out))};
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    dequantize_row(w.type, w.row(o), row.data(), in);
    double mean = 0, var = 0;
    for (int64_t j = 0; j < in; ++j) {
      mean += row[j] * x.mean[j];
      var += double(row[j]) * row[j] * x.var[j];
    }
    y.mean[o] = mean + (static_cast<size_t>(o) < bias.size() ? bias[o] : 0.0);
    y.var[o] = var;
  }
  return y;
}

// The attention output per query head from the value moments of its key/value head.
Moments attention(const Moments& v, const ModelConfig& c) {
  const int64_t group = std::max<int64_t>(1, c.n_heads / std::max<int64_t>(1, c.n_kv_heads));
  const size_t n = static_cast<size_t>(c.n_heads * c.head_dim);
  Moments o{std::vector<double>(n), std::vector<double>(n)};
  for (int64_t h = 0; h < c.n_heads; ++h)
    for (int64_t d = 0; d < c.head_dim; ++d) {
      const size_t from = static_cast<size_t>((h / group) * c.head_dim + d), to = static_cast<size_t>(h * c.head_dim + d);
      if (from >= v.mean.size()) continue;
      o.mean[to] = v.mean[from];
      o.var[to] = v.var[from] * kAttentionNoiseKept;
    }
  return o;
}

// E[silu(z)] and E[silu(z)^2] for z ~ N(mean, var), by the trapezoid rule over +-8 sigma.
void silu_moments(double mean, double var, double& m1, double& m2) {
  const double sd = std::sqrt(std::max(0.0, var));
  constexpr int kHalf = 64;
  double s0 = 0, s1 = 0, s2 = 0;
  for (int i = -kHalf; i <= kHalf; ++i) {
    const double t = 8.0 * i / kHalf, p = std::exp(-0.5 * t * t);
    const double z = mean + sd * t, silu = z / (1.0 + std::exp(-z));
    s0 += p;
    s1 += p * silu;
    s2 += p * silu * silu;
  }
  m1 = s1 / s0;
  m2 = s2 / s0;
}

// h = silu(gate) * up, gate and up independent.
Moments swiglu(const Moments& gate, const Moments& up) {
  Moments h{std::vector<double>(gate.mean.size()), std::vector<double>(gate.mean.size())};
  for (size_t i = 0; i < h.mean.size(); ++i) {
    double m1 = 0, m2 = 0;
    silu_moments(gate.mean[i], gate.var[i], m1, m2);
    h.mean[i] = m1 * up.mean[i];
    const double second = m2 * (up.mean[i] * up.mean[i] + up.var[i]);
    h.var[i] = std::max(0.0, second - h.mean[i] * h.mean[i]);
  }
  return h;
}

void add(Moments& r, const Moments& y) {
  for (size_t j = 0; j < r.mean.size() && j < y.mean.size(); ++j) {
    r.mean[j] += y.mean[j];
    r.var[j] += y.var[j];
  }
}

std::vector<float> second_moment(const Moments& x) {
  std::vector<float> s(x.mean.size());
  for (size_t j = 0; j < s.size(); ++j) s[j] = static_cast<float>(x.mean[j] * x.mean[j] + x.var[j]);
  return s;
}

}  // namespace

ImportanceTable estimate_activation_moments(const Model& model) {
  const Model::Impl& m = model.impl();
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  // Second moments of the inputs of each layer's matrices, by role.
  struct LayerInputs {
    std::vector<float> attn, attn_output, ffn, ffn_down;
  };
  std::vector<LayerInputs> inputs(static_cast<size_t>(c.n_layers));
  const std::vector<float> none;

  Moments r = embedding_moments(w.token_embedding);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[static_cast<size_t>(l)];
    LayerInputs& in = inputs[static_cast<size_t>(l)];
    const Moments x = rms_norm(r, L.attn_norm);
    in.attn = second_moment(x);
    const Moments o = attention(linear(L.wv, x, L.bv), c);
    in.attn_output = second_moment(o);
    add(r, linear(L.wo, o, none));
    const Moments f = rms_norm(r, L.ffn_norm);
    in.ffn = second_moment(f);
    const Moments h = swiglu(linear(L.w_gate, f, none), linear(L.w_up, f, none));
    in.ffn_down = second_moment(h);
    add(r, linear(L.w_down, h, none));
  }
  const std::vector<float> head = second_moment(rms_norm(r, w.output_norm));

  ImportanceTable table;
  for (const SourceTensor& t : model_tensors(m)) {
    if (!t.matrix) continue;
    const std::vector<float>* s = nullptr;
    const LayerInputs* in = t.info.layer >= 0 ? &inputs[static_cast<size_t>(t.info.layer)] : nullptr;
    switch (t.info.role) {
      case TensorRole::attn_q: case TensorRole::attn_k: case TensorRole::attn_v: s = &in->attn; break;
      case TensorRole::attn_output: s = &in->attn_output; break;
      case TensorRole::ffn_gate: case TensorRole::ffn_up: s = &in->ffn; break;
      case TensorRole::ffn_down: s = &in->ffn_down; break;
      case TensorRole::output: s = &head; break;
      case TensorRole::token_embedding:
        if (t.info.tied_output) s = &head;
        break;
      default: break;
    }
    if (s && static_cast<int64_t>(s->size()) == t.matrix->row_length()) table.by_tensor[t.info.name] = *s;
  }
  return table;
}

}  // namespace orchard
