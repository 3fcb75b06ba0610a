// The one check of a prompt against a context: generation needs at least one free position after
// the prompt. The engine, sessions and the server's request validation all ask it.
#pragma once
#include <cstdint>

namespace orchard {

// Throws orchard::Error "the prompt has N tokens; the context holds M" when the prompt leaves no
// room to generate.
void check_prompt_fits(int64_t prompt_tokens, int64_t n_ctx);

}  // namespace orchard
