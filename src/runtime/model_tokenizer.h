// Finding the tokenizer that belongs to a model.
#pragma once
#include <memory>
#include <string>

#include "orchard/model.h"
#include "orchard/tokenizer.h"

namespace orchard {

// `override_path` when given (a tokenizer.json, a folder, a .gguf or a llama2.c tokenizer.bin);
// otherwise the GGUF's own vocabulary, or tokenizer.json beside a Hugging Face folder's weights,
// or tokenizer.bin beside a llama2.c checkpoint. Throws orchard::Error saying what to pass when
// the model has none.
std::shared_ptr<const Tokenizer> load_model_tokenizer(const Model& model, const std::string& override_path = "");

}  // namespace orchard
