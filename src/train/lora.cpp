// LoRA on the reference path: effective weights forward, dW mapped to dA and dB (see lora.h).
#include "train/lora.h"

#include <algorithm>

#include "base/error.h"

namespace orchard::train {
namespace {

std::vector<double>& target_weight(ReferenceLayer& layer, LoraTarget target) {
  switch (target) {
    case LoraTarget::q: return layer.wq;
    case LoraTarget::k: return layer.wk;
    case LoraTarget::v: return layer.wv;
    case LoraTarget::o: return layer.wo;
    case LoraTarget::gate: return layer.w_gate;
    case LoraTarget::up: return layer.w_up;
    case LoraTarget::down: return layer.w_down;
  }
  fail("lora: unknown target");
}

const std::vector<double>& target_weight(const ReferenceLayer& layer, LoraTarget target) {
  return target_weight(const_cast<ReferenceLayer&>(layer), target);
}

// [out, in] of a target: the projections into the residual stream (o, down) have out = dim, the
// others in = dim.
void target_shape(const ReferenceLayer& layer, LoraTarget target, int64_t& in, int64_t& out) {
  const int64_t dim = static_cast<int64_t>(layer.attn_norm.size());
  const int64_t size = static_cast<int64_t>(target_weight(layer, target).size());
  if (dim == 0 || size == 0 || size % dim != 0) fail("lora: ", lora_target_gguf(target), " has no [out, in] shape");
  const bool into_residual = target == LoraTarget::o || target == LoraTarget::down;
  in = into_residual ? size / dim : dim;
  out = into_residual ? dim : size / dim;
}

bool same_shapes(const Lora& x, const Lora& y) {
  if (x.adapters.size() != y.adapters.size()) return false;
  for (size_t i = 0; i < x.adapters.size(); ++i) {
    const LoraAdapter &p = x.adapters[i], &q = y.adapters[i];
    if (p.layer != q.layer || p.target != q.target || p.in != q.in || p.out != q.out || p.a.size() != q.a.size() ||
        p.b.size() != q.b.size())
      return false;
  }
  return true;
}

}  // namespace

LoraTarget parse_lora_target(const std::string& name) {
  if (name == "q") return LoraTarget::q;
  if (name == "k") return LoraTarget::k;
  if (name == "v") return LoraTarget::v;
  if (name == "o") return LoraTarget::o;
  if (name == "gate") return LoraTarget::gate;
  if (name == "up") return LoraTarget::up;
  if (name == "down") return LoraTarget::down;
  fail("lora: unknown target '", name, "' (expected q, k, v, o, gate, up or down)");
}

const char* lora_target_gguf(LoraTarget target) {
  switch (target) {
    case LoraTarget::q: return "attn_q";
    case LoraTarget::k: return "attn_k";
    case LoraTarget::v: return "attn_v";
    case LoraTarget::o: return "attn_output";
    case LoraTarget::gate: return "ffn_gate";
    case LoraTarget::up: return "ffn_up";
    case LoraTarget::down: return "ffn_down";
  }
  return "?";
}

Lora zero_lora(const ReferenceModel& model, const LoraConfig& config) {
  if (config.rank < 1 || config.rank > 65536) fail("lora: rank ", config.rank, " is outside [1, 65536]");
  if (!(config.alpha > 0)) fail("lora: alpha must be > 0");
  if (config.targets.empty()) fail("lora: no target projections");
  for (size_t i = 0; i < config.targets.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (config.targets[i] == config.targets[j])
        fail("lora: target ", lora_target_gguf(config.targets[i]), " is listed twice");
  Lora lora{.config = config, .adapters = {}};
  for (size_t l = 0; l < model.params.layers.size(); ++l)
    for (LoraTarget target : config.targets) {
      LoraAdapter adapter{.layer = static_cast<int64_t>(l), .target = target, .in = 0, .out = 0, .a = {}, .b = {}};
      target_shape(model.params.layers[l], target, adapter.in, adapter.out);
      adapter.a.assign(static_cast<size_t>(config.rank * adapter.in), 0.0);
      adapter.b.assign(static_cast<size_t>(adapter.out * config.rank), 0.0);
      lora.adapters.push_back(std::move(adapter));
    }
  return lora;
}

std::vector<NamedTensor> lora_tensors(Lora& lora) {
  std::vector<NamedTensor> out;
  const int64_t r = lora.config.rank;
  for (LoraAdapter& adapter : lora.adapters) {
    const std::string base = "blk." + std::to_string(adapter.layer) + "." + lora_target_gguf(adapter.target) + ".weight";
    out.push_back({base + ".lora_a", {r, adapter.in}, &adapter.a});
    out.push_back({base + ".lora_b", {adapter.out, r}, &adapter.b});
  }
  return out;
}

ReferenceModel lora_effective_model(const ReferenceModel& model, const Lora& lora) {
  ReferenceModel eff = model;
  const int64_t r = lora.config.rank;
  const double s = lora.config.scale();
  for (const LoraAdapter& adapter : lora.adapters) {
    if (adapter.layer < 0 || adapter.layer >= static_cast<int64_t>(eff.params.layers.size()))
      fail("lora: adapter for layer ", adapter.layer, " of a model with ", eff.params.layers.size(), " layers");
    std::vector<double>& w = target_weight(eff.params.layers[static_cast<size_t>(adapter.layer)], adapter.target);
    if (static_cast<int64_t>(w.size()) != adapter.out * adapter.in ||
        static_cast<int64_t>(adapter.a.size()) != r * adapter.in ||
        static_cast<int64_t>(adapter.b.size()) != adapter.out * r)
      fail("lora: blk.", adapter.layer, ".", lora_target_gguf(adapter.target), " adapter shapes disagree with the weight");
    for (int64_t o = 0; o < adapter.out; ++o)
      for (int64_t k = 0; k < r; ++k) {
        const double bk = s * adapter.b[static_cast<size_t>(o * r + k)];
        const double* a = &adapter.a[static_cast<size_t>(k * adapter.in)];
        double* row = &w[static_cast<size_t>(o * adapter.in)];
        for (int64_t i = 0; i < adapter.in; ++i) row[i] += bk * a[i];
      }
  }
  return eff;
}

double lora_loss_gradients(const ReferenceModel& model, const Lora& lora, std::span<const int32_t> tokens,
                           const LogitLoss& loss, Lora& grads) {
  const ReferenceModel eff = lora_effective_model(model, lora);
  ReferenceParams dparams = zeros_like(eff.params);
  const double value = reference_loss_gradients(eff, tokens, loss, dparams);
  if (!same_shapes(grads, lora)) grads = lora;
  grads.config = lora.config;
  const int64_t r = lora.config.rank;
  const double s = lora.config.scale();
  for (size_t n = 0; n < lora.adapters.size(); ++n) {
    const LoraAdapter& adapter = lora.adapters[n];
    LoraAdapter& g = grads.adapters[n];
    const std::vector<double>& dw = target_weight(dparams.layers[static_cast<size_t>(adapter.layer)], adapter.target);
    std::fill(g.a.begin(), g.a.end(), 0.0);
    std::fill(g.b.begin(), g.b.end(), 0.0);
    // dA[k, i] = s * sum_o B[o, k] dW[o, i];  dB[o, k] = s * sum_i dW[o, i] A[k, i].
    for (int64_t o = 0; o < adapter.out; ++o) {
      const double* row = &dw[static_cast<size_t>(o * adapter.in)];
      for (int64_t k = 0; k < r; ++k) {
        const double bk = s * adapter.b[static_cast<size_t>(o * r + k)];
        const double* a = &adapter.a[static_cast<size_t>(k * adapter.in)];
        double* ga = &g.a[static_cast<size_t>(k * adapter.in)];
        double dot = 0;
        for (int64_t i = 0; i < adapter.in; ++i) {
          ga[i] += bk * row[i];
          dot += row[i] * a[i];
        }
        g.b[static_cast<size_t>(o * r + k)] = s * dot;
      }
    }
  }
  return value;
}

}  // namespace orchard::train
