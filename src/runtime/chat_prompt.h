// Turning a user's prompt into model input through the model's own chat template.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "orchard/tokenizer.h"

namespace orchard {

// The text the model's chat template renders for one user message with the generation prompt
// added. Empty when the tokenizer has no chat template.
std::string render_user_prompt(const Tokenizer& tokenizer, const std::string& prompt);

// Ids for `prompt` as a chat turn; a plain completion (with BOS when the tokenizer adds one)
// when the tokenizer has no chat template. Like transformers' apply_chat_template, no BOS is
// added to a rendered template: templates that want one write it themselves.
std::vector<int32_t> chat_prompt_ids(const Tokenizer& tokenizer, const std::string& prompt);

}  // namespace orchard
