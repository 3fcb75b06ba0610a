// llama2.c checkpoints (Karpathy's legacy `run.c` format): a header of seven int32 followed by
// float32 weights in a fixed order. A negative vocab_size means the classifier is stored
// separately after the weights; otherwise it is the token embedding.
#include <cstring>

#include "base/error.h"
#include "base/memory_limit.h"
#include "model/model_impl.h"

namespace orchard {

TensorTable load_llama2c_model(const std::string& path, std::shared_ptr<const Blob> blob,
                               Model::Impl& impl) {
  struct Header {
    int32_t dim, ffn_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  } h;
  if (blob->size() < sizeof h) fail(path, ": too small for a llama2.c checkpoint header");
  std::memcpy(&h, blob->data(), sizeof h);
  if (std::memcmp(blob->data(), "ak42", 4) == 0)
    fail(path, ": llama2.c export format with a version header is not supported (legacy format only)");
  const bool shared_classifier = h.vocab_size > 0;
  const int64_t vocab = h.vocab_size > 0 ? h.vocab_size : -int64_t{h.vocab_size};
  const int64_t limit = int64_t{1} << 24;
  auto in_range = [&](int64_t v) { return v > 0 && v <= limit; };
  if (!in_range(h.dim) || !in_range(h.ffn_dim) || !in_range(h.n_layers) || !in_range(h.n_heads) ||
      !in_range(h.n_kv_heads) || !in_range(vocab) || !in_range(h.seq_len))
    fail(path, ": unrecognized model file: no GGUF magic, not a Hugging Face folder, and its header is not a valid llama2.c checkpoint");
  if (h.dim % h.n_heads != 0 || h.n_heads % h.n_kv_heads != 0)
    fail(path, ": llama2.c header: dim ", h.dim, ", n_heads ", h.n_heads, ", n_kv_heads ",
         h.n_kv_heads, " are inconsistent");

  ModelConfig& c = impl.config;
  c.architecture = "llama";
  c.source_format = "llama2.c";
  c.n_vocab = vocab;
  c.dim = h.dim;
  c.ffn_dim = h.ffn_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.rope_dims = c.head_dim;
  c.context_length = h.seq_len;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::interleaved;  // run.c rotates adjacent pairs

  const int64_t L = c.n_layers, dim = c.dim, kv_dim = c.n_kv_heads * c.head_dim;
  // The size the header implies, checked against the file before a tensor entry is made: with
  // every field up to 2^24, a header alone could ask for 2^24 layers of entries (gigabytes of
  // names) and sizes past 2^64.
  {
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    const uint64_t per_layer = saturating_add(
        saturating_add(saturating_mul(2, u(dim)), saturating_mul(2, saturating_mul(u(dim), u(dim)))),
        saturating_add(saturating_mul(2, saturating_mul(u(dim), u(kv_dim))), saturating_mul(3, saturating_mul(u(dim), u(c.ffn_dim)))));
    uint64_t floats = saturating_add(saturating_mul(u(L), per_layer), saturating_mul(u(dim), u(vocab)));
    floats = saturating_add(floats, saturating_add(u(dim), saturating_mul(u(h.seq_len), u(c.head_dim))));
    if (!shared_classifier) floats = saturating_add(floats, saturating_mul(u(dim), u(vocab)));
    const uint64_t needed = saturating_add(sizeof h, saturating_mul(floats, 4));
    if (needed > blob->size())
      fail(path, ": truncated llama2.c checkpoint: its header (dim ", dim, ", ", L, " layers, vocab ", vocab, ") needs ",
           needed == UINT64_MAX ? std::string("more than 2^64") : std::to_string(needed), " bytes, the file has ",
           blob->size());
    if (needed < blob->size())
      fail(path, ": llama2.c checkpoint has ", blob->size() - needed,
           " unexpected trailing bytes (header and size disagree)");
  }
  TensorTable table;
  uint64_t offset = sizeof h;
  bool too_short = false;
  auto take = [&](const std::string& name, std::vector<int64_t> shape) {
    TensorRef t{name, DType::F32, std::move(shape), nullptr, 0};
    t.nbytes = static_cast<uint64_t>(t.element_count()) * 4;
    if (offset + t.nbytes > blob->size()) too_short = true;
    else t.data = blob->data() + offset;
    offset += t.nbytes;
    impl.tensors.push_back(t);
    table.emplace(name, std::move(t));
  };
  auto take_per_layer = [&](const std::string& role, std::vector<int64_t> shape) {
    for (int64_t l = 0; l < L; ++l) take("blk." + std::to_string(l) + "." + role, shape);
  };
  take("token_embd.weight", {dim, vocab});
  take_per_layer("attn_norm.weight", {dim});
  take_per_layer("attn_q.weight", {dim, dim});
  take_per_layer("attn_k.weight", {dim, kv_dim});
  take_per_layer("attn_v.weight", {dim, kv_dim});
  take_per_layer("attn_output.weight", {dim, dim});
  take_per_layer("ffn_norm.weight", {dim});
  take_per_layer("ffn_gate.weight", {dim, c.ffn_dim});
  take_per_layer("ffn_down.weight", {c.ffn_dim, dim});
  take_per_layer("ffn_up.weight", {dim, c.ffn_dim});
  take("output_norm.weight", {dim});
  // Precomputed RoPE tables (real and imaginary parts) that run.c no longer reads.
  offset += static_cast<uint64_t>(h.seq_len) * c.head_dim * 4;
  if (!shared_classifier) take("output.weight", {dim, vocab});
  if (too_short || offset > blob->size())
    fail(path, ": truncated llama2.c checkpoint: its header needs ", offset, " bytes, the file has ",
         blob->size());
  if (offset != blob->size())
    fail(path, ": llama2.c checkpoint has ", blob->size() - offset,
         " unexpected trailing bytes (header and size disagree)");
  c.tied_output = shared_classifier;
  impl.file_bytes = blob->size();
  impl.files.push_back(std::move(blob));
  return table;
}

}  // namespace orchard
