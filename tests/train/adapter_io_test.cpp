// LoRA adapter files (train/adapter_io.h): PEFT round trips, the q/k row permutation held against
// the golden llama pair (the same weights as a GGUF and as a Hugging Face folder), merged GGUFs
// against W + s B A computed here, the GGUF LoRA's layout as llama.cpp checks it, and refusals.
#include "train/adapter_io.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/half.h"
#include "formats/gguf.h"
#include "formats/safetensors_writer.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "train/reference_model.h"

namespace orchard::train {
namespace {

const std::vector<LoraTarget> kAll = {LoraTarget::q,    LoraTarget::k,  LoraTarget::v,   LoraTarget::o,
                                      LoraTarget::gate, LoraTarget::up, LoraTarget::down};

std::shared_ptr<const Model> load_reference(const std::string& path) {
  LoadOptions options;
  options.kernels = KernelChoice::reference;
  return Model::load(path, options);
}

ModelConfig config_of(const std::string& relative) { return load_reference(test::shared_path(relative))->config(); }

// [out, in] of a target, from the configuration (written out here, not taken from the library).
std::pair<int64_t, int64_t> out_in(const ModelConfig& c, LoraTarget t) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  switch (t) {
    case LoraTarget::q: return {q, c.dim};
    case LoraTarget::k:
    case LoraTarget::v: return {kv, c.dim};
    case LoraTarget::o: return {c.dim, q};
    case LoraTarget::gate:
    case LoraTarget::up: return {c.ffn_dim, c.dim};
    case LoraTarget::down: return {c.dim, c.ffn_dim};
  }
  return {0, 0};
}

// Random adapters whose values are floats (so that a float32 file holds them exactly).
Lora random_lora(const ModelConfig& c, int64_t rank, double alpha, std::vector<LoraTarget> targets, uint32_t seed,
                 double range = 0.1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(static_cast<float>(-range), static_cast<float>(range));
  Lora lora;
  lora.config = {.rank = rank, .alpha = alpha, .targets = std::move(targets)};
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (LoraTarget t : lora.config.targets) {
      const auto [out, in] = out_in(c, t);
      LoraAdapter a{.layer = l, .target = t, .in = in, .out = out, .a = {}, .b = {}};
      for (int64_t i = 0; i < rank * in; ++i) a.a.push_back(u(rng));
      for (int64_t i = 0; i < out * rank; ++i) a.b.push_back(u(rng));
      lora.adapters.push_back(std::move(a));
    }
  return lora;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A safetensors file read here with nothing but the format's definition.
struct RawSafetensors {
  uint64_t header_length = 0;
  nlohmann::json header;
  std::vector<uint8_t> bytes;
  std::vector<float> floats(const std::string& name) const {
    const auto& e = header.at(name);
    const uint64_t begin = e.at("data_offsets")[0], end = e.at("data_offsets")[1];
    std::vector<float> v((end - begin) / 4);
    std::memcpy(v.data(), bytes.data() + 8 + header_length + begin, end - begin);
    return v;
  }
};

RawSafetensors read_raw(const std::string& path) {
  RawSafetensors s;
  s.bytes = test::read_bytes(path);
  EXPECT_GE(s.bytes.size(), 8u);
  std::memcpy(&s.header_length, s.bytes.data(), 8);
  s.header = nlohmann::json::parse(std::string(s.bytes.begin() + 8, s.bytes.begin() + 8 + s.header_length));
  return s;
}

std::string module_name(int64_t layer, LoraTarget t) {
  static const char* hf[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                             "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return "base_model.model.model.layers." + std::to_string(layer) + "." + hf[static_cast<int>(t)];
}

void expect_same(const Lora& x, const Lora& y, const std::string& what) {
  EXPECT_EQ(x.config.rank, y.config.rank) << what;
  EXPECT_EQ(x.config.alpha, y.config.alpha) << what;
  EXPECT_EQ(x.config.targets, y.config.targets) << what;
  ASSERT_EQ(x.adapters.size(), y.adapters.size()) << what;
  for (size_t i = 0; i < x.adapters.size(); ++i) {
    const LoraAdapter &p = x.adapters[i], &q = y.adapters[i];
    EXPECT_EQ(p.layer, q.layer) << what;
    EXPECT_EQ(p.target, q.target) << what;
    EXPECT_EQ(p.in, q.in) << what;
    EXPECT_EQ(p.out, q.out) << what;
    EXPECT_TRUE(p.a == q.a) << what << ": adapter " << i << " A differs";
    EXPECT_TRUE(p.b == q.b) << what << ": adapter " << i << " B differs";
  }
}

TEST(TrainAdapterIo, PeftRoundTripIsBitwise) {
  for (const char* model : {"golden/llama-f32.gguf", "golden/qwen2-f32.gguf"}) {
    const ModelConfig c = config_of(model);
    const Lora lora = random_lora(c, 3, 5.5, {LoraTarget::v, LoraTarget::q, LoraTarget::k, LoraTarget::o,
                                             LoraTarget::gate, LoraTarget::up, LoraTarget::down}, 17);
    test::TempDir dir;
    save_peft_adapter(lora, c, dir.path(), "golden");
    expect_same(load_peft_adapter(dir.path(), c), lora, model);

    const nlohmann::json j = nlohmann::json::parse(test::read_text(dir.file("adapter_config.json")));
    EXPECT_EQ(j.at("peft_type"), "LORA");
    EXPECT_EQ(j.at("task_type"), "CAUSAL_LM");
    EXPECT_EQ(j.at("r"), 3);
    EXPECT_EQ(j.at("lora_alpha").get<double>(), 5.5);
    EXPECT_EQ(j.at("target_modules"), (std::vector<std::string>{"v_proj", "q_proj", "k_proj", "o_proj", "gate_proj",
                                                                "up_proj", "down_proj"}));
    EXPECT_EQ(j.at("lora_dropout").get<double>(), 0.0);
    EXPECT_EQ(j.at("bias"), "none");
    EXPECT_EQ(j.at("fan_in_fan_out"), false);
    EXPECT_EQ(j.at("base_model_name_or_path"), "golden");

    // The file as the format defines it: aligned header, float32 tensors under PEFT's names and
    // shapes, data packed without gaps; B rows moved only for llama's q and k.
    const RawSafetensors raw = read_raw(dir.file("adapter_model.safetensors"));
    EXPECT_EQ(raw.header_length % 8, 0u);
    uint64_t data_bytes = 0;
    for (const LoraAdapter& a : lora.adapters) {
      const std::string m = module_name(a.layer, a.target);
      const auto& ea = raw.header.at(m + ".lora_A.weight");
      const auto& eb = raw.header.at(m + ".lora_B.weight");
      EXPECT_EQ(ea.at("dtype"), "F32");
      EXPECT_EQ(ea.at("shape"), (std::vector<int64_t>{3, a.in})) << m;
      EXPECT_EQ(eb.at("shape"), (std::vector<int64_t>{a.out, 3})) << m;
      data_bytes += 4 * static_cast<uint64_t>(a.a.size() + a.b.size());
      EXPECT_TRUE(raw.floats(m + ".lora_A.weight") == std::vector<float>(a.a.begin(), a.a.end())) << m;
      const bool moved = std::string(model).find("llama") != std::string::npos &&
                         (a.target == LoraTarget::q || a.target == LoraTarget::k);
      EXPECT_EQ(raw.floats(m + ".lora_B.weight") == std::vector<float>(a.b.begin(), a.b.end()), !moved) << m;
    }
    EXPECT_EQ(raw.bytes.size(), 8 + raw.header_length + data_bytes);
  }
}

// The golden llama exists as a GGUF (llama.cpp's converter permuted its q/k rows) and as the
// Hugging Face folder it came from: an adapter whose B is the GGUF's own q (or k) weight must
// come out of the PEFT file as the Hugging Face q_proj (k_proj) weight, and back.
TEST(TrainAdapterIo, PermutationMatchesTheHuggingFaceModel) {
  const ReferenceModel gguf = load_reference_model(test::shared_path("golden/llama-f32.gguf"));
  const ReferenceModel hf = load_reference_model(test::shared_path("golden/llama-hf-f32"));
  ASSERT_EQ(gguf.config.rope_style, RopeStyle::interleaved);
  ASSERT_EQ(hf.config.rope_style, RopeStyle::neox);
  const int64_t D = gguf.config.dim;

  // Rank D, A = identity, B = the weight itself.
  auto weight_lora = [&](const ReferenceModel& m) {
    Lora lora;
    lora.config = {.rank = D, .alpha = static_cast<double>(D), .targets = {LoraTarget::q, LoraTarget::k}};
    for (size_t l = 0; l < m.params.layers.size(); ++l)
      for (LoraTarget t : lora.config.targets) {
        const auto [out, in] = out_in(m.config, t);
        LoraAdapter a{.layer = static_cast<int64_t>(l), .target = t, .in = in, .out = out, .a = {}, .b = {}};
        a.a.assign(static_cast<size_t>(D * D), 0.0);
        for (int64_t i = 0; i < D; ++i) a.a[static_cast<size_t>(i * D + i)] = 1.0;
        a.b = t == LoraTarget::q ? m.params.layers[l].wq : m.params.layers[l].wk;
        lora.adapters.push_back(std::move(a));
      }
    return lora;
  };
  const Lora from_gguf = weight_lora(gguf), from_hf = weight_lora(hf);
  for (size_t i = 0; i < from_gguf.adapters.size(); ++i)
    ASSERT_FALSE(from_gguf.adapters[i].b == from_hf.adapters[i].b) << "the golden pair's q/k rows should differ";

  test::TempDir dir;
  save_peft_adapter(from_gguf, gguf.config, dir.path());
  const RawSafetensors raw = read_raw(dir.file("adapter_model.safetensors"));
  for (const LoraAdapter& a : from_hf.adapters) {
    const std::vector<float> b = raw.floats(module_name(a.layer, a.target) + ".lora_B.weight");
    EXPECT_TRUE(b == std::vector<float>(a.b.begin(), a.b.end()))
        << "layer " << a.layer << " " << lora_target_gguf(a.target) << ": un-permuted rows are not Hugging Face's";
  }
  // Loaded for either model, the rows are that model's.
  expect_same(load_peft_adapter(dir.path(), gguf.config), from_gguf, "loaded for the GGUF");
  expect_same(load_peft_adapter(dir.path(), hf.config), from_hf, "loaded for the HF folder");

  // A GGUF LoRA of the Hugging Face-loaded model gets the GGUF's rows.
  save_gguf_adapter(from_hf, hf.config, dir.file("hf.gguf"));
  const auto file = GgufFile::open(dir.file("hf.gguf"));
  for (const LoraAdapter& a : from_gguf.adapters) {
    const GgufTensor* t =
        file->find_tensor("blk." + std::to_string(a.layer) + "." + lora_target_gguf(a.target) + ".weight.lora_b");
    ASSERT_NE(t, nullptr);
    std::vector<float> b(static_cast<size_t>(t->element_count()));
    std::memcpy(b.data(), t->data, t->nbytes);
    EXPECT_TRUE(b == std::vector<float>(a.b.begin(), a.b.end())) << "layer " << a.layer;
  }
}

std::vector<float> tensor_floats(const GgufTensor& t) {
  std::vector<float> v(static_cast<size_t>(t.element_count()));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.type == DType::F32) std::memcpy(&v[i], t.data + 4 * i, 4);
    else {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      v[i] = t.type == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return v;
}

TEST(TrainAdapterIo, MergedWeightsAreWPlusScaledBA) {
  for (const char* model : {"golden/llama-f32.gguf", "golden/qwen2-f16.gguf"}) {
    const std::string base_path = test::shared_path(model);
    const ModelConfig c = config_of(model);
    const Lora lora = random_lora(c, 4, 8, kAll, 5);
    test::TempDir dir;
    merge_adapter_into_gguf(base_path, lora, dir.file("merged.gguf"));
    const auto base = GgufFile::open(base_path);
    const auto merged = GgufFile::open(dir.file("merged.gguf"));
    ASSERT_EQ(base->metadata().size(), merged->metadata().size());
    for (size_t i = 0; i < base->metadata().size(); ++i) EXPECT_EQ(base->metadata()[i].first, merged->metadata()[i].first);
    ASSERT_EQ(base->tensors().size(), merged->tensors().size());
    size_t merged_count = 0;
    for (size_t i = 0; i < base->tensors().size(); ++i) {
      const GgufTensor &b = base->tensors()[i], &m = merged->tensors()[i];
      ASSERT_EQ(b.name, m.name);
      ASSERT_EQ(b.shape, m.shape) << b.name;
      const LoraAdapter* a = nullptr;
      for (const LoraAdapter& x : lora.adapters)
        if (b.name == "blk." + std::to_string(x.layer) + "." + lora_target_gguf(x.target) + ".weight") a = &x;
      if (!a) {
        EXPECT_EQ(b.type, m.type) << b.name;
        EXPECT_TRUE(b.nbytes == m.nbytes && std::memcmp(b.data, m.data, b.nbytes) == 0) << b.name << " changed";
        continue;
      }
      ++merged_count;
      EXPECT_EQ(m.type, DType::F32) << b.name;
      const std::vector<float> w = tensor_floats(b), got = tensor_floats(m);
      const int64_t r = lora.config.rank;
      double worst = 0;
      for (int64_t o = 0; o < a->out; ++o)
        for (int64_t i2 = 0; i2 < a->in; ++i2) {
          double ba = 0;
          for (int64_t k = 0; k < r; ++k) ba += a->b[static_cast<size_t>(o * r + k)] * a->a[static_cast<size_t>(k * a->in + i2)];
          const double want = w[static_cast<size_t>(o * a->in + i2)] + 2.0 * ba;
          worst = std::max(worst, std::fabs(got[static_cast<size_t>(o * a->in + i2)] - want) / std::max(1.0, std::fabs(want)));
        }
      EXPECT_LE(worst, 1.2e-7) << model << " " << b.name;  // float32 rounding of the double sum
    }
    EXPECT_EQ(merged_count, lora.adapters.size());
  }
}

// The merged model's logits (the engine's reference kernels) against the reference forward
// through the effective weights W + s B A: the merge put every row where the forward reads it.
TEST(TrainAdapterIo, MergedModelComputesTheEffectiveWeights) {
  const std::string base_path = test::shared_path("golden/llama-f32.gguf");
  const ReferenceModel model = load_reference_model(base_path);
  const Lora lora = random_lora(model.config, 4, 8, kAll, 9);
  test::TempDir dir;
  merge_adapter_into_gguf(base_path, lora, dir.file("merged.gguf"));
  const std::vector<int32_t> tokens = {1, 17, 300, 42, 7, 999, 5};
  Activations acts;
  reference_forward(lora_effective_model(model, lora), tokens, acts);
  Activations plain;
  reference_forward(model, tokens, plain);
  Context context(load_reference(dir.file("merged.gguf")), {.kernels = KernelChoice::reference});
  const std::vector<float> logits = context.eval(tokens);
  ASSERT_EQ(logits.size(), acts.logits.size());
  double worst = 0, moved = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    worst = std::max(worst, std::fabs(logits[i] - acts.logits[i]));
    moved = std::max(moved, std::fabs(plain.logits[i] - acts.logits[i]));
  }
  EXPECT_LE(worst, 1e-4);
  EXPECT_GE(moved, 100 * worst) << "the adapter should change the logits far more than the tolerance";
}

TEST(TrainAdapterIo, QuantizedTargetIsRefused) {
  const ModelConfig c = config_of("golden/llama-q4_0.gguf");
  const Lora lora = random_lora(c, 2, 4, {LoraTarget::q}, 3);
  test::TempDir dir;
  const std::string e = error_of([&] { merge_adapter_into_gguf(test::shared_path("golden/llama-q4_0.gguf"), lora, dir.file("m.gguf")); });
  EXPECT_NE(e.find("blk.0.attn_q.weight is Q4_0"), std::string::npos) << e;
  EXPECT_NE(e.find("requantiz"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.gguf")));
}

TEST(TrainAdapterIo, GgufAdapterHasLlamaCppsLayout) {
  for (const char* model : {"golden/llama-f32.gguf", "golden/qwen2-f32.gguf"}) {
    const ModelConfig c = config_of(model);
    const Lora lora = random_lora(c, 4, 12, {LoraTarget::q, LoraTarget::v, LoraTarget::down}, 11);
    test::TempDir dir;
    save_gguf_adapter(lora, c, dir.file("a.gguf"));
    const auto file = GgufFile::open(dir.file("a.gguf"));
    const auto base = GgufFile::open(test::shared_path(model));
    EXPECT_EQ(file->get_string("general.type"), "adapter");
    EXPECT_EQ(file->get_string("adapter.type"), "lora");
    EXPECT_EQ(file->get_string("general.architecture"), base->get_string("general.architecture"));
    ASSERT_NE(file->find("adapter.lora.alpha"), nullptr);
    EXPECT_EQ(file->find("adapter.lora.alpha")->type, GgufType::FLOAT32);
    EXPECT_EQ(file->get_float("adapter.lora.alpha"), 12.0);
    EXPECT_EQ(file->tensors().size(), 2 * lora.adapters.size());
    for (const LoraAdapter& a : lora.adapters) {
      const std::string name = "blk." + std::to_string(a.layer) + "." + lora_target_gguf(a.target) + ".weight";
      const GgufTensor* w = base->find_tensor(name);
      const GgufTensor* ta = file->find_tensor(name + ".lora_a");
      const GgufTensor* tb = file->find_tensor(name + ".lora_b");
      ASSERT_TRUE(w && ta && tb) << name;
      EXPECT_EQ(ta->type, DType::F32);
      EXPECT_EQ(tb->type, DType::F32);
      // llama_adapter_lora_init's checks: model ne[0] == a ne[0], model ne[1] == b ne[1], a ne[1] == b ne[0].
      EXPECT_EQ(ta->shape, (std::vector<int64_t>{w->shape[0], 4})) << name;
      EXPECT_EQ(tb->shape, (std::vector<int64_t>{4, w->shape[1]})) << name;
      // Rows as the GGUF base stores them (this lora was made for the GGUF): unchanged.
      EXPECT_TRUE(tensor_floats(*ta) == std::vector<float>(a.a.begin(), a.a.end())) << name;
      EXPECT_TRUE(tensor_floats(*tb) == std::vector<float>(a.b.begin(), a.b.end())) << name;
    }
  }
}

TEST(TrainAdapterIo, BadAdaptersAreRefusedByName) {
  const ModelConfig c = config_of("golden/llama-f32.gguf");
  const Lora lora = random_lora(c, 2, 4, {LoraTarget::q, LoraTarget::v}, 23);
  test::TempDir good;
  save_peft_adapter(lora, c, good.path());
  const std::string config_text = test::read_text(good.file("adapter_config.json"));
  const std::vector<uint8_t> weights = test::read_bytes(good.file("adapter_model.safetensors"));

  // A folder holding `config` and `weights`; returns load_peft_adapter's error.
  auto refusal = [&](const std::string& config, const std::vector<uint8_t>& bytes) {
    test::TempDir dir;
    if (!config.empty()) dir.write("adapter_config.json", config);
    if (!bytes.empty()) dir.write("adapter_model.safetensors", bytes);
    return error_of([&] { load_peft_adapter(dir.path(), c); });
  };
  auto edited = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json j = nlohmann::json::parse(config_text);
    j[key] = value;
    return j.dump();
  };
  auto contains = [](const std::string& text, const std::string& part) {
    return testing::AssertionResult(text.find(part) != std::string::npos) << "'" << text << "' lacks '" << part << "'";
  };

  EXPECT_TRUE(contains(refusal("", weights), "no adapter_config.json"));
  EXPECT_TRUE(contains(refusal(config_text, {}), "no adapter_model.safetensors"));
  EXPECT_TRUE(contains(refusal("{\"r\": 2,", weights), "adapter_config.json"));
  EXPECT_TRUE(contains(refusal(edited("target_modules", {"q_proj", "qkv_proj"}), weights), "target module 'qkv_proj'"));
  EXPECT_TRUE(contains(refusal(edited("target_modules", ".*proj"), weights), "regular expression"));
  EXPECT_TRUE(contains(refusal(edited("use_rslora", true), weights), "use_rslora"));
  EXPECT_TRUE(contains(refusal(edited("r", 0), weights), "'r'"));
  EXPECT_TRUE(contains(refusal(edited("r", 3), weights), "lora_A.weight has shape [2, 256] but this model needs [3, 256] (r = 3)"));
  EXPECT_TRUE(contains(refusal(edited("target_modules", {"q_proj", "v_proj", "o_proj"}), weights),
                       "missing tensor base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight"));
  EXPECT_TRUE(contains(refusal(edited("target_modules", {"q_proj"}), weights),
                       "unexpected tensor base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"));

  // Corrupt safetensors: a header length past the end, a header that is not JSON.
  std::vector<uint8_t> bad = weights;
  const uint64_t huge = bad.size();
  std::memcpy(bad.data(), &huge, 8);
  EXPECT_TRUE(contains(refusal(config_text, bad), "header length"));
  bad = weights;
  bad[8] = 'x';
  EXPECT_TRUE(contains(refusal(config_text, bad), "adapter_model.safetensors: safetensors header"));

  // A wrong shape (B with a wrong number of rows) and a float16 tensor.
  std::vector<SafetensorsF32> tensors;
  for (const LoraAdapter& a : lora.adapters) {
    const std::string m = module_name(a.layer, a.target);
    tensors.push_back({m + ".lora_A.weight", {2, a.in}, std::vector<float>(a.a.begin(), a.a.end())});
    const int64_t rows = a.layer == 1 && a.target == LoraTarget::v ? a.out + 1 : a.out;
    tensors.push_back({m + ".lora_B.weight", {rows, 2}, std::vector<float>(static_cast<size_t>(rows * 2), 0.5f)});
  }
  test::TempDir scratch;
  write_safetensors(scratch.file("w.safetensors"), tensors);
  EXPECT_TRUE(contains(refusal(config_text, test::read_bytes(scratch.file("w.safetensors"))),
                       "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight has shape [129, 2] but this "
                       "model needs [128, 2]"));
  std::string header = "{\"" + module_name(0, LoraTarget::q) +
                       ".lora_A.weight\":{\"dtype\":\"F16\",\"shape\":[2,256],\"data_offsets\":[0,1024]}}";
  std::vector<uint8_t> f16(8 + header.size() + 1024, 0);
  const uint64_t n = header.size();
  std::memcpy(f16.data(), &n, 8);
  std::memcpy(f16.data() + 8, header.data(), header.size());
  EXPECT_TRUE(contains(refusal(config_text, f16), "lora_A.weight is F16; Orchard reads float32"));

  // A NaN or an infinity anywhere (found by fuzz/peft_adapter_fuzz.cpp: it loaded, and poisoned
  // whatever the adapter was merged into).
  for (const float bad_value : {std::nanf(""), -INFINITY}) {
    tensors.clear();
    for (const LoraAdapter& a : lora.adapters) {
      const std::string m = module_name(a.layer, a.target);
      std::vector<float> av(a.a.begin(), a.a.end()), bv(a.b.begin(), a.b.end());
      if (a.layer == 1 && a.target == LoraTarget::v) bv[3] = bad_value;
      tensors.push_back({m + ".lora_A.weight", {2, a.in}, av});
      tensors.push_back({m + ".lora_B.weight", {a.out, 2}, bv});
    }
    write_safetensors(scratch.file("w.safetensors"), tensors);
    EXPECT_TRUE(contains(refusal(config_text, test::read_bytes(scratch.file("w.safetensors"))),
                         "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight holds " +
                             std::string(std::isnan(bad_value) ? "nan" : "-inf") + " at element 3"));
  }

  // Saving an adapter that does not fit the model.
  Lora wrong = lora;
  wrong.adapters[1].b.pop_back();
  EXPECT_TRUE(contains(error_of([&] { save_peft_adapter(wrong, c, scratch.file("x")); }), "blk.0.attn_v"));
  wrong = lora;
  wrong.adapters[0].layer = 7;
  EXPECT_TRUE(contains(error_of([&] { save_gguf_adapter(wrong, c, scratch.file("x.gguf")); }),
                       "blk.7.attn_q is outside the model's 2 layers"));
}

}  // namespace
}  // namespace orchard::train
