// Model configuration and tensors from a Hugging Face folder: config.json + safetensors.
// Tensor names are mapped to the GGUF names the rest of the engine uses.
#include <cmath>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_parse.h"
#include "formats/safetensors.h"
#include "model/model_impl.h"

namespace orchard {
namespace {

using nlohmann::json;

int64_t positive_int(const json& config, const std::string& path, const char* key,
                     std::optional<int64_t> fallback = std::nullopt) {
  if (!config.contains(key) || config[key].is_null()) {
    if (fallback) return *fallback;
    fail(path, ": missing field '", key, "'");
  }
  const json& v = config[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t{1} << 31))
    fail(path, ": field '", key, "' must be a positive integer");
  return v.get<int64_t>();
}

double number(const json& config, const std::string& path, const char* key, double fallback) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  if (!config[key].is_number()) fail(path, ": field '", key, "' must be a number");
  return config[key].get<double>();
}

bool boolean(const json& config, const std::string& path, const char* key, bool fallback) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  if (!config[key].is_boolean()) fail(path, ": field '", key, "' must be true or false");
  return config[key].get<bool>();
}

std::string architecture_of(const json& config, const std::string& path) {
  std::string model_type;
  if (config.contains("model_type") && config["model_type"].is_string())
    model_type = config["model_type"].get<std::string>();
  if (config.contains("architectures") && config["architectures"].is_array() &&
      !config["architectures"].empty() && config["architectures"][0].is_string()) {
    const std::string cls = config["architectures"][0].get<std::string>();
    if (cls == "LlamaForCausalLM") return "llama";
    if (cls == "Qwen2ForCausalLM") return "qwen2";
    if (cls == "Qwen3ForCausalLM") return "qwen3";
    if (model_type.empty()) fail(path, ": unknown architecture '", cls, "' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
  }
  if (model_type == "llama" || model_type == "qwen2" || model_type == "qwen3") return model_type;
  if (model_type.empty()) fail(path, ": neither 'architectures' nor 'model_type' names the architecture");
  fail(path, ": unknown model_type '", model_type, "' (supported: llama, qwen2, qwen3)");
}

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; empty for names the
// engine does not use.
std::string gguf_name(const std::string& hf) {
  static const std::unordered_map<std::string, std::string> top = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  if (auto it = top.find(hf); it != top.end()) return it->second;
  static const std::unordered_map<std::string, std::string> per_layer = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  static const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) != 0) return {};
  const size_t dot = hf.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return {};
  const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
  if (layer.find_first_not_of("0123456789") != std::string::npos) return {};
  auto it = per_layer.find(hf.substr(dot + 1));
  if (it == per_layer.end()) return {};
  return "blk." + layer + "." + it->second;
}

}  // namespace

TensorTable load_hf_model(const std::string& folder, Model::Impl& impl) {
  const std::string config_path = folder + "/config.json";
  if (!file_exists(config_path)) fail(folder, ": no config.json in this folder");
  const json config = parse_json(read_text_file(config_path), config_path);
  if (!config.is_object()) fail(config_path, ": expected a JSON object");

  ModelConfig& c = impl.config;
  c.source_format = "safetensors";
  c.architecture = architecture_of(config, config_path);
  c.n_vocab = positive_int(config, config_path, "vocab_size");
  c.dim = positive_int(config, config_path, "hidden_size");
  c.ffn_dim = positive_int(config, config_path, "intermediate_size");
  c.n_layers = positive_int(config, config_path, "num_hidden_layers");
  c.n_heads = positive_int(config, config_path, "num_attention_heads");
  c.n_kv_heads = positive_int(config, config_path, "num_key_value_heads", c.n_heads);
  if (c.dim % c.n_heads != 0 && !config.contains("head_dim"))
    fail(config_path, ": hidden_size ", c.dim, " is not a multiple of num_attention_heads ", c.n_heads);
  c.head_dim = positive_int(config, config_path, "head_dim", c.dim / c.n_heads);
  c.rope_dims = c.head_dim;
  c.context_length = positive_int(config, config_path, "max_position_embeddings", 4096);
  c.rms_norm_eps = static_cast<float>(number(config, config_path, "rms_norm_eps", 1e-6));
  c.rope_theta = static_cast<float>(number(config, config_path, "rope_theta", 10000.0));
  if (!(c.rms_norm_eps >= 0) || !(c.rope_theta > 0))
    fail(config_path, ": rms_norm_eps and rope_theta must be positive numbers");
  c.tied_output = boolean(config, config_path, "tie_word_embeddings", false);
  c.rope_style = RopeStyle::neox;  // Hugging Face llama and Qwen both rotate half-split pairs
  c.qk_norm = c.architecture == "qwen3";
  if (config.contains("hidden_act") && config["hidden_act"] != "silu")
    fail(config_path, ": hidden_act ", config["hidden_act"].dump(), " is not supported (silu)");

  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null()) {
    const json& s = config["rope_scaling"];
    if (!s.is_object()) fail(config_path, ": rope_scaling must be an object");
    std::string type;
    if (s.contains("rope_type") && s["rope_type"].is_string()) type = s["rope_type"];
    else if (s.contains("type") && s["type"].is_string()) type = s["type"];
    if (type == "llama3") {
      const double factor = number(s, config_path, "factor", 0);
      const double low = number(s, config_path, "low_freq_factor", 0);
      const double high = number(s, config_path, "high_freq_factor", 0);
      const double original = number(s, config_path, "original_max_position_embeddings", 0);
      if (!(factor > 0) || !(low > 0) || !(high > low) || !(original > 0))
        fail(config_path, ": rope_scaling (llama3) needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0");
      impl.weights.rope_freq_factors = llama3_rope_freq_factors(c.rope_theta, c.rope_dims, factor, low, high, original);
      c.has_rope_freq_factors = true;
    } else if (type != "default") {
      fail(config_path, ": rope_scaling type '", type, "' is not supported (llama3)");
    }
  }

  SafetensorsSet set = load_safetensors_folder(folder);
  // Checked before bind_weights sizes anything by it (2^31 layers ended in "out of memory").
  if (static_cast<uint64_t>(c.n_layers) > set.tensors.size() / kMinTensorsPerLayer)
    fail(config_path, ": num_hidden_layers = ", c.n_layers, " but the safetensors files hold only ", set.tensors.size(),
         " tensors (each layer needs at least ", kMinTensorsPerLayer, ")");
  TensorTable table;
  for (TensorRef& t : set.tensors) {
    impl.tensors.push_back(t);
    std::string name = gguf_name(t.name);
    if (name.empty()) continue;
    t.name = name;
    table.emplace(name, t);
  }
  if (c.tied_output) table.erase("output.weight");
  else if (!table.count("output.weight"))
    fail(folder, ": lm_head.weight is missing and config.json does not tie the word embeddings");
  impl.file_bytes = set.total_bytes;
  impl.files = std::move(set.files);
  return table;
}

}  // namespace orchard
