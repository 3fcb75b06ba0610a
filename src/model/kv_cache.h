// The attention KV cache: keys and values of every layer at every position, float32.
#pragma once
#include <cstdint>
#include <vector>

namespace orchard {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_ctx, int64_t kv_dim)
      : n_ctx_(n_ctx), kv_dim_(kv_dim),
        keys_(static_cast<size_t>(n_layers * n_ctx * kv_dim)),
        values_(keys_.size()) {}

  int64_t n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  // Row of `kv_dim` floats for `layer` at `position`; rows of one layer are contiguous.
  float* key(int64_t layer, int64_t position) { return keys_.data() + offset(layer, position); }
  float* value(int64_t layer, int64_t position) { return values_.data() + offset(layer, position); }

 private:
  size_t offset(int64_t layer, int64_t position) const {
    return static_cast<size_t>((layer * n_ctx_ + position) * kv_dim_);
  }
  int64_t n_ctx_, kv_dim_;
  std::vector<float> keys_, values_;
};

}  // namespace orchard
