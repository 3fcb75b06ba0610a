// Writes the GGUF seeds of fuzz/corpus/gguf/ with the library's own GGUF writer: tiny models
// (a few KB of weights) that keep the real tokenizer metadata of the shared test models, so
// that the fuzzer starts from files that load completely instead of from 1 MB golden files.
//   fuzz_make_gguf_seeds SHARED_DIR OUT_DIR
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "orchard/error.h"

using namespace orchard;

namespace {

struct Dims {
  uint32_t dim, ffn, heads, kv_heads, context;
  DType matrix_type;
};

GgufValue string_array(std::vector<std::string> items) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.element_type = GgufType::STRING;
  v.array_length = items.size();
  v.string_array = std::move(items);
  return v;
}

// Bytes of a tensor of `type` holding small values (a valid block scale for Q8_0).
std::vector<uint8_t> tensor_data(DType type, uint64_t nbytes, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-0.5f, 0.5f);
  std::vector<uint8_t> out(nbytes);
  if (type == DType::F32) {
    for (size_t i = 0; i + 4 <= nbytes; i += 4) {
      const float f = value(rng);
      std::memcpy(&out[i], &f, 4);
    }
  } else if (type == DType::F16) {
    for (size_t i = 0; i + 2 <= nbytes; i += 2) {
      const uint16_t h = f32_to_f16(value(rng));
      std::memcpy(&out[i], &h, 2);
    }
  } else if (type == DType::Q8_0) {
    for (size_t i = 0; i + 34 <= nbytes; i += 34) {
      const uint16_t scale = f32_to_f16(0.004f);
      std::memcpy(&out[i], &scale, 2);
      for (size_t j = 0; j < 32; ++j) out[i + 2 + j] = uint8_t(int8_t(rng() % 255 - 127));
    }
  } else {
    throw Error("make_gguf_seeds: no filler for this type");
  }
  return out;
}

// A model of `arch` with `dims`, one layer, and the metadata of `source` apart from its
// architecture keys. `vocab` rows in the embedding: the source's token count.
void write_model(const std::string& out_path, const std::string& arch, const Dims& d,
                 const std::vector<std::pair<std::string, GgufValue>>& source_metadata, uint32_t vocab,
                 bool with_tensors = true) {
  GgufWriter w;
  w.set_string("general.architecture", arch);
  for (const auto& [key, value] : source_metadata) {
    if (key == "general.architecture" || key.rfind("llama.", 0) == 0 || key.rfind("qwen2.", 0) == 0 ||
        key.rfind("qwen3.", 0) == 0)
      continue;
    w.set(key, value);
  }
  const std::string a = arch + ".";
  const uint32_t head_dim = d.dim / d.heads;
  w.set_u32(a + "embedding_length", d.dim);
  w.set_u32(a + "block_count", 1);
  w.set_u32(a + "feed_forward_length", d.ffn);
  w.set_u32(a + "attention.head_count", d.heads);
  w.set_u32(a + "attention.head_count_kv", d.kv_heads);
  w.set_u32(a + "context_length", d.context);
  w.set_u32(a + "rope.dimension_count", head_dim);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32(a + "rope.freq_base", 10000.0f);

  struct Planned {
    std::string name;
    std::vector<int64_t> shape;
    DType type;
  };
  std::vector<Planned> plan;
  if (with_tensors) {
    const int64_t q_dim = int64_t(d.heads) * head_dim, kv_dim = int64_t(d.kv_heads) * head_dim;
    plan.push_back({"token_embd.weight", {d.dim, vocab}, d.matrix_type});
    plan.push_back({"output_norm.weight", {d.dim}, DType::F32});
    const std::string p = "blk.0.";
    plan.push_back({p + "attn_norm.weight", {d.dim}, DType::F32});
    plan.push_back({p + "attn_q.weight", {d.dim, q_dim}, d.matrix_type});
    plan.push_back({p + "attn_k.weight", {d.dim, kv_dim}, d.matrix_type});
    plan.push_back({p + "attn_v.weight", {d.dim, kv_dim}, d.matrix_type});
    plan.push_back({p + "attn_output.weight", {q_dim, d.dim}, d.matrix_type});
    if (arch == "qwen2") {
      plan.push_back({p + "attn_q.bias", {q_dim}, DType::F32});
      plan.push_back({p + "attn_k.bias", {kv_dim}, DType::F32});
      plan.push_back({p + "attn_v.bias", {kv_dim}, DType::F32});
    }
    if (arch == "qwen3") {
      plan.push_back({p + "attn_q_norm.weight", {head_dim}, DType::F32});
      plan.push_back({p + "attn_k_norm.weight", {head_dim}, DType::F32});
    }
    plan.push_back({p + "ffn_norm.weight", {d.dim}, DType::F32});
    plan.push_back({p + "ffn_gate.weight", {d.dim, d.ffn}, d.matrix_type});
    plan.push_back({p + "ffn_up.weight", {d.dim, d.ffn}, d.matrix_type});
    plan.push_back({p + "ffn_down.weight", {d.ffn, d.dim}, d.matrix_type});
    if (arch == "llama") plan.push_back({"output.weight", {d.dim, vocab}, d.matrix_type});
  }
  std::vector<size_t> index;
  for (const Planned& t : plan) index.push_back(w.add_tensor(t.name, t.shape, t.type));
  std::mt19937 rng(1234);
  w.begin(out_path);
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto bytes = tensor_data(plan[i].type, w.tensor_bytes(index[i]), rng);
    w.write(bytes.data(), bytes.size());
  }
  w.finish();
  std::printf("%s: %llu bytes\n", out_path.c_str(), static_cast<unsigned long long>(w.total_bytes()));
}

