// Writes the seeds of the training and distillation targets (train_dataset, teacher_store,
// teacher_pack, distill_prompts, peft_adapter) into CORPUS_DIR/<target>/: the binary ones with
// the library's own writers (encode_rows, write_pack, save_peft_adapter), so the fuzzer starts
// from files that read completely; the text ones are a few lines of each format.
//   fuzz_make_train_seeds fuzz/corpus
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "distill/teacher_data.h"
#include "fuzz_support.h"
#include "base/error.h"
#include "orchard/error.h"
#include "train/adapter_io.h"
#include "train/teacher_store.h"

using namespace orchard;

namespace {

std::string root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(root + "/" + target);
  if (bytes.size() >= 16384) fail(target, "/", name, " is ", bytes.size(), " bytes (seeds stay under 16 KB)");
  std::ofstream(root + "/" + target + "/" + name, std::ios::binary) << bytes;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// rows x k distinct ids below `vocab` and log-probabilities, from a fixed seed.
void teacher_rows(int64_t rows, int64_t k, int64_t vocab, uint32_t seed, std::vector<int32_t>& ids,
                  std::vector<double>& logprobs) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> id(0, vocab - 1);
  std::uniform_real_distribution<double> lp(-12.0, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> row;
    while (static_cast<int64_t>(row.size()) < k) {
      const int32_t v = static_cast<int32_t>(id(rng));
      if (std::find(row.begin(), row.end(), v) == row.end()) row.push_back(v);
    }
    ids.insert(ids.end(), row.begin(), row.end());
    for (int64_t c = 0; c < k; ++c) logprobs.push_back(c == 0 ? -0.05 : lp(rng));
  }
}

void teacher_store_seeds() {
  struct Shape {
    const char* name;
    int64_t rows, k, vocab;
    int bits;
  };
  for (const Shape& s : {Shape{"k1-v10", 3, 1, 10, 9}, Shape{"k3-v1000-q4", 5, 3, 1000, 4},
                         Shape{"k5-v512-q16", 4, 5, 512, 16}, Shape{"k20-v151936-q10", 6, 20, 151936, 10},
                         Shape{"empty", 0, 2, 100, 9}}) {
    std::vector<int32_t> ids;
    std::vector<double> logprobs;
    teacher_rows(s.rows, s.k, s.vocab, 17, ids, logprobs);
    const std::vector<uint8_t> blob = train::encode_rows(ids, logprobs, s.k, s.vocab, {.value_bits = s.bits});
    put("teacher_store", s.name, std::string(blob.begin(), blob.end()));
  }
}

// An example of T tokens over a 259-token vocabulary: the last `answer` rows before the end trained,
// with a teacher of k entries on them when k > 0.
train::Example example(int64_t T, int64_t answer, int64_t k, bool rationale, double weight, int64_t line) {
  train::Example e;
  for (int64_t i = 0; i < T; ++i) e.tokens.push_back(static_cast<int32_t>(3 + (i * 37) % 256));
  e.targets.assign(T, 0);
  for (int64_t i = 0; i + 1 < T; ++i) e.targets[i] = e.tokens[i + 1];
  e.ce_mask.assign(T, 0);
  e.kd_mask.assign(T, 0);
  e.teacher_k = k;
  e.teacher_ids.assign(T * k, 0);
  e.teacher_probs.assign(T * k, 0.0f);
  for (int64_t i = T - 1 - answer; i < T - 1; ++i) {
    e.ce_mask[i] = 1;
    if (k == 0) continue;
    e.kd_mask[i] = 1;
    double sum = 0;
    std::vector<double> p(k);
    for (int64_t c = 0; c < k; ++c) sum += p[c] = std::exp(-0.7 * static_cast<double>(c) - 0.1 * i);
    for (int64_t c = 0; c < k; ++c) {
      e.teacher_ids[i * k + c] = static_cast<int32_t>((e.targets[i] + 11 * c) % 259);
      e.teacher_probs[i * k + c] = static_cast<float>(p[c] / sum);
    }
    if (k > 2 && i % 2) e.teacher_probs[i * k + k - 1] = 0.0f;  // a dropped entry (a pad)
  }
  e.rationale = rationale;
  e.weight = weight;
  e.line = line;
  return e;
}

void teacher_pack_seeds() {
  const std::string tmp = std::filesystem::temp_directory_path().string() + "/orchard-seed.otkd";
  const std::vector<std::pair<const char*, std::vector<train::Example>>> packs = {
      {"pack-kd", {example(12, 5, 4, false, 1, 1), example(9, 4, 0, true, 0.5, 1)}},
      {"pack-sft", {example(6, 2, 0, false, 1, 3)}},
      {"pack-k20", {example(20, 8, 20, false, 2, 7)}},
      {"pack-empty", {}},
  };
  for (const auto& [name, examples] : packs) {
    distill::write_pack(tmp, examples, 259, nullptr, name == std::string("pack-k20") ? 12 : 10);
    put("teacher_pack", name, read(tmp));
  }
  std::filesystem::remove(tmp);
  put("teacher_pack", "records",
      "{\"id\": 7, \"sample\": 1, \"prompt\": \"Hi\", \"completion\": \"A\\u00e9\", \"finish_reason\": \"stop\", "
      "\"teacher_tokens\": [\"A\", \"bytes:\\\\xc3\\\\xa9\"], \"teacher_logprobs\": [-0.25, null], "
      "\"teacher_top\": [{\"B\": -2.0, \"A\": -0.25, \"C\": -1.0}, {}]}\n"
      "\n"
      "{\"id\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"completion\": \"ok\", "
      "\"reasoning\": \"think\", \"teacher_tokens\": [\"ok\"], \"teacher_logprobs\": [-0.1], "
      "\"teacher_top\": [{\"ok\": -0.1}]}\n");
  put("teacher_pack", "records-length",
      "{\"id\": 1, \"prompt\": \"Once\", \"completion\": \" upon\", \"finish_reason\": \"length\", "
      "\"teacher_tokens\": [\" up\", \"on\"], \"teacher_logprobs\": [-0.5, -0.01], "
      "\"teacher_top\": [{\" up\": -0.5, \" a\": -1.2}, {\"on\": -0.01}]}\n");
}

