// Which GGUF type each tensor gets for a quantization recipe. Matrices get the recipe's base
// type; Orchard's 4-bit recipes then spend a budget of bits (for q4_os 4.53 bits per weight
// plus 128 KiB, at most the size of llama.cpp's Q4_0 layout; for q4_om the size of llama.cpp's
// Q4_K_M layout) on upgrading to Q6_K the tensors whose errors
// cost the most per bit: measured on the golden models (KL against f32), the attention
// matrices (v, k, then q and output) pay most, then the output head (or tied embedding), then
// ffn_down. MNN and llama.cpp's _M mixes give the embeddings and head more bits in the same spirit. A type whose blocks do not divide a tensor's rows falls back to
// the nearest type that fits (Q4_K -> Q4_0, Q6_K -> Q8_0, then F16), since GGUF stores whole
// blocks per row. Norms, biases and RoPE factors stay F32.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace orchard {

enum class TensorRole {
  token_embedding, output, attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down,
  vector,  // norms, biases, rope factors
};

struct TensorInfo {
  std::string name;
  TensorRole role;
  int64_t layer = -1;             // -1 outside the blocks
  std::vector<int64_t> shape;     // fastest dimension first
  bool tied_output = false;       // the token embedding also serves as the output head
};

struct Recipe {
  std::string name;
  std::string summary;
  uint32_t gguf_file_type;  // llama.cpp's general.file_type number for the closest mix
};

// The recipes `orchard quantize --type` accepts, in the order the help lists them.
const std::vector<Recipe>& quantization_recipes();
// orchard::Error naming --type and listing the choices when `name` is none of them.
const Recipe& find_recipe(const std::string& name);

// The type of every tensor of a model of `n_layers` blocks under `recipe`.
std::vector<DType> choose_types(const Recipe& recipe, const std::vector<TensorInfo>& tensors, int64_t n_layers);

// `preferred`, or the first fallback whose blocks divide rows of `row_length` elements.
DType fit_row_length(DType preferred, int64_t row_length);

}  // namespace orchard
