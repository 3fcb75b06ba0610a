#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace orchard {
namespace {

// erase zeroes the first positions of every layer, keys and values (and q8 scales), nothing after:
// within the keys' first block, and past a whole block into a second one.
TEST(KvCache, EraseZeroesThePositionsOfEveryLayerAndNoMore) {
  for (KvType type : {KvType::f32, KvType::f16, KvType::q8})
    for (int64_t erased : {3, 18}) {
      const int64_t layers = 3, n_ctx = 21, heads = 2, head_dim = 4, kv_dim = heads * head_dim;
      KvCache cache(layers, n_ctx, heads, head_dim, type);
      std::vector<float> key(kv_dim, 0.5f), value(kv_dim, -0.25f);
      for (int64_t l = 0; l < layers; ++l)
        for (int64_t p = 0; p < n_ctx; ++p) cache.store(l, p, key.data(), value.data());
      cache.erase(erased);
      const size_t element = KvCache::element_bytes(type);
      const auto zero_at = [&](const void* base, int64_t offset) {
        const auto* bytes = static_cast<const uint8_t*>(base) + static_cast<size_t>(offset) * element;
        return std::all_of(bytes, bytes + element, [](uint8_t b) { return b == 0; });
      };
      for (int64_t l = 0; l < layers; ++l)
        for (int64_t p = 0; p < n_ctx; ++p) {
          bool keys_zero = true, values_zero = true;
          for (int64_t h = 0; h < heads; ++h)
            for (int64_t d = 0; d < head_dim; ++d) {
              keys_zero &= zero_at(cache.keys(l), h * cache.key_head_stride() + key_block_offset(p, d, head_dim));
              values_zero &= zero_at(cache.values(l), p * cache.position_stride() + h * cache.head_stride() + d);
            }
          SCOPED_TRACE("type " + std::to_string(static_cast<int>(type)) + " erased " + std::to_string(erased) +
                       " layer " + std::to_string(l) + " position " + std::to_string(p));
          EXPECT_EQ(keys_zero, p < erased);
          EXPECT_EQ(values_zero, p < erased);
          if (type == KvType::q8) {
            EXPECT_EQ(cache.key_scales(l)[p * heads] == 0.0f, p < erased);
          }
        }
    }
}

}  // namespace
}  // namespace orchard
