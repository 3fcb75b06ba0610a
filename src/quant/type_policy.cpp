#include "quant/type_policy.h"

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
      {"q4_os", "Orchard compact 4-bit: Q4_K everywhere (Q4_0 where rows are not 256-wide), Q6_K attn_v; ~4.5-4.6 bpw", 14},
      {"q4_om", "Orchard 4-bit mix: Q4_K, Q6_K output head and attn_v/ffn_down of sensitive layers (Q4_K_M's size)", 15},
      {"q4_0", "Q4_0 with searched scales, Q6_K output head (llama.cpp's Q4_0 layout)", 2},
      {"q4_k_m", "alias of q4_om", 15},
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

DType choose_type(const Recipe& recipe, const TensorInfo& t, int64_t n_layers) {
  if (t.role == TensorRole::vector) return DType::F32;
  const std::string& r = recipe.name;
  DType type = DType::F32;
  if (r == "f32") type = DType::F32;
  else if (r == "f16") type = DType::F16;
  else if (r == "bf16") type = DType::BF16;
  else if (r == "q8_0") type = DType::Q8_0;
  else if (r == "q6_k") type = DType::Q6_K;
  else if (r == "q4_0") type = is_head(t) ? DType::Q6_K : DType::Q4_0;
  else if (r == "q4_om" || r == "q4_k_m") {
    type = DType::Q4_K;
    if (is_head(t)) type = DType::Q6_K;
    else if ((t.role == TensorRole::attn_v || t.role == TensorRole::ffn_down) && sensitive_layer(t.layer, n_layers))
      type = DType::Q6_K;
  } else if (r == "q4_os") {
    // attn_v is a few percent of the weights and feeds every head's output directly.
    type = t.role == TensorRole::attn_v ? DType::Q6_K : DType::Q4_K;
  } else {
    fail("--type: unknown quantization type '", r, "'");
  }
  return fit_row_length(type, t.shape.empty() ? 1 : t.shape[0]);
}

}  // namespace orchard
