// LoRA adapter files (PEFT folders and GGUF LoRAs) read for a model, and Adapter::load.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/half.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/adapter_impl.h"

namespace orchard {
namespace {

constexpr AdapterTarget kAllTargets[] = {AdapterTarget::q,    AdapterTarget::k,  AdapterTarget::v,   AdapterTarget::o,
                                         AdapterTarget::gate, AdapterTarget::up, AdapterTarget::down};

bool is_attention(AdapterTarget t) {
  return t == AdapterTarget::q || t == AdapterTarget::k || t == AdapterTarget::v || t == AdapterTarget::o;
}

// Only a llama model's q and k rows are ever permuted (qwen GGUFs keep Hugging Face's order).
bool rows_move(const ModelConfig& c, AdapterTarget t) {
  return (t == AdapterTarget::q || t == AdapterTarget::k) && c.architecture == "llama";
}

std::string peft_module(int64_t layer, AdapterTarget t) {
  return "base_model.model.model.layers." + std::to_string(layer) + (is_attention(t) ? ".self_attn." : ".mlp.") +
         adapter_target_hf(t);
}

AdapterTarget target_from_hf(const std::string& name, const std::string& what) {
  for (AdapterTarget t : kAllTargets)
    if (name == adapter_target_hf(t)) return t;
  fail(what, ": target module '", name,
       "' is not one Orchard adapts (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
}

// Fields whose non-default values change what the adapter means: refused rather than ignored.
void refuse_peft_options(const nlohmann::json& j, const std::string& what, bool trainer) {
  auto is_true = [&](const char* key) { return j.contains(key) && j[key].is_boolean() && j[key].get<bool>(); };
  auto non_empty = [&](const char* key) {
    return j.contains(key) && !j[key].is_null() && !(j[key].is_object() && j[key].empty()) &&
           !(j[key].is_array() && j[key].empty());
  };
  if (trainer && is_true("use_rslora"))
    fail(what, ": use_rslora (scale alpha/sqrt(r)) is not supported by the trainer; it scales by alpha/r");
  if (is_true("use_dora")) fail(what, ": use_dora (DoRA) is not supported");
  if (is_true("fan_in_fan_out")) fail(what, ": fan_in_fan_out (transposed Conv1D weights) is not supported");
  if (j.contains("bias") && j["bias"] != "none") fail(what, ": bias ", j["bias"].dump(), " is not supported (\"none\")");
  if (non_empty("rank_pattern")) fail(what, ": rank_pattern (per-module ranks) is not supported");
  if (non_empty("alpha_pattern")) fail(what, ": alpha_pattern (per-module alphas) is not supported");
  if (non_empty("layers_to_transform")) fail(what, ": layers_to_transform (some layers only) is not supported");
  if (non_empty("modules_to_save")) fail(what, ": modules_to_save (fully trained modules) is not supported");
}

// `count` values of a float tensor as float32 (exactly: F16 and BF16 widen without rounding),
// refused unless every one is finite: a NaN or an infinity would pass into every output unnoticed.
std::vector<float> finite_floats(DType type, const uint8_t* data, int64_t count, const std::string& what,
                                 const std::string& name) {
  std::vector<float> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i) {
    float f = 0;
    if (type == DType::F32) {
      std::memcpy(&f, data + i * 4, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, data + i * 2, 2);
      f = type == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    if (!std::isfinite(f)) fail(what, ": tensor ", name, " holds ", f, " at element ", i, " (adapter values must be finite)");
    v[i] = f;
  }
  return v;
}

bool float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

const char* adapter_target_gguf(AdapterTarget target) {
  switch (target) {
    case AdapterTarget::q: return "attn_q";
    case AdapterTarget::k: return "attn_k";
    case AdapterTarget::v: return "attn_v";
    case AdapterTarget::o: return "attn_output";
    case AdapterTarget::gate: return "ffn_gate";
    case AdapterTarget::up: return "ffn_up";
    case AdapterTarget::down: return "ffn_down";
  }
  return "?";
}

const char* adapter_target_hf(AdapterTarget target) {
  switch (target) {
    case AdapterTarget::q: return "q_proj";
    case AdapterTarget::k: return "k_proj";
    case AdapterTarget::v: return "v_proj";
    case AdapterTarget::o: return "o_proj";
    case AdapterTarget::gate: return "gate_proj";
    case AdapterTarget::up: return "up_proj";
    case AdapterTarget::down: return "down_proj";
  }
  return "?";
}

void adapter_target_dims(const ModelConfig& c, AdapterTarget t, int64_t& in, int64_t& out) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  switch (t) {
    case AdapterTarget::q: in = c.dim, out = q; return;
    case AdapterTarget::k:
    case AdapterTarget::v: in = c.dim, out = kv; return;
    case AdapterTarget::o: in = q, out = c.dim; return;
    case AdapterTarget::gate:
    case AdapterTarget::up: in = c.dim, out = c.ffn_dim; return;
    case AdapterTarget::down: in = c.ffn_dim, out = c.dim; return;
  }
  fail("adapter: unknown target");
}

bool adapter_rows_permuted(const ModelConfig& config) {
  return config.architecture == "llama" && config.rope_style == RopeStyle::interleaved;
}

int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, within = r % head_dim;
  return h * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

double AdapterFile::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

AdapterFile read_peft_adapter(const std::string& dir, const ModelConfig& config, const PeftReadOptions& options) {
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
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number() || !(j["lora_alpha"].get<double>() > 0) ||
      !std::isfinite(j["lora_alpha"].get<double>()))
    fail(config_path, ": field 'lora_alpha' must be a number > 0");
  if (!j.contains("target_modules") || !j["target_modules"].is_array() || j["target_modules"].empty())
    fail(config_path, ": field 'target_modules' must be a non-empty list of module names",
         j.contains("target_modules") && j["target_modules"].is_string() ? " (a regular expression is not supported)"
                                                                          : "");
  refuse_peft_options(j, config_path, options.trainer);

