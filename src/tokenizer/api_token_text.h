// A token's text as OpenAI's legacy completions API writes it (its logprobs' "tokens" and
// "top_logprobs" keys): the token's bytes when they are whole UTF-8, else "bytes:\xNN..." (a token
// that is part of a character; JSON would turn its bytes into U+FFFD and confuse it with others).
// Orchard's server writes this form, the distillation collector keeps it, and the student's
// vocabulary reads it back.
#pragma once
#include <string>
#include <string_view>

namespace orchard {

std::string api_token_text(std::string_view bytes);

// The bytes an API token text stands for: "bytes:\xNN..." decoded (hex digits of either case), any
// other text as it is.
std::string api_token_bytes(std::string_view text);

}  // namespace orchard
