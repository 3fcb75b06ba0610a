#include "quant/type_policy.h"

#include <algorithm>

#include "base/error.h"

namespace orchard {
namespace {

// llama.cpp's choice of layers for its _M mixes: the first and last eighth, and every third
// layer between, where extra bits on attn_v / ffn_down lower the error most.
bool sensitive_layer(int64_t layer, int64_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

bool is_head(const TensorInfo& t) {
  return t.role == TensorRole::output || (t.role == TensorRole::token_embedding && t.tied_output);
}

}  // namespace

const std::vector<Recipe>& quantization_recipes() {
  static const std::vector<Recipe> recipes = {
      {"q4_os", "Orchard compact 4-bit: Q4_K (Q4_0 where rows are not 256-wide) and Q6_K within 4.53 bits per weight + 128 KiB, at most Q4_0's size", 14},
      {"q4_om", "Orchard 4-bit mix: Q4_K and Q6_K within the size of llama.cpp's Q4_K_M layout", 15},
      {"q4_0", "Q4_0 with searched scales, Q6_K output head (llama.cpp's Q4_0 layout)", 2},
      {"q4_k_m", "llama.cpp's Q4_K_M layout (Q6_K head, attn_v/ffn_down of some layers) with searched scales", 15},
      {"q6_k", "Q6_K everywhere", 18},
      {"q8_0", "Q8_0 everywhere", 7},
      {"f16", "F16 matrices", 1},
      {"bf16", "BF16 matrices", 32},
      {"f32", "F32 matrices", 0},
  };
  return recipes;
}

const Recipe& find_recipe(const std::string& name) {
  std::string choices;
  for (const Recipe& r : quantization_recipes()) {
    if (r.name == name) return r;
    choices += (choices.empty() ? "" : ", ") + r.name;
  }
  fail("--type: unknown quantization type '", name, "' (choose one of: ", choices, ")");
}

DType fit_row_length(DType preferred, int64_t row_length) {
  DType type = preferred;
  for (;;) {
    if (row_length % traits(type).block_elements == 0) return type;
    switch (type) {
      case DType::Q4_K: type = DType::Q4_0; break;
      case DType::Q6_K: type = DType::Q8_0; break;
      default: return DType::F16;
    }
  }
}

namespace {

// The fixed layouts: one type for all matrices, or llama.cpp's mixes.
DType layout_type(const std::string& r, const TensorInfo& t, int64_t n_layers) {
  if (t.role == TensorRole::vector) return DType::F32;
  DType type = DType::Q4_K;
  if (r == "f32") type = DType::F32;
  else if (r == "f16") type = DType::F16;
  else if (r == "bf16") type = DType::BF16;
  else if (r == "q8_0") type = DType::Q8_0;
  else if (r == "q6_k") type = DType::Q6_K;
  else if (r == "q4_0") type = is_head(t) ? DType::Q6_K : DType::Q4_0;
  else if (r == "q4_k_m") {
    if (is_head(t)) type = DType::Q6_K;
    else if ((t.role == TensorRole::attn_v || t.role == TensorRole::ffn_down) && sensitive_layer(t.layer, n_layers))
      type = DType::Q6_K;
  } else if (r != "q4_os" && r != "q4_om") {
    fail("--type: unknown quantization type '", r, "'");
  }
  return fit_row_length(type, t.shape.empty() ? 1 : t.shape[0]);
}

uint64_t tensor_bits(const TensorInfo& t, DType type) {
  int64_t rows = 1;
  for (size_t i = 1; i < t.shape.size(); ++i) rows *= t.shape[i];
  return 8 * row_bytes(type, t.shape[0]) * static_cast<uint64_t>(rows);
}

// q4_os's budget: 4.53 bits per weight (28.5% of an f16 file at the 1.5B shape) plus a fixed
// 128 KiB, never more than llama.cpp's Q4_0 layout. Upgrades go a whole tensor at a time, so a
// budget proportional to the weights alone goes unspent on small models: on 1.4M weights,
// 0.03 bits per weight is 5 KiB, less than the smallest upgrade (attn_v, 8 KiB). The fixed part
// lets small models upgrade their most sensitive tensors; on a 1.5B model it is 0.004% of the file.
constexpr double kCompactBitsPerWeight = 4.53;
constexpr uint64_t kCompactFixedAllowanceBits = uint64_t{8} * 128 * 1024;

// Upgrade order for the budgeted recipes, most KL saved per bit first.
int upgrade_rank(const TensorInfo& t, int64_t n_layers) {
  switch (t.role) {
    case TensorRole::attn_v: return 0;
    case TensorRole::attn_k: return 1;
    case TensorRole::attn_q: case TensorRole::attn_output: return 2;
    case TensorRole::output: return 3;
    case TensorRole::token_embedding: return t.tied_output ? 3 : 5;
    case TensorRole::ffn_down: return sensitive_layer(t.layer, n_layers) ? 4 : 5;
    default: return 6;
  }
}

}  // namespace

std::vector<DType> choose_types(const Recipe& recipe, const std::vector<TensorInfo>& tensors, int64_t n_layers) {
  std::vector<DType> types;
  for (const TensorInfo& t : tensors) types.push_back(layout_type(recipe.name, t, n_layers));
  if (recipe.name != "q4_os" && recipe.name != "q4_om") return types;

  uint64_t budget = 0, used = 0, q4_0_layout = 0;
  int64_t weights = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].role == TensorRole::vector) continue;
    used += tensor_bits(tensors[i], types[i]);
    int64_t n = 1;
    for (int64_t d : tensors[i].shape) n *= d;
    weights += n;
    if (recipe.name == "q4_om") budget += tensor_bits(tensors[i], layout_type("q4_k_m", tensors[i], n_layers));
    q4_0_layout += tensor_bits(tensors[i], layout_type("q4_0", tensors[i], n_layers));
  }
  if (recipe.name == "q4_os")
    budget = std::min(q4_0_layout, static_cast<uint64_t>(kCompactBitsPerWeight * static_cast<double>(weights)) +
                                       kCompactFixedAllowanceBits);

  std::vector<size_t> order;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].role != TensorRole::vector) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return upgrade_rank(tensors[a], n_layers) < upgrade_rank(tensors[b], n_layers);
  });
  for (size_t i : order) {
    const DType better = fit_row_length(DType::Q6_K, tensors[i].shape[0]);
    const uint64_t before = tensor_bits(tensors[i], types[i]), after = tensor_bits(tensors[i], better);
    if (after <= before || used - before + after > budget) continue;
    used = used - before + after;
    types[i] = better;
  }
  return types;
}

}  // namespace orchard