  AdapterFile file;
  file.path = dir;
  file.rank = j["r"].get<int64_t>();
  file.alpha = j["lora_alpha"].get<double>();
  file.rslora = j.contains("use_rslora") && j["use_rslora"].is_boolean() && j["use_rslora"].get<bool>();
  for (const auto& m : j["target_modules"]) {
    if (!m.is_string()) fail(config_path, ": target_modules holds ", m.dump(), ", not a module name");
    const AdapterTarget t = target_from_hf(m.get<std::string>(), config_path);
    if (std::find(file.targets.begin(), file.targets.end(), t) != file.targets.end())
      fail(config_path, ": target module '", m.get<std::string>(), "' is listed twice");
    file.targets.push_back(t);
  }

  SafetensorsSet set;
  read_safetensors(map_file(weights_path), set);
  std::map<std::string, const TensorRef*> by_name;
  for (const TensorRef& t : set.tensors) by_name.emplace(t.name, &t);
  const int64_t r = file.rank;
  const bool permuted = adapter_rows_permuted(config);
  // The tensor `name` as [rows, cols] floats, refused unless a float type of exactly that shape.
  auto take = [&](const std::string& name, int64_t rows, int64_t cols) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(weights_path, ": missing tensor ", name);
    const TensorRef& t = *it->second;
    if (options.trainer && t.type != DType::F32)
      fail(weights_path, ": tensor ", name, " is ", dtype_name(t.type), "; Orchard reads float32 (F32) adapters");
    if (!float_type(t.type))
      fail(weights_path, ": tensor ", name, " is ", dtype_name(t.type), "; adapters are read as F32, F16 or BF16");
    if (t.shape != std::vector<int64_t>{cols, rows})
      fail(weights_path, ": tensor ", name, " has shape [", t.shape.size() == 2 ? std::to_string(t.shape[1]) : "?", ", ",
           t.shape.empty() ? "?" : std::to_string(t.shape[0]), t.shape.size() > 2 ? ", ..." : "",
           "] but this model needs [", rows, ", ", cols, "] (r = ", r, ")");
    std::vector<float> v = finite_floats(t.type, t.data, rows * cols, weights_path, name);
    by_name.erase(it);
    return v;
  };
  for (int64_t l = 0; l < config.n_layers; ++l)
    for (AdapterTarget t : file.targets) {
      AdapterMatrices m{.layer = l, .target = t, .in = 0, .out = 0, .a = {}, .b = {}};
      adapter_target_dims(config, t, m.in, m.out);
      const std::string module = peft_module(l, t);
      m.a = take(module + ".lora_A.weight", r, m.in);
      m.b = take(module + ".lora_B.weight", m.out, r);
      if (permuted && rows_move(config, t)) m.b = move_qk_rows(m.b, m.out, r, config.head_dim, true, weights_path);
      file.matrices.push_back(std::move(m));
    }
  if (!by_name.empty())
    fail(weights_path, ": unexpected tensor ", by_name.begin()->first, " (not a lora_A/lora_B of the listed targets in ",
         config.n_layers, " layers)");
  return file;
}

