// How many positions a context gets when its caller leaves the choice to the model: one rule for
// Context, the engine's slots and the CLI, so that `--ctx-size 0` means the same everywhere.
#pragma once
#include <cstdint>

#include "orchard/model.h"

namespace orchard {

// The model's trained context length, capped at kDefaultContextCap: a trained length of 32k or
// 128k would make every context's KV cache gigabytes although most prompts are short; a larger
// context is asked for explicitly.
constexpr int64_t kDefaultContextCap = 4096;
int64_t default_context_size(const ModelConfig& config);

// The context size for a requested one (ContextOptions::n_ctx, EngineOptions::n_ctx,
// --ctx-size): `requested` when positive, default_context_size when 0. Throws orchard::Error
// naming --ctx-size when negative. Upper bounds (kMaxContextTokens, memory) are checked where the
// KV caches are allocated (check_kv_cache_fits).
int64_t resolve_context_size(const ModelConfig& config, int64_t requested);

}  // namespace orchard
