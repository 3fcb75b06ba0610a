// Small enums of the public API that layers beneath the model also need (the kernels take the
// kernel choice and rotate by the RoPE style). Kept apart from model.h so that kernels/ does not
// include the model's API: this header belongs to the lowest layer (base; docs/architecture.md).
#pragma once

namespace orchard {

enum class KernelChoice { reference, fast };

enum class RopeStyle {
  interleaved,  // rotates pairs (2i, 2i+1): GGUF llama and llama2.c weights
  neox,         // rotates pairs (i, i + head_dim/2): Hugging Face llama, all Qwen
};

}  // namespace orchard