AdapterFile read_gguf_adapter(const std::string& path, const ModelConfig& config) {
  const std::shared_ptr<const GgufFile> gguf = GgufFile::open(path);
  const std::optional<std::string> type = gguf->get_string("general.type");
  if (type != "adapter")
    fail(path, ": not a GGUF adapter (general.type is ", type ? "\"" + *type + "\"" : std::string("missing"),
         ", not \"adapter\")");
  const std::optional<std::string> adapter_type = gguf->get_string("adapter.type");
  if (adapter_type != "lora")
    fail(path, ": adapter.type is ", adapter_type ? "\"" + *adapter_type + "\"" : std::string("missing"),
         "; Orchard applies \"lora\" adapters");
  const std::optional<std::string> arch = gguf->get_string("general.architecture");
  if (arch != config.architecture)
    fail(path, ": the adapter is for architecture ", arch ? "\"" + *arch + "\"" : std::string("(missing)"),
         " but the model is \"", config.architecture, "\"");

  // blk.L.<proj>.weight.lora_a / lora_b, each pair once.
  struct Pair {
    const GgufTensor* a = nullptr;
    const GgufTensor* b = nullptr;
  };
  std::map<std::pair<int64_t, AdapterTarget>, Pair> pairs;
  for (const GgufTensor& t : gguf->tensors()) {
    const std::string& name = t.name;
    bool parsed = false;
    if (name.rfind("blk.", 0) == 0) {
      const size_t dot = name.find('.', 4);
      const std::string layer_text = dot == std::string::npos ? "" : name.substr(4, dot - 4);
      const bool digits = !layer_text.empty() && layer_text.size() < 10 &&
                          std::all_of(layer_text.begin(), layer_text.end(), [](char c) { return c >= '0' && c <= '9'; });
      for (AdapterTarget target : kAllTargets) {
        if (!digits) break;
        const std::string stem = std::string(adapter_target_gguf(target)) + ".weight.lora_";
        const std::string rest = name.substr(dot + 1);
        if (rest != stem + "a" && rest != stem + "b") continue;
        const int64_t layer = std::stoll(layer_text);
        if (layer >= config.n_layers)
          fail(path, ": tensor ", name, " is for layer ", layer, " but the model has ", config.n_layers, " layers");
        Pair& p = pairs[{layer, target}];
        (rest.back() == 'a' ? p.a : p.b) = &t;
        parsed = true;
        break;
      }
    }
    if (!parsed)
      fail(path, ": unexpected tensor ", name, " (Orchard applies blk.L.<attn_q|attn_k|attn_v|attn_output|ffn_gate|"
           "ffn_up|ffn_down>.weight.lora_a / lora_b)");
  }
  if (pairs.empty()) fail(path, ": the adapter holds no lora_a / lora_b tensors");

  AdapterFile file;
  file.path = path;
  const bool to_hf = config.architecture == "llama" && !adapter_rows_permuted(config);
  for (const auto& [key, p] : pairs) {
    const auto [layer, target] = key;
    const std::string base = "blk." + std::to_string(layer) + "." + adapter_target_gguf(target) + ".weight";
    if (!p.a) fail(path, ": missing tensor ", base, ".lora_a (", base, ".lora_b has no partner)");
    if (!p.b) fail(path, ": missing tensor ", base, ".lora_b (", base, ".lora_a has no partner)");
    for (const GgufTensor* t : {p.a, p.b}) {
      if (!float_type(t->type))
        fail(path, ": tensor ", t->name, " is ", dtype_name(t->type), "; adapters are read as F32, F16 or BF16");
      if (t->shape.size() != 2) fail(path, ": tensor ", t->name, " is not a matrix");
    }
    int64_t in = 0, out = 0;
    adapter_target_dims(config, target, in, out);
    // lora_a: ne [in, r]; lora_b: ne [r, out].
    const int64_t ra = p.a->shape[1], rb = p.b->shape[0];
    if (ra != rb) fail(path, ": rank mismatch: ", p.a->name, " has rank ", ra, " but ", p.b->name, " has rank ", rb);
    if (file.rank == 0) file.rank = ra;
    if (ra != file.rank)
      fail(path, ": rank mismatch: ", p.a->name, " has rank ", ra, " but earlier tensors have rank ", file.rank);
    if (p.a->shape[0] != in || p.b->shape[1] != out)
      fail(path, ": ", base, "'s adapter is for [out ", p.b->shape[1], ", in ", p.a->shape[0],
           "] but the model's weight is [out ", out, ", in ", in, "]");
    if (ra < 1) fail(path, ": tensor ", p.a->name, " has rank 0");
    AdapterMatrices m{.layer = layer, .target = target, .in = in, .out = out, .a = {}, .b = {}};
    m.a = finite_floats(p.a->type, p.a->data, ra * in, path, p.a->name);
    m.b = finite_floats(p.b->type, p.b->data, out * ra, path, p.b->name);
    if (to_hf && rows_move(config, target)) m.b = move_qk_rows(m.b, out, ra, config.head_dim, false, path);
    if (std::find(file.targets.begin(), file.targets.end(), target) == file.targets.end()) file.targets.push_back(target);
    file.matrices.push_back(std::move(m));
  }
  std::sort(file.targets.begin(), file.targets.end());
  // llama.cpp: without adapter.lora.alpha (or with 0) the scale is 1, as if alpha were the rank.
  const std::optional<double> alpha = gguf->get_float("adapter.lora.alpha");
  file.alpha = alpha && *alpha != 0 ? *alpha : static_cast<double>(file.rank);
  if (!std::isfinite(file.alpha) || file.alpha < 0) fail(path, ": adapter.lora.alpha is ", file.alpha);
  return file;
}

