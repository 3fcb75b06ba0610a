#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace orchard {
namespace {

// erase zeroes the first positions of every layer, keys and values (and q8 scales), nothing after.
TEST(KvCache, EraseZeroesThePositionsOfEveryLayerAndNoMore) {
  for (KvType type : {KvType::f32, KvType::f16, KvType::q8}) {
    const int64_t layers = 3, n_ctx = 5, heads = 2, head_dim = 4, kv_dim = heads * head_dim;
    KvCache cache(layers, n_ctx, heads, head_dim, type);
    std::vector<float> key(kv_dim, 0.5f), value(kv_dim, -0.25f);
    for (int64_t l = 0; l < layers; ++l)
      for (int64_t p = 0; p < n_ctx; ++p) cache.store(l, p, key.data(), value.data());
    cache.erase(3);
    const size_t element = KvCache::element_bytes(type), row = static_cast<size_t>(head_dim) * element;
    for (int64_t l = 0; l < layers; ++l)
      for (int64_t p = 0; p < n_ctx; ++p)
        for (const void* base : {cache.keys(l), cache.values(l)}) {
          bool zero = true;
          for (int64_t h = 0; h < heads; ++h) {
            const auto* bytes = static_cast<const uint8_t*>(base) +
                                static_cast<size_t>(p * cache.position_stride() + h * cache.head_stride()) * element;
            for (size_t i = 0; i < row; ++i) zero &= bytes[i] == 0;
          }
          EXPECT_EQ(zero, p < 3) << "type " << static_cast<int>(type) << " layer " << l << " position " << p;
          if (type == KvType::q8) {
            EXPECT_EQ(cache.key_scales(l)[p * heads] == 0.0f, p < 3);
          }
        }
  }
}

}  // namespace
}  // namespace orchard