void text_seeds() {
  put("train_dataset", "text", R"({"text": "Once upon a time"})");
  put("train_dataset", "tokens", R"({"tokens": [1, 40, 41, 42, 2], "weight": 0.5})");
  put("train_dataset", "prompt-completion", R"({"prompt": "Q: 2+2?", "completion": " 4", "rationale": "two and two"})");
  put("train_dataset", "teacher",
      R"({"prompt": "Hi", "completion": "ab", "teacher": {"ids": [[100, 101, 7], [101, 2, 9], [2, 5, 6]], )"
      R"("logprobs": [[-0.1, -2.5, -4], [-0.2, -1.9, -7.5], [-0.01, -5, -6]]}})");
  put("train_dataset", "messages",
      R"({"messages": [{"role": "system", "content": "Be"}, {"role": "user", "content": "Hi"}, )"
      R"({"role": "assistant", "content": "Yo"}, {"role": "user", "content": "?"}, )"
      R"({"role": "assistant", "content": "ok"}], "rationale": "r"})");
  put("train_dataset", "long-text", R"({"text": ")" + std::string(80, 'x') + R"(", "weight": 2})");

  put("distill_prompts", "prompts",
      "{\"id\": 1, \"prompt\": \"Once upon a time\"}\n"
      "\n"
      "{\"id\": \"chat-1\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
      "{\"role\": \"user\", \"content\": \"Tell a story.\"}]}\n");
  put("distill_prompts", "one", "{\"id\": 0, \"prompt\": \"\"}");
  put("distill_prompts", "duplicate", "{\"id\": 3, \"prompt\": \"a\"}\n{\"id\": 3, \"prompt\": \"b\"}\n");
}

void peft_adapter_seeds() {
  ModelConfig c;
  c.architecture = "llama";
  c.source_format = "gguf";
  c.n_vocab = 32, c.dim = 8, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 4, c.ffn_dim = 12;
  c.context_length = 16, c.rope_dims = 4, c.rope_style = RopeStyle::interleaved;  // as peft_adapter_fuzz.cpp's
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> value(-0.5, 0.5);
  auto lora_of = [&](int64_t r, double alpha, std::vector<train::LoraTarget> targets) {
    train::Lora lora;
    lora.config = {.rank = r, .alpha = alpha, .targets = targets};
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (train::LoraTarget t : targets) {
        const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
        int64_t in = c.dim, out = c.dim;
        if (t == train::LoraTarget::q) out = q;
        if (t == train::LoraTarget::k || t == train::LoraTarget::v) out = kv;
        if (t == train::LoraTarget::o) in = q;
        if (t == train::LoraTarget::gate || t == train::LoraTarget::up) out = c.ffn_dim;
        if (t == train::LoraTarget::down) in = c.ffn_dim;
        train::LoraAdapter a{.layer = l, .target = t, .in = in, .out = out, .a = {}, .b = {}};
        for (int64_t i = 0; i < r * in; ++i) a.a.push_back(static_cast<float>(value(rng)));
        for (int64_t i = 0; i < out * r; ++i) a.b.push_back(static_cast<float>(value(rng)));
        lora.adapters.push_back(std::move(a));
      }
    return lora;
  };
  const std::string dir = std::filesystem::temp_directory_path().string() + "/orchard-seed-adapter";
  using T = train::LoraTarget;
  struct Seed {
    const char* name;
    train::Lora lora;
    bool with_config;
  };
  for (const Seed& s : {Seed{"qv-tensors-only", lora_of(2, 4, {T::q, T::v}), false},
                        Seed{"qv", lora_of(2, 4, {T::q, T::v}), true},
                        Seed{"all-r1", lora_of(1, 2, {T::q, T::k, T::v, T::o, T::gate, T::up, T::down}), true}}) {
    std::filesystem::remove_all(dir);
    train::save_peft_adapter(s.lora, c, dir, "tiny-llama");
    const std::string tensors = read(dir + "/adapter_model.safetensors");
    put("peft_adapter", s.name,
        s.with_config ? read(dir + "/adapter_config.json") + std::string(fuzz::kSplit) + tensors : tensors);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_train_seeds CORPUS_DIR\n");
    return 2;
  }
  root = argv[1];
  try {
    teacher_store_seeds();
    teacher_pack_seeds();
    text_seeds();
    peft_adapter_seeds();
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz_make_train_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
