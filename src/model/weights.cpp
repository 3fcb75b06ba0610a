// Binds tensors to their roles in the transformer, checking presence, shape and type, so that
// the forward pass can trust every weight it touches.
#include <cmath>

#include "base/error.h"
#include "model/model_impl.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class Binder {
 public:
  Binder(const TensorTable& tensors, const Model::Impl& impl) : tensors_(tensors), path_(impl.path) {}

  const TensorRef* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }

  const TensorRef& require(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorRef* t = find(name);
    if (!t) fail(path_, ": missing tensor '", name, "'");
    check(*t, shape);
    return *t;
  }

  // A matrix the kernels multiply by: any weight type.
  TensorRef matrix(const std::string& name, int64_t in, int64_t out) const {
    return require(name, {in, out});
  }

  // A small vector (norm weight, bias), converted to float32 once at load.
  std::vector<float> vector(const std::string& name, int64_t n) const {
    return to_floats(require(name, {n}));
  }

  std::vector<float> optional_vector(const std::string& name, int64_t n) const {
    const TensorRef* t = find(name);
    if (!t) return {};
    check(*t, {n});
    return to_floats(*t);
  }

 private:
  void check(const TensorRef& t, const std::vector<int64_t>& shape) const {
    if (t.shape != shape)
      fail(path_, ": tensor '", t.name, "' has shape ", shape_text(t.shape), ", expected ",
           shape_text(shape));
    const DTypeTraits tr = traits(t.type);
    if (!tr.weight_type)
      fail(path_, ": tensor '", t.name, "' has type ", tr.name, ", which cannot hold weights");
    if (t.data == nullptr) fail(path_, ": tensor '", t.name, "' has no data");
  }

  static std::vector<float> to_floats(const TensorRef& t) {
    std::vector<float> v(static_cast<size_t>(t.element_count()));
    dequantize_row(t.type, t.data, v.data(), t.element_count());
    return v;
  }

  const TensorTable& tensors_;
  const std::string& path_;
};

void check_config(const Model::Impl& impl) {
  const ModelConfig& c = impl.config;
  const std::string& path = impl.path;
  if (c.n_heads % c.n_kv_heads != 0)
    fail(path, ": attention head count ", c.n_heads, " is not a multiple of the KV head count ", c.n_kv_heads);
  if (c.rope_dims <= 0 || c.rope_dims > c.head_dim || c.rope_dims % 2 != 0)
    fail(path, ": RoPE dimension count ", c.rope_dims, " must be even and at most head_dim ", c.head_dim);
  if (!(c.rms_norm_eps >= 0.0f) || !std::isfinite(c.rms_norm_eps))
    fail(path, ": RMSNorm epsilon ", c.rms_norm_eps, " is not a finite non-negative number");
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta))
    fail(path, ": RoPE base ", c.rope_theta, " is not a finite positive number");
}

}  // namespace

void bind_weights(const TensorTable& tensors, Model::Impl& impl) {
  ModelConfig& c = impl.config;
  check_config(impl);
  Binder b(tensors, impl);

  const TensorRef* embedding = b.find("token_embd.weight");
  if (!embedding) fail(impl.path, ": missing tensor 'token_embd.weight'");
  if (embedding->shape.size() != 2 || embedding->shape[0] != c.dim)
    fail(impl.path, ": tensor 'token_embd.weight' has shape ", shape_text(embedding->shape),
         ", expected [", c.dim, ", n_vocab]");
  if (c.n_vocab == 0) c.n_vocab = embedding->shape[1];

  ModelWeights& w = impl.weights;
  w.token_embedding = b.matrix("token_embd.weight", c.dim, c.n_vocab);
  w.output_norm = b.vector("output_norm.weight", c.dim);
  if (b.find("output.weight")) {
    w.output = b.matrix("output.weight", c.dim, c.n_vocab);
    c.tied_output = false;
  } else {
    w.output = w.token_embedding;
    c.tied_output = true;
  }
  if (b.find("rope_freqs.weight")) {
    w.rope_freq_factors = b.vector("rope_freqs.weight", c.rope_dims / 2);
    for (float f : w.rope_freq_factors)
      if (!(f > 0.0f) || !std::isfinite(f))
        fail(impl.path, ": tensor 'rope_freqs.weight' holds a non-positive or non-finite factor");
  }
  c.has_rope_freq_factors = !w.rope_freq_factors.empty();

  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  // The loaders check their layer count field against the file; this guards any other way in.
  if (c.n_layers <= 0 || static_cast<uint64_t>(c.n_layers) > tensors.size() / kMinTensorsPerLayer)
    fail(impl.path, ": ", c.n_layers, " layers, but the model has only ", tensors.size(), " tensors (each layer needs at least ",
         kMinTensorsPerLayer, ")");
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& layer = w.layers[static_cast<size_t>(l)];
    layer.attn_norm = b.vector(p + "attn_norm.weight", c.dim);
    layer.wq = b.matrix(p + "attn_q.weight", c.dim, q_dim);
    layer.wk = b.matrix(p + "attn_k.weight", c.dim, kv_dim);
    layer.wv = b.matrix(p + "attn_v.weight", c.dim, kv_dim);
    layer.wo = b.matrix(p + "attn_output.weight", q_dim, c.dim);
    layer.bq = b.optional_vector(p + "attn_q.bias", q_dim);
    layer.bk = b.optional_vector(p + "attn_k.bias", kv_dim);
    layer.bv = b.optional_vector(p + "attn_v.bias", kv_dim);
    if (c.qk_norm) {
      layer.q_norm = b.vector(p + "attn_q_norm.weight", c.head_dim);
      layer.k_norm = b.vector(p + "attn_k_norm.weight", c.head_dim);
    }
    layer.ffn_norm = b.vector(p + "ffn_norm.weight", c.dim);
    layer.w_gate = b.matrix(p + "ffn_gate.weight", c.dim, c.ffn_dim);
    layer.w_up = b.matrix(p + "ffn_up.weight", c.dim, c.ffn_dim);
    layer.w_down = b.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim);
    if (l == 0) c.qkv_bias = !layer.bq.empty() || !layer.bk.empty() || !layer.bv.empty();
  }
}

std::vector<float> llama3_rope_freq_factors(double theta, int64_t rope_dims, double factor,
                                            double low_freq_factor, double high_freq_factor,
                                            double original_context_length) {
  // Long wavelengths (beyond the original context) are slowed by `factor`, short ones kept,
  // and the band between is blended linearly in 1/wavelength.
  const double low_freq_wavelength = original_context_length / low_freq_factor;
  const double high_freq_wavelength = original_context_length / high_freq_factor;
  std::vector<float> divisors(static_cast<size_t>(rope_dims / 2));
  for (int64_t i = 0; i < rope_dims / 2; ++i) {
    const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dims));
    const double wavelength = 2.0 * M_PI / freq;
    double divisor;
    if (wavelength < high_freq_wavelength) {
      divisor = 1.0;
    } else if (wavelength > low_freq_wavelength) {
      divisor = factor;
    } else {
      const double smooth = (original_context_length / wavelength - low_freq_factor) /
                            (high_freq_factor - low_freq_factor);
      divisor = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    divisors[static_cast<size_t>(i)] = static_cast<float>(divisor);
  }
  return divisors;
}

}  // namespace orchard
