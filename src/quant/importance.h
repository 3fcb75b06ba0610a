// Activation statistics for error-weighted quantization (the idea of llama.cpp's imatrix and of
// AWQ's activation-aware scaling): the model runs over calibration tokens and, for every weight
// matrix, the mean square of each input column is recorded. A weight multiplying a column that
// is large in practice matters more, so the scale search weighs its error by that mean square.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "orchard/model.h"

namespace orchard {

struct ImportanceTable {
  // GGUF tensor name -> E[x_i^2] per input column i (the tied output head is token_embd.weight).
  std::unordered_map<std::string, std::vector<float>> by_tensor;
  int64_t tokens = 0;
  const std::vector<float>* find(const std::string& name) const {
    auto it = by_tensor.find(name);
    return it == by_tensor.end() ? nullptr : &it->second;
  }
};

// Runs `tokens` through `model` in chunks of at most `chunk` tokens (each chunk a fresh
// sequence) and returns the statistics. `progress(done, total)` is called after each chunk.
ImportanceTable collect_importance(std::shared_ptr<const Model> model, std::span<const int32_t> tokens,
                                   int64_t chunk,
                                   const std::function<void(int64_t, int64_t)>& progress = {});

// Without calibration data, estimate_activation_moments (quant/activation_moments.h) estimates
// the same table from the weights.

}  // namespace orchard