AdapterFile read_adapter(const std::string& path, const ModelConfig& config) {
  if (is_directory(path)) return read_peft_adapter(path, config);
  if (!file_exists(path)) fail(path, ": no such adapter (a PEFT folder or a GGUF LoRA file)");
  return read_gguf_adapter(path, config);
}

// The delta's two loops, compiled for the widest vectors the CPU has (chosen once, at load): the
// model layer is built for baseline x86-64, whose 4-float vectors made a rank-16 adapter on every
// projection cost 17-28% of a 0.5B model's decode step and held 16 streams over 4 adapters at 0.73
// of the base's throughput. Every version does the same multiplies and adds in the same order
// (ISO C++ mode contracts nothing into FMAs, and each lane's sum keeps its order), so the
// results are bitwise the same whichever version runs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ORCHARD_WIDEST_VECTORS __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ORCHARD_WIDEST_VECTORS
#endif

ORCHARD_WIDEST_VECTORS float lora_a_dot(const AdapterMatrices& m, int64_t k, const float* x) {
  const float* a = m.a.data() + k * m.in;
  float lanes[kLoraLanes] = {};
  int64_t i = 0;
  for (; i + kLoraLanes <= m.in; i += kLoraLanes)
    for (int64_t j = 0; j < kLoraLanes; ++j) lanes[j] += a[i + j] * x[i + j];
  float sum = 0;
  for (int64_t j = 0; j < kLoraLanes; ++j) sum += lanes[j];
  for (; i < m.in; ++i) sum += a[i] * x[i];
  return sum;
}

// lora_a_dot of four rows, each element of A's row read once for the four: each row's lanes take
// the same products in the same order as lora_a_dot's.
ORCHARD_WIDEST_VECTORS void lora_a_dot4(const AdapterMatrices& m, int64_t k, const float* const x[4], float* u,
                                        int64_t u_stride) {
  const float* a = m.a.data() + k * m.in;
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
  float l0[kLoraLanes] = {}, l1[kLoraLanes] = {}, l2[kLoraLanes] = {}, l3[kLoraLanes] = {};
  int64_t i = 0;
  for (; i + kLoraLanes <= m.in; i += kLoraLanes)
    for (int64_t j = 0; j < kLoraLanes; ++j) {
      const float aj = a[i + j];
      l0[j] += aj * x0[i + j], l1[j] += aj * x1[i + j], l2[j] += aj * x2[i + j], l3[j] += aj * x3[i + j];
    }
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t j = 0; j < kLoraLanes; ++j) s0 += l0[j], s1 += l1[j], s2 += l2[j], s3 += l3[j];
  for (; i < m.in; ++i) s0 += a[i] * x0[i], s1 += a[i] * x1[i], s2 += a[i] * x2[i], s3 += a[i] * x3[i];
  u[0] = s0, u[u_stride] = s1, u[2 * u_stride] = s2, u[3 * u_stride] = s3;
}

namespace {
constexpr int64_t kLoraBlock = 256;  // outputs summed in one block of accumulators
int64_t rank_of(const AdapterMatrices& m) { return static_cast<int64_t>(m.bt.size()) / std::max<int64_t>(1, m.out); }
}  // namespace