uint32_t token_count(const GgufFile& f) {
  const auto* tokens = f.get_string_array("tokenizer.ggml.tokens");
  return tokens ? uint32_t(tokens->size()) : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SHARED_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string shared = argv[1], out = argv[2];
  try {
    // llama with a SentencePiece vocabulary (512 tokens with scores), F32 and F16 weights.
    const auto stories = GgufFile::open(shared + "/models/stories260K/stories260K.gguf");
    write_model(out + "/llama-spm-f32.gguf", "llama", {8, 16, 2, 1, 16, DType::F32}, stories->metadata(),
                token_count(*stories));
    write_model(out + "/llama-spm-f16.gguf", "llama", {8, 16, 2, 2, 32, DType::F16}, stories->metadata(),
                token_count(*stories));

    // qwen2 with a byte-level BPE vocabulary (1024 tokens, merges, chat template), Q8_0 weights.
    const auto chat = GgufFile::open(shared + "/models/tiny-chat/tiny-qwen2-chat-q8_0.gguf");
    write_model(out + "/qwen2-bpe-q8_0.gguf", "qwen2", {32, 32, 2, 1, 64, DType::Q8_0}, chat->metadata(),
                token_count(*chat));
    // The same vocabulary without weights: a tokenizer-only GGUF, which the model loader refuses.
    write_model(out + "/qwen2-vocab-only.gguf", "qwen2", {32, 32, 2, 1, 64, DType::Q8_0}, chat->metadata(),
                token_count(*chat), /*with_tensors=*/false);

    // qwen3 (q/k norms) with a handful of byte-level tokens of its own and a short template.
    std::vector<std::pair<std::string, GgufValue>> small;
    small.emplace_back("tokenizer.ggml.model", gguf_string("gpt2"));
    small.emplace_back("tokenizer.ggml.pre", gguf_string("qwen2"));
    small.emplace_back("tokenizer.ggml.tokens",
                       string_array({"a", "b", "c", "ab", "abc", "\xc4\xa0", "\xc4\xa0" "a", "<|im_start|>", "<|im_end|>"}));
    small.emplace_back("tokenizer.ggml.merges", string_array({"a b", "ab c", "\xc4\xa0 a"}));
    small.emplace_back("tokenizer.ggml.eos_token_id", gguf_u32(8));
    small.emplace_back("tokenizer.chat_template",
                       gguf_string("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"));
    write_model(out + "/qwen3-tiny-f32.gguf", "qwen3", {8, 8, 2, 1, 8, DType::F32}, small, 9);
  } catch (const Error& e) {
    std::fprintf(stderr, "make_gguf_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
