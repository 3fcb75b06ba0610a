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
#include "tensor/dequantize.h"

namespace orchard::train {
namespace {

constexpr LoraTarget kAllTargets[] = {LoraTarget::q,    LoraTarget::k,  LoraTarget::v,   LoraTarget::o,
                                      LoraTarget::gate, LoraTarget::up, LoraTarget::down};

bool is_attention(LoraTarget t) {
  return t == LoraTarget::q || t == LoraTarget::k || t == LoraTarget::v || t == LoraTarget::o;
}

// [out, in] of a target weight in a model of this configuration.
void target_dims(const ModelConfig& c, LoraTarget t, int64_t& in, int64_t& out) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  switch (t) {
    case LoraTarget::q: in = c.dim, out = q; return;
    case LoraTarget::k:
    case LoraTarget::v: in = c.dim, out = kv; return;
    case LoraTarget::o: in = q, out = c.dim; return;
    case LoraTarget::gate:
    case LoraTarget::up: in = c.dim, out = c.ffn_dim; return;
    case LoraTarget::down: in = c.ffn_dim, out = c.dim; return;
  }
  fail("lora: unknown target");
}

bool rows_move(const ModelConfig& c, LoraTarget t) {
  return (t == LoraTarget::q || t == LoraTarget::k) && c.architecture == "llama";
}

// llama.cpp's converter stores Hugging Face's q/k rows per head with the two halves of each head
// interleaved: GGUF row h*hd + 2j + s (pair j, member s) is Hugging Face row h*hd + s*hd/2 + j.
// The same mapping as the quantizer's SourceTensor::source_row (quant/model_tensors.cpp), which
// writes Hugging Face llama folders as GGUF; tests hold it against the golden llama pair.
int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, within = r % head_dim;
  return h * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

// Rows [rows, cols] from GGUF order to Hugging Face order (to_hf) or back.
std::vector<double> move_rows(const std::vector<double>& m, int64_t rows, int64_t cols, int64_t head_dim, bool to_hf) {
  if (head_dim <= 0 || head_dim % 2 != 0 || rows % head_dim != 0)
    fail("lora: q/k rows (", rows, ") are not whole heads of an even head_dim (", head_dim, ")");
  std::vector<double> out(m.size());
  for (int64_t g = 0; g < rows; ++g) {
    const int64_t h = hf_row_of_gguf_row(g, head_dim);
    const int64_t from = to_hf ? g : h, to = to_hf ? h : g;
    std::copy_n(m.begin() + from * cols, cols, out.begin() + to * cols);
  }
  return out;
}

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

LoraTarget target_from_hf(const std::string& name, const std::string& what) {
  for (LoraTarget t : kAllTargets)
    if (name == lora_target_hf(t)) return t;
  fail(what, ": target module '", name,
       "' is not one Orchard trains (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
}

// Fields whose non-default values change what the adapter means: refused rather than ignored.
void refuse_peft_options(const nlohmann::json& j, const std::string& what) {
  auto is_true = [&](const char* key) { return j.contains(key) && j[key].is_boolean() && j[key].get<bool>(); };
  auto non_empty = [&](const char* key) {
    return j.contains(key) && !j[key].is_null() && !(j[key].is_object() && j[key].empty()) &&
           !(j[key].is_array() && j[key].empty());
  };
  if (is_true("use_rslora")) fail(what, ": use_rslora (scale alpha/sqrt(r)) is not supported; Orchard scales by alpha/r");
  if (is_true("use_dora")) fail(what, ": use_dora (DoRA) is not supported");
  if (is_true("fan_in_fan_out")) fail(what, ": fan_in_fan_out (transposed Conv1D weights) is not supported");
  if (j.contains("bias") && j["bias"] != "none") fail(what, ": bias ", j["bias"].dump(), " is not supported (\"none\")");
  if (non_empty("rank_pattern")) fail(what, ": rank_pattern (per-module ranks) is not supported");
  if (non_empty("alpha_pattern")) fail(what, ": alpha_pattern (per-module alphas) is not supported");
  if (non_empty("layers_to_transform")) fail(what, ": layers_to_transform (some layers only) is not supported");
  if (non_empty("modules_to_save")) fail(what, ": modules_to_save (fully trained modules) is not supported");
}

}  // namespace

const char* lora_target_hf(LoraTarget target) {
  switch (target) {
    case LoraTarget::q: return "q_proj";
    case LoraTarget::k: return "k_proj";
    case LoraTarget::v: return "v_proj";
    case LoraTarget::o: return "o_proj";
    case LoraTarget::gate: return "gate_proj";
    case LoraTarget::up: return "up_proj";
    case LoraTarget::down: return "down_proj";
  }
  return "?";
}

bool lora_rows_permuted(const ModelConfig& config) {
  return config.architecture == "llama" && config.rope_style == RopeStyle::interleaved;
}

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
                       to_floats(move ? move_rows(a.b, a.out, r, config.head_dim, true) : a.b)});
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

