// The attention KV cache: keys and values of every layer at every position, as float32 (the
// reference kernels), float16 (the fast kernels: half the memory and half the bytes that
// attention reads per decoded token), or int8 with a scale per position and KV head (a quarter
// of float32's; an option for long contexts).
//
// Each KV head's positions lie together ([layer][KV head][position][head_dim]), not each
// position's heads: attention reads one KV head's rows at a time, so its reads run in one
// sequential stream instead of a row every n_kv_heads rows. Measured, one thread's 6 query heads
// of a 1.5B decode step, f16 cache from memory: 3.4 -> 2.25 us at position 64, 17.5 -> 11.7 at
// position 256 (from cache both take 1.7 and 6.3). The keys lie in blocks of kKeyBlock positions,
// [head_dim][kKeyBlock] each (kernels.h says why), every KV head's padded to whole blocks.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/half.h"
#include "base/memory_limit.h"
#include "kernels/kernels.h"

namespace orchard {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_ctx, int64_t n_kv_heads, int64_t head_dim, KvType type)
      : n_ctx_(n_ctx), key_ctx_(key_positions(n_ctx)), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
        kv_dim_(n_kv_heads * head_dim), type_(type),
        keys_(static_cast<size_t>(n_layers * key_ctx_ * kv_dim_) * element_bytes(type)),
        values_(static_cast<size_t>(n_layers * n_ctx * kv_dim_) * element_bytes(type)),
        key_scales_(type == KvType::q8 ? static_cast<size_t>(n_layers * n_ctx * n_kv_heads) : 0),
        value_scales_(key_scales_.size()) {}

  int64_t n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  KvType type() const { return type_; }
  size_t bytes() const { return keys_.size() + values_.size() + (key_scales_.size() + value_scales_.size()) * sizeof(float); }

  // Layer `layer`'s keys: KV head h's blocks from element h * key_head_stride(). Its values: rows
  // of head_dim elements, (position, KV head) at position * position_stride() + kv_head *
  // head_stride() elements (AttentionBatch's fields).
  const void* keys(int64_t layer) const { return keys_.data() + key_offset(layer, 0, 0, 0); }
  const void* values(int64_t layer) const { return values_.data() + value_offset(layer, 0, 0); }
  int64_t key_head_stride() const { return key_ctx_ * head_dim_; }
  int64_t position_stride() const { return head_dim_; }
  int64_t head_stride() const { return n_ctx_ * head_dim_; }
  // q8: the scales of layer `layer`, [n_ctx, n_kv_heads]; null for the other types.
  const float* key_scales(int64_t layer) const { return scales_of(key_scales_, layer); }
  const float* value_scales(int64_t layer) const { return scales_of(value_scales_, layer); }

  // Stores one position's key and value rows, converting to the cache's type; to float16 with
  // `to_f16` (the kernels' conversion, Kernels::to_f16) when given.
  void store(int64_t layer, int64_t position, const float* key, const float* value,
             void (*to_f16)(const float*, int64_t, uint16_t*) = nullptr) {
    for (int64_t head = 0; head < n_kv_heads_; ++head) {
      put(keys_.data() + key_offset(layer, head, position, 0), kKeyBlock, key + head * head_dim_, key_scales_, layer,
          position, head, to_f16);
      put(values_.data() + value_offset(layer, head, position), 1, value + head * head_dim_, value_scales_, layer,
          position, head, to_f16);
    }
  }

  // Zeroes positions 0 .. positions-1 of every layer: a job's keys and values do not outlive it
  // where the engine shares nothing between jobs (EngineOptions::share_prefix).
  void erase(int64_t positions) {
    positions = std::clamp<int64_t>(positions, 0, n_ctx_);
    const size_t element = element_bytes(type_), row = static_cast<size_t>(head_dim_) * element;
    const int64_t n_layers = static_cast<int64_t>(values_.size() / (row * static_cast<size_t>(n_kv_heads_ * n_ctx_)));
    const int64_t whole_blocks = positions - positions % kKeyBlock;
    for (int64_t layer = 0; layer < n_layers; ++layer) {
      for (int64_t head = 0; head < n_kv_heads_; ++head) {
        std::fill_n(values_.data() + value_offset(layer, head, 0), row * static_cast<size_t>(positions), uint8_t{0});
        std::fill_n(keys_.data() + key_offset(layer, head, 0, 0), row * static_cast<size_t>(whole_blocks), uint8_t{0});
        if (whole_blocks < positions)  // the first positions of a last block, dimension by dimension
          for (int64_t d = 0; d < head_dim_; ++d)
            std::fill_n(keys_.data() + key_offset(layer, head, whole_blocks, d),
                        element * static_cast<size_t>(positions - whole_blocks), uint8_t{0});
      }
      if (!key_scales_.empty()) {
        const size_t at = static_cast<size_t>(layer * n_ctx_ * n_kv_heads_), count = static_cast<size_t>(positions * n_kv_heads_);
        std::fill_n(key_scales_.data() + at, count, 0.0f);
        std::fill_n(value_scales_.data() + at, count, 0.0f);
      }
    }
  }

  static size_t element_bytes(KvType type) { return type == KvType::f32 ? 4 : type == KvType::f16 ? 2 : 1; }

  // What the constructor would allocate, saturating at UINT64_MAX instead of overflowing: checked
  // against the memory this process may use before allocating (check_kv_cache_fits).
  static uint64_t bytes_for(int64_t n_layers, int64_t n_ctx, int64_t n_kv_heads, int64_t head_dim, KvType type) {
    const auto elements = [&](int64_t ctx) {
      const uint64_t positions = saturating_mul(static_cast<uint64_t>(n_layers), static_cast<uint64_t>(ctx));
      return saturating_mul(saturating_mul(positions, static_cast<uint64_t>(n_kv_heads)), static_cast<uint64_t>(head_dim));
    };
    const uint64_t keys = saturating_mul(elements(key_positions(n_ctx)), element_bytes(type));
    uint64_t values = saturating_mul(elements(n_ctx), element_bytes(type));
    if (type == KvType::q8) {  // a scale per (layer, position, KV head), keys and values
      const uint64_t scales = saturating_mul(saturating_mul(static_cast<uint64_t>(n_layers), static_cast<uint64_t>(n_ctx)),
                                             static_cast<uint64_t>(n_kv_heads));
      values = saturating_add(values, saturating_mul(saturating_mul(scales, 2), sizeof(float)));
    }
    return saturating_add(keys, values);
  }

 private:
  // Positions the keys hold room for: whole blocks (a huge n_ctx is refused by bytes_for's check
  // before any cache is built).
  static int64_t key_positions(int64_t n_ctx) {
    return n_ctx > INT64_MAX - kKeyBlock ? n_ctx : (n_ctx + kKeyBlock - 1) / kKeyBlock * kKeyBlock;
  }
  size_t key_offset(int64_t layer, int64_t head, int64_t position, int64_t d) const {
    return static_cast<size_t>((layer * n_kv_heads_ + head) * key_head_stride() + key_block_offset(position, d, head_dim_)) *
           element_bytes(type_);
  }
  size_t value_offset(int64_t layer, int64_t head, int64_t position) const {
    return static_cast<size_t>(((layer * n_kv_heads_ + head) * n_ctx_ + position) * head_dim_) * element_bytes(type_);
  }
  const float* scales_of(const std::vector<float>& scales, int64_t layer) const {
    return scales.empty() ? nullptr : scales.data() + layer * n_ctx_ * n_kv_heads_;
  }
  // One KV head's key or value of head_dim values, element d at dst + d * stride elements.
  void put(uint8_t* dst, int64_t stride, const float* src, std::vector<float>& scales, int64_t layer, int64_t position,
           int64_t head, void (*to_f16)(const float*, int64_t, uint16_t*)) const {
    if (type_ == KvType::f32) {
      for (int64_t i = 0; i < head_dim_; ++i) reinterpret_cast<float*>(dst)[i * stride] = src[i];
    } else if (type_ == KvType::f16) {
      auto* h = reinterpret_cast<uint16_t*>(dst);
      if (!to_f16) {
        for (int64_t i = 0; i < head_dim_; ++i) h[i * stride] = f32_to_f16(src[i]);
      } else if (stride == 1) {
        to_f16(src, head_dim_, h);
      } else {
        uint16_t chunk[64];
        for (int64_t i0 = 0; i0 < head_dim_; i0 += 64) {
          const int64_t n = std::min<int64_t>(64, head_dim_ - i0);
          to_f16(src + i0, n, chunk);
          for (int64_t i = 0; i < n; ++i) h[(i0 + i) * stride] = chunk[i];
        }
      }
    } else {
      float amax = 0.0f;
      for (int64_t i = 0; i < head_dim_; ++i) amax = std::max(amax, std::fabs(src[i]));
      const float scale = amax / 127.0f;
      const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
      auto* q = reinterpret_cast<int8_t*>(dst);
      for (int64_t i = 0; i < head_dim_; ++i) q[i * stride] = static_cast<int8_t>(std::nearbyint(src[i] * inverse));
      scales[static_cast<size_t>((layer * n_ctx_ + position) * n_kv_heads_ + head)] = scale;
    }
  }

  int64_t n_ctx_, key_ctx_, n_kv_heads_, head_dim_, kv_dim_;
  KvType type_;
  std::vector<uint8_t> keys_, values_;
  std::vector<float> key_scales_, value_scales_;
};

}  // namespace orchard
