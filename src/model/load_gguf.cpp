// Model configuration and tensors from a GGUF file (llama, qwen2, qwen3).
#include "base/error.h"
#include "model/model_impl.h"

namespace orchard {
namespace {

int64_t require_positive(const GgufFile& f, const std::string& key) {
  auto v = f.get_int(key);
  if (!v) fail(f.path(), ": missing metadata key '", key, "'");
  if (*v <= 0 || *v > (int64_t{1} << 31)) fail(f.path(), ": metadata key '", key, "' = ", *v, " is out of range");
  return *v;
}

}  // namespace

TensorTable load_gguf_model(const std::string& path, std::shared_ptr<const Blob> blob,
                            Model::Impl& impl) {
  auto gguf = GgufFile::parse(std::move(blob));
  const GgufFile& f = *gguf;
  ModelConfig& c = impl.config;
  c.source_format = "gguf";
  if (f.tensors().empty())
    fail(path, ": holds no tensors (a vocab-only GGUF is a tokenizer, not a model)");
  auto arch = f.get_string("general.architecture");
  if (!arch) fail(path, ": missing metadata key 'general.architecture'");
  if (*arch != "llama" && *arch != "qwen2" && *arch != "qwen3")
    fail(path, ": unknown architecture '", *arch, "' (supported: llama, qwen2, qwen3)");
  c.architecture = *arch;
  const std::string a = *arch + ".";
  c.dim = require_positive(f, a + "embedding_length");
  c.n_layers = require_positive(f, a + "block_count");
  // Every block has at least kMinTensorsPerLayer tensors: a count the tensor table cannot hold is
  // refused here, before anything is sized by it (4M blocks once took 3 GB before failing).
  if (c.n_layers > static_cast<int64_t>(f.tensors().size() / kMinTensorsPerLayer))
    fail(path, ": metadata key '", a, "block_count' = ", c.n_layers, " but the file holds only ", f.tensors().size(),
         " tensors (each block needs at least ", kMinTensorsPerLayer, ")");
  c.ffn_dim = require_positive(f, a + "feed_forward_length");
  c.n_heads = require_positive(f, a + "attention.head_count");
  c.n_kv_heads = f.find(a + "attention.head_count_kv") ? require_positive(f, a + "attention.head_count_kv") : c.n_heads;
  c.context_length = f.find(a + "context_length") ? require_positive(f, a + "context_length") : 4096;
  c.head_dim = f.find(a + "attention.key_length") ? require_positive(f, a + "attention.key_length")
                                                   : c.dim / c.n_heads;
  if (f.find(a + "attention.value_length") &&
      require_positive(f, a + "attention.value_length") != c.head_dim)
    fail(path, ": attention.value_length differs from key_length (not supported)");
  c.rope_dims = f.find(a + "rope.dimension_count") ? require_positive(f, a + "rope.dimension_count") : c.head_dim;
  c.rms_norm_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = static_cast<float>(f.get_float(a + "rope.freq_base").value_or(10000.0));
  if (auto scaling = f.get_string(a + "rope.scaling.type"); scaling && *scaling != "none")
    fail(path, ": rope scaling type '", *scaling, "' is not supported");
  // llama.cpp's converter permutes llama q/k rows so that adjacent pairs rotate together;
  // Qwen weights keep the half-split layout.
  c.rope_style = c.architecture == "llama" ? RopeStyle::interleaved : RopeStyle::neox;
  c.qk_norm = c.architecture == "qwen3";

  TensorTable table;
  for (const GgufTensor& t : f.tensors()) {
    TensorRef ref{t.name, t.type, t.shape, t.data, t.nbytes};
    impl.tensors.push_back(ref);
    table.emplace(t.name, std::move(ref));
  }
  c.n_vocab = 0;  // from the embedding's shape, checked in bind_weights
  impl.file_bytes = f.file_size();
  impl.files.push_back(f.blob());
  impl.gguf = std::move(gguf);
  return table;
}

}  // namespace orchard
