// LoRA adapters to and from PEFT files, GGUF LoRAs and merged GGUFs (see adapter_io.h).
#include "train/adapter_io.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "model/adapter_impl.h"
#include "tensor/dequantize.h"

namespace orchard::train {
namespace {

// LoraTarget and the model layer's AdapterTarget list the projections in the same order.
static_assert(static_cast<int>(LoraTarget::q) == static_cast<int>(AdapterTarget::q) &&
              static_cast<int>(LoraTarget::o) == static_cast<int>(AdapterTarget::o) &&
              static_cast<int>(LoraTarget::down) == static_cast<int>(AdapterTarget::down));

bool is_attention(LoraTarget t) {
  return t == LoraTarget::q || t == LoraTarget::k || t == LoraTarget::v || t == LoraTarget::o;
}

// [out, in] of a target weight in a model of this configuration.
void target_dims(const ModelConfig& c, LoraTarget t, int64_t& in, int64_t& out) {
  adapter_target_dims(c, static_cast<AdapterTarget>(t), in, out);
}

bool rows_move(const ModelConfig& c, LoraTarget t) {
  return (t == LoraTarget::q || t == LoraTarget::k) && c.architecture == "llama";
}

// move_qk_rows (model/adapter_impl.h) moves the rows; the quantizer's
// SourceTensor::source_row (quant/model_tensors.cpp) is the same mapping, held by tests against
// the golden llama pair.
std::string layer_prefix(int64_t layer) { return "blk." + std::to_string(layer) + "."; }

std::string peft_module(int64_t layer, LoraTarget t) {
  return "base_model.model.model.layers." + std::to_string(layer) + (is_attention(t) ? ".self_attn." : ".mlp.") +
         lora_target_hf(t);
}

// Every adapter in range and in the model's shapes, each (layer, target) once, targets listed.
void check_lora(const Lora& lora, const ModelConfig& config, const std::string& what) {
  const int64_t r = lora.config.rank;
  if (r < 1) fail(what, ": lora rank ", r, " must be >= 1");
  if (!(lora.config.alpha > 0) || !std::isfinite(lora.config.alpha)) fail(what, ": lora alpha must be > 0");
  std::set<std::pair<int64_t, LoraTarget>> seen;
  for (const LoraAdapter& a : lora.adapters) {
    const std::string name = layer_prefix(a.layer) + lora_target_gguf(a.target);
    if (a.layer < 0 || a.layer >= config.n_layers)
      fail(what, ": adapter ", name, " is outside the model's ", config.n_layers, " layers");
    if (std::find(lora.config.targets.begin(), lora.config.targets.end(), a.target) == lora.config.targets.end())
      fail(what, ": adapter ", name, " is not one of the configuration's targets");
    if (!seen.insert({a.layer, a.target}).second) fail(what, ": adapter ", name, " appears twice");
    int64_t in = 0, out = 0;
    target_dims(config, a.target, in, out);
    if (a.in != in || a.out != out)
      fail(what, ": adapter ", name, " is [", a.out, ", ", a.in, "] but the model's weight is [", out, ", ", in, "]");
    if (static_cast<int64_t>(a.a.size()) != r * in || static_cast<int64_t>(a.b.size()) != out * r)
      fail(what, ": adapter ", name, " holds ", a.a.size(), " + ", a.b.size(), " values, not A [", r, ", ", in,
           "] and B [", out, ", ", r, "]");
  }
}

std::vector<float> to_floats(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

void write_text_atomically(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  out.write(text);
  out.commit();
}

}  // namespace

const char* lora_target_hf(LoraTarget target) { return adapter_target_hf(static_cast<AdapterTarget>(target)); }

bool lora_rows_permuted(const ModelConfig& config) { return adapter_rows_permuted(config); }

void save_peft_adapter(const Lora& lora, const ModelConfig& config, const std::string& dir,
                       const std::string& base_model) {
  check_lora(lora, config, dir);
  const int64_t r = lora.config.rank;
  const bool permuted = lora_rows_permuted(config);
  std::vector<SafetensorsF32> tensors;
  for (const LoraAdapter& a : lora.adapters) {
    const std::string module = peft_module(a.layer, a.target);
    tensors.push_back({module + ".lora_A.weight", {r, a.in}, to_floats(a.a)});
    const bool move = permuted && rows_move(config, a.target);
    tensors.push_back({module + ".lora_B.weight", {a.out, r},
                       to_floats(move ? move_qk_rows(a.b, a.out, r, config.head_dim, false, "lora") : a.b)});
  }

  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(base_model);
  j["r"] = r;
  // PEFT types lora_alpha as an int; keep it one when it is whole.
  const double alpha = lora.config.alpha;
  if (alpha == std::floor(alpha) && alpha < 1e15) j["lora_alpha"] = static_cast<int64_t>(alpha);
  else j["lora_alpha"] = alpha;
  std::vector<std::string> modules;
  for (LoraTarget t : lora.config.targets) modules.push_back(lora_target_hf(t));
  j["target_modules"] = modules;
  j["lora_dropout"] = 0.0;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["use_rslora"] = false;
  j["use_dora"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  j["modules_to_save"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["rank_pattern"] = nlohmann::ordered_json::object();
  j["alpha_pattern"] = nlohmann::ordered_json::object();

  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) fail(dir, ": cannot create the adapter folder: ", error.message());
  write_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  write_text_atomically(dir + "/adapter_config.json", j.dump(2) + "\n");
}

// The one PEFT parser is the model layer's (model/adapter_impl.h), which inference also uses; the
// trainer's reading differs only where the trainer cannot follow (float32 files, alpha / r).
Lora load_peft_adapter(const std::string& dir, const ModelConfig& config) {
  const AdapterFile file = read_peft_adapter(dir, config, PeftReadOptions{.trainer = true});
  Lora lora;
  lora.config.rank = file.rank;
  lora.config.alpha = file.alpha;
  lora.config.targets.clear();
  for (AdapterTarget t : file.targets) lora.config.targets.push_back(static_cast<LoraTarget>(t));
  for (const AdapterMatrices& m : file.matrices)
    lora.adapters.push_back(LoraAdapter{.layer = m.layer,
                                        .target = static_cast<LoraTarget>(m.target),
                                        .in = m.in,
                                        .out = m.out,
                                        .a = std::vector<double>(m.a.begin(), m.a.end()),
                                        .b = std::vector<double>(m.b.begin(), m.b.end())});
  return lora;
}

void save_gguf_adapter(const Lora& lora, const ModelConfig& config, const std::string& path) {
  check_lora(lora, config, path);
  const int64_t r = lora.config.rank;
  // A model read from a Hugging Face llama folder has Hugging Face's rows; llama.cpp's llama
  // GGUFs have them permuted.
  const bool to_gguf = config.architecture == "llama" && !lora_rows_permuted(config);
  GgufWriter w;
  w.set_string("general.architecture", config.architecture);
  w.set_string("general.type", "adapter");
  w.set_string("adapter.type", "lora");
  w.set_f32("adapter.lora.alpha", static_cast<float>(lora.config.alpha));
  for (const LoraAdapter& a : lora.adapters) {
    const std::string base = layer_prefix(a.layer) + lora_target_gguf(a.target) + ".weight";
    w.add_tensor(base + ".lora_a", {a.in, r}, DType::F32);   // [r, in] row-major
    w.add_tensor(base + ".lora_b", {r, a.out}, DType::F32);  // [out, r] row-major
  }
  w.begin(path);
  for (const LoraAdapter& a : lora.adapters) {
    const std::vector<float> fa = to_floats(a.a);
    const bool move = to_gguf && rows_move(config, a.target);
    const std::vector<float> fb = to_floats(move ? move_qk_rows(a.b, a.out, r, config.head_dim, true, "lora") : a.b);
    w.write(fa.data(), fa.size() * sizeof(float));
    w.write(fb.data(), fb.size() * sizeof(float));
  }
  w.finish();
}

void merge_adapter_into_gguf(const std::string& base_gguf, const Lora& lora, const std::string& out_path) {
  const std::shared_ptr<const GgufFile> file = GgufFile::open(base_gguf);
  const int64_t r = lora.config.rank;
  if (r < 1 || !(lora.config.alpha > 0)) fail(base_gguf, ": lora rank must be >= 1 and alpha > 0");
  const double s = lora.config.scale();
  std::map<std::string, const LoraAdapter*> by_tensor;
  for (const LoraAdapter& a : lora.adapters) {
    const std::string name = layer_prefix(a.layer) + lora_target_gguf(a.target) + ".weight";
    const GgufTensor* t = file->find_tensor(name);
    if (!t) fail(base_gguf, ": the adapter targets ", name, ", which this GGUF does not have");
    if (t->shape != std::vector<int64_t>{a.in, a.out})
      fail(base_gguf, ": ", name, " has ne [", t->shape.size() > 0 ? t->shape[0] : 0, ", ",
           t->shape.size() > 1 ? t->shape[1] : 0, "] but its adapter is for [in ", a.in, ", out ", a.out, "]");
    if (static_cast<int64_t>(a.a.size()) != r * a.in || static_cast<int64_t>(a.b.size()) != a.out * r)
      fail(base_gguf, ": the adapter for ", name, " does not hold A [", r, ", ", a.in, "] and B [", a.out, ", ", r, "]");
    if (t->type != DType::F32 && t->type != DType::F16 && t->type != DType::BF16)
      fail(base_gguf, ": ", name, " is ", dtype_name(t->type),
           ": merging a LoRA into a quantized weight would need requantizing it; merge into the F32, F16 or BF16 "
           "model and quantize the result");
    if (!by_tensor.emplace(name, &a).second) fail(base_gguf, ": two adapters target ", name);
  }

  GgufWriter w(file->alignment());
  for (const auto& [key, value] : file->metadata())
    if (key != "general.alignment") w.set(key, value);
  for (const GgufTensor& t : file->tensors())
    w.add_tensor(t.name, t.shape, by_tensor.count(t.name) ? DType::F32 : t.type);
  w.begin(out_path);
  std::vector<float> row;
  for (const GgufTensor& t : file->tensors()) {
    auto it = by_tensor.find(t.name);
    if (it == by_tensor.end()) {
      w.write(t.data, t.nbytes);
      continue;
    }
    const LoraAdapter& a = *it->second;
    const size_t row_bytes = t.nbytes / static_cast<uint64_t>(a.out);
    row.resize(static_cast<size_t>(a.in));
    std::vector<double> ba(static_cast<size_t>(a.in));
    for (int64_t o = 0; o < a.out; ++o) {
      dequantize_row(t.type, t.data + static_cast<size_t>(o) * row_bytes, row.data(), a.in);
      std::fill(ba.begin(), ba.end(), 0.0);
      for (int64_t k = 0; k < r; ++k) {
        const double b = a.b[static_cast<size_t>(o * r + k)];
        const double* arow = a.a.data() + k * a.in;
        for (int64_t i = 0; i < a.in; ++i) ba[static_cast<size_t>(i)] += b * arow[i];
      }
      for (int64_t i = 0; i < a.in; ++i)
        row[static_cast<size_t>(i)] = static_cast<float>(row[static_cast<size_t>(i)] + s * ba[static_cast<size_t>(i)]);
      w.write(row.data(), row.size() * sizeof(float));
    }
  }
  w.finish();
}

}  // namespace orchard::train