ORCHARD_WIDEST_VECTORS void lora_add_b(const AdapterMatrices& m, const float* u, float scale, int64_t o_begin,
                                       int64_t o_end, float* y) {
  const int64_t r = rank_of(m);
  float acc[kLoraBlock];
  for (int64_t b = o_begin; b < o_end; b += kLoraBlock) {
    const int64_t n = std::min(kLoraBlock, o_end - b);
    std::fill_n(acc, n, 0.0f);
    for (int64_t k = 0; k < r; ++k) {
      const float* bt = m.bt.data() + k * m.out + b;
      const float uk = u[k];
      for (int64_t o = 0; o < n; ++o) acc[o] += bt[o] * uk;
    }
    for (int64_t o = 0; o < n; ++o) y[b + o] += scale * acc[o];
  }
}

// lora_add_b of four rows, each element of B read once for the four; each row's sums in
// lora_add_b's order.
ORCHARD_WIDEST_VECTORS void lora_add_b4(const AdapterMatrices& m, const float* u, int64_t u_stride, float scale,
                                        int64_t o_begin, int64_t o_end, float* const y[4]) {
  const int64_t r = rank_of(m);
  float a0[kLoraBlock], a1[kLoraBlock], a2[kLoraBlock], a3[kLoraBlock];
  for (int64_t b = o_begin; b < o_end; b += kLoraBlock) {
    const int64_t n = std::min(kLoraBlock, o_end - b);
    std::fill_n(a0, n, 0.0f), std::fill_n(a1, n, 0.0f), std::fill_n(a2, n, 0.0f), std::fill_n(a3, n, 0.0f);
    for (int64_t k = 0; k < r; ++k) {
      const float* bt = m.bt.data() + k * m.out + b;
      const float u0 = u[k], u1 = u[u_stride + k], u2 = u[2 * u_stride + k], u3 = u[3 * u_stride + k];
      for (int64_t o = 0; o < n; ++o) {
        const float v = bt[o];
        a0[o] += v * u0, a1[o] += v * u1, a2[o] += v * u2, a3[o] += v * u3;
      }
    }
    float *y0 = y[0] + b, *y1 = y[1] + b, *y2 = y[2] + b, *y3 = y[3] + b;
    for (int64_t o = 0; o < n; ++o)
      y0[o] += scale * a0[o], y1[o] += scale * a1[o], y2[o] += scale * a2[o], y3[o] += scale * a3[o];
  }
}

void add_lora_delta_row(const AdapterMatrices& m, float scale, const float* x, float* y) {
  const int64_t r = static_cast<int64_t>(m.a.size()) / std::max<int64_t>(1, m.in);
  std::vector<float> u(static_cast<size_t>(r));
  for (int64_t k = 0; k < r; ++k) u[static_cast<size_t>(k)] = lora_a_dot(m, k, x);
  lora_add_b(m, u.data(), scale, 0, m.out, y);
}

Adapter::Adapter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Adapter::~Adapter() = default;
const std::string& Adapter::path() const { return impl_->file.path; }
int64_t Adapter::rank() const { return impl_->file.rank; }

std::shared_ptr<const Adapter> Adapter::load(const Model& model, const std::string& path, float multiplier) {
  if (!std::isfinite(multiplier)) fail(path, ": the adapter's scale multiplier ", multiplier, " is not finite");
  auto impl = std::make_unique<Impl>();
  impl->file = read_adapter(path, model.config());
  impl->model = model.config();
  impl->multiplier = multiplier;
  impl->scale = static_cast<float>(impl->file.scale() * multiplier);
  impl->index.assign(static_cast<size_t>(model.config().n_layers), {-1, -1, -1, -1, -1, -1, -1});
  for (size_t i = 0; i < impl->file.matrices.size(); ++i) {
    AdapterMatrices& m = impl->file.matrices[i];
    impl->index[static_cast<size_t>(m.layer)][static_cast<size_t>(m.target)] = static_cast<int32_t>(i);
    const int64_t r = impl->file.rank;
    m.bt.resize(m.b.size());
    for (int64_t o = 0; o < m.out; ++o)
      for (int64_t k = 0; k < r; ++k) m.bt[static_cast<size_t>(k * m.out + o)] = m.b[static_cast<size_t>(o * r + k)];
  }
  return std::shared_ptr<const Adapter>(new Adapter(std::move(impl)));
}

}  // namespace orchard