Lora load_peft_adapter(const std::string& dir, const ModelConfig& config) {
  const std::string config_path = dir + "/adapter_config.json";
  const std::string weights_path = dir + "/adapter_model.safetensors";
  if (!file_exists(config_path)) fail(dir, ": no adapter_config.json in this folder");
  if (!file_exists(weights_path)) fail(dir, ": no adapter_model.safetensors in this folder");
  const nlohmann::json j = parse_json(read_text_file(config_path, kMaxJsonFileBytes), config_path);
  if (!j.is_object()) fail(config_path, ": expected a JSON object");
  if (!j.contains("peft_type") || j["peft_type"] != "LORA")
    fail(config_path, ": peft_type must be \"LORA\"", j.contains("peft_type") ? " (is " + j["peft_type"].dump() + ")" : "");
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() < 1 || j["r"].get<int64_t>() > 65536)
    fail(config_path, ": field 'r' must be an integer in [1, 65536]");
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number() || !(j["lora_alpha"].get<double>() > 0))
    fail(config_path, ": field 'lora_alpha' must be a number > 0");
  if (!j.contains("target_modules") || !j["target_modules"].is_array() || j["target_modules"].empty())
    fail(config_path, ": field 'target_modules' must be a non-empty list of module names",
         j.contains("target_modules") && j["target_modules"].is_string() ? " (a regular expression is not supported)"
                                                                          : "");
  refuse_peft_options(j, config_path);

  Lora lora;
  lora.config.rank = j["r"].get<int64_t>();
  lora.config.alpha = j["lora_alpha"].get<double>();
  lora.config.targets.clear();
  for (const auto& m : j["target_modules"]) {
    if (!m.is_string()) fail(config_path, ": target_modules holds ", m.dump(), ", not a module name");
    const LoraTarget t = target_from_hf(m.get<std::string>(), config_path);
    if (std::find(lora.config.targets.begin(), lora.config.targets.end(), t) != lora.config.targets.end())
      fail(config_path, ": target module '", m.get<std::string>(), "' is listed twice");
    lora.config.targets.push_back(t);
  }

  SafetensorsSet set;
  read_safetensors(map_file(weights_path), set);
  std::map<std::string, const TensorRef*> by_name;
  for (const TensorRef& t : set.tensors) by_name.emplace(t.name, &t);
  const int64_t r = lora.config.rank;
  const bool permuted = lora_rows_permuted(config);
  // The tensor `name` as [rows, cols] doubles, refused unless float32 of exactly that shape.
  auto take = [&](const std::string& name, int64_t rows, int64_t cols) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(weights_path, ": missing tensor ", name);
    const TensorRef& t = *it->second;
    if (t.type != DType::F32)
      fail(weights_path, ": tensor ", name, " is ", dtype_name(t.type), "; Orchard reads float32 (F32) adapters");
    if (t.shape != std::vector<int64_t>{cols, rows})
      fail(weights_path, ": tensor ", name, " has shape [", t.shape.size() == 2 ? std::to_string(t.shape[1]) : "?", ", ",
           t.shape.empty() ? "?" : std::to_string(t.shape[0]), t.shape.size() > 2 ? ", ..." : "",
           "] but this model needs [", rows, ", ", cols, "] (r = ", r, ")");
    std::vector<double> v(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < v.size(); ++i) {
      float f;
      std::memcpy(&f, t.data + i * sizeof(float), sizeof f);
      // A NaN or infinity would pass into every merged weight and every output unnoticed.
      if (!std::isfinite(f))
        fail(weights_path, ": tensor ", name, " holds ", f, " at element ", i, " (adapter values must be finite)");
      v[i] = f;
    }
    by_name.erase(it);
    return v;
  };
  for (int64_t l = 0; l < config.n_layers; ++l)
    for (LoraTarget t : lora.config.targets) {
      LoraAdapter a{.layer = l, .target = t, .in = 0, .out = 0, .a = {}, .b = {}};
      target_dims(config, t, a.in, a.out);
      const std::string module = peft_module(l, t);
      a.a = take(module + ".lora_A.weight", r, a.in);
      a.b = take(module + ".lora_B.weight", a.out, r);
      if (permuted && rows_move(config, t)) a.b = move_rows(a.b, a.out, r, config.head_dim, false);
      lora.adapters.push_back(std::move(a));
    }
  if (!by_name.empty())
    fail(weights_path, ": unexpected tensor ", by_name.begin()->first, " (not a lora_A/lora_B of the listed targets in ",
         config.n_layers, " layers)");
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
    const std::vector<float> fb = to_floats(move ? move_rows(a.b, a.out, r, config.head_dim, false) : a.b);
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
