#include "model/context_size.h"

#include <algorithm>

#include "base/error.h"

namespace orchard {

int64_t default_context_size(const ModelConfig& config) {
  return std::min<int64_t>(config.context_length, kDefaultContextCap);
}

int64_t resolve_context_size(const ModelConfig& config, int64_t requested) {
  if (requested < 0)
    fail("--ctx-size: a context of ", requested, " tokens is not possible (give a positive size, or 0 for the model's)");
  return requested == 0 ? default_context_size(config) : requested;
}

}  // namespace orchard
