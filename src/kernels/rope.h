// Rotary position embedding of one head: the single definition behind Kernels::rope in both the
// reference and the fast tables. It is a handful of multiplies per pair, far below the matmuls,
// so the fast kernels gain nothing from their own version, and sharing it keeps the golden
// logits of every path equal here by construction.
#pragma once
#include <cstdint>

#include "kernels/kernels.h"

namespace orchard {

// Rotates the first `rope_dims` values of `head` in place (the rest are left as they are). Pair
// i is (i, i + rope_dims/2) for RopeStyle::neox and (2i, 2i+1) for RopeStyle::interleaved; it
// turns by the angle whose cosine and sine are cos[i], sin[i]:
//   a' = a cos - b sin,  b' = a sin + b cos   (float32).
void rope_rotate(float* head, int64_t rope_dims, RopeStyle style, const float* cos, const float* sin);

}  // namespace orchard
