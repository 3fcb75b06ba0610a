// The attention KV cache: keys and values of every layer at every position, as float32 (the
// reference kernels) or float16 (the fast kernels: half the memory and half the bytes that
// attention reads per decoded token).
#pragma once
#include <cstdint>
#include <vector>

#include "base/half.h"
#include "kernels/kernels.h"

namespace orchard {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_ctx, int64_t kv_dim, KvType type)
      : n_ctx_(n_ctx), kv_dim_(kv_dim), type_(type),
        keys_(static_cast<size_t>(n_layers * n_ctx * kv_dim) * element_bytes(type)),
        values_(keys_.size()) {}

  int64_t n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  KvType type() const { return type_; }
  size_t bytes() const { return keys_.size() + values_.size(); }

  // Rows of `kv_dim` elements of layer `layer` from position 0, contiguous.
  const void* keys(int64_t layer) const { return keys_.data() + offset(layer, 0); }
  const void* values(int64_t layer) const { return values_.data() + offset(layer, 0); }

  // Stores one position's key and value rows, converting to the cache's type.
  void store(int64_t layer, int64_t position, const float* key, const float* value) {
    put(keys_.data() + offset(layer, position), key);
    put(values_.data() + offset(layer, position), value);
  }

  static size_t element_bytes(KvType type) { return type == KvType::f16 ? 2 : 4; }

 private:
  size_t offset(int64_t layer, int64_t position) const {
    return static_cast<size_t>((layer * n_ctx_ + position) * kv_dim_) * element_bytes(type_);
  }
  void put(uint8_t* dst, const float* src) const {
    if (type_ == KvType::f32) {
      std::copy(src, src + kv_dim_, reinterpret_cast<float*>(dst));
    } else {
      auto* h = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < kv_dim_; ++i) h[i] = f32_to_f16(src[i]);
    }
  }

  int64_t n_ctx_, kv_dim_;
  KvType type_;
  std::vector<uint8_t> keys_, values_;
};

}  // namespace orchard
