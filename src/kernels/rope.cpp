#include "kernels/rope.h"

namespace orchard {

void rope_rotate(float* head, int64_t rope_dims, RopeStyle style, const float* cos, const float* sin) {
  const int64_t half = rope_dims / 2;
  // Each style in its own loop with fixed strides, so that the compiler can vectorize it; per
  // element the arithmetic is the same either way.
  if (style == RopeStyle::neox) {
    for (int64_t i = 0; i < half; ++i) {
      const float a = head[i], b = head[i + half];
      head[i] = a * cos[i] - b * sin[i];
      head[i + half] = a * sin[i] + b * cos[i];
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      const float a = head[2 * i], b = head[2 * i + 1];
      head[2 * i] = a * cos[i] - b * sin[i];
      head[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  }
}

}  // namespace orchard
