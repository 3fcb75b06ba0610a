#include "runtime/prompt_limits.h"

#include "base/error.h"

namespace orchard {

void check_prompt_fits(int64_t prompt_tokens, int64_t n_ctx) {
  if (prompt_tokens >= n_ctx) fail("the prompt has ", prompt_tokens, " tokens; the context holds ", n_ctx);
}

}  // namespace orchard
