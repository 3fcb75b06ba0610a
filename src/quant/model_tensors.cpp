#include "quant/model_tensors.h"

namespace orchard {

int64_t SourceTensor::source_row(int64_t r) const {
  if (rope_heads == 0) return r;
  // Output row h*hd + 2j + s (pair j, member s) is Hugging Face row h*hd + s*hd/2 + j.
  const int64_t h = r / head_dim, within = r % head_dim;
  const int64_t j = within / 2, s = within % 2;
  return h * head_dim + s * (head_dim / 2) + j;
}

std::vector<SourceTensor> model_tensors(const Model::Impl& m) {
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  std::vector<SourceTensor> out;
  auto matrix = [&](std::string name, TensorRole role, int64_t layer, const TensorRef& t) {
    SourceTensor s;
    s.info = {std::move(name), role, layer, t.shape, c.tied_output};
    s.matrix = &t;
    out.push_back(std::move(s));
    return &out.back();
  };
  auto vector = [&](std::string name, const std::vector<float>& v) {
    if (v.empty()) return;
    SourceTensor s;
    s.info = {std::move(name), TensorRole::vector, -1, {static_cast<int64_t>(v.size())}, false};
    s.values = &v;
    out.push_back(std::move(s));
  };
  // GGUF llama expects interleaved pairs; a source that rotates half-split llama heads (a
  // Hugging Face folder) needs its q/k rows reordered.
  const bool permute = c.architecture == "llama" && c.rope_style == RopeStyle::neox;

  matrix("token_embd.weight", TensorRole::token_embedding, -1, w.token_embedding);
  vector("rope_freqs.weight", w.rope_freq_factors);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[static_cast<size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", L.attn_norm);
    SourceTensor* q = matrix(p + "attn_q.weight", TensorRole::attn_q, l, L.wq);
    if (permute) q->rope_heads = c.n_heads, q->head_dim = c.head_dim;
    SourceTensor* k = matrix(p + "attn_k.weight", TensorRole::attn_k, l, L.wk);
    if (permute) k->rope_heads = c.n_kv_heads, k->head_dim = c.head_dim;
    matrix(p + "attn_v.weight", TensorRole::attn_v, l, L.wv);
    matrix(p + "attn_output.weight", TensorRole::attn_output, l, L.wo);
    vector(p + "attn_q.bias", L.bq);
    vector(p + "attn_k.bias", L.bk);
    vector(p + "attn_v.bias", L.bv);
    vector(p + "attn_q_norm.weight", L.q_norm);
    vector(p + "attn_k_norm.weight", L.k_norm);
    vector(p + "ffn_norm.weight", L.ffn_norm);
    matrix(p + "ffn_gate.weight", TensorRole::ffn_gate, l, L.w_gate);
    matrix(p + "ffn_up.weight", TensorRole::ffn_up, l, L.w_up);
    matrix(p + "ffn_down.weight", TensorRole::ffn_down, l, L.w_down);
  }
  vector("output_norm.weight", w.output_norm);
  if (!c.tied_output) matrix("output.weight", TensorRole::output, -1, w.output);
  return out;
}

}  // namespace orchard
