// tokenizer.json (and the tokenizer_config.json beside it): the loader, then a little encoding
// and decoding with what loaded. An input is a tokenizer.json, optionally followed by
// fuzz::kSplit and a tokenizer_config.json.
#include <cstdint>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "tokenizer/tokenizer_loaders.h"
#include "tokenizer/tokenizer_parts.h"

using namespace orchard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_input(fuzz::as_text(data, size), 2);
  const auto& scratch = fuzz::ScratchDir::get();
  const std::string path = scratch.write("tokenizer.json", parts[0]);
  if (parts.size() > 1) scratch.write("tokenizer_config.json", parts[1]);
  else scratch.remove("tokenizer_config.json");
  try {
    // The JSON loader itself, whatever the bytes look like (Tokenizer::load would sniff them).
    const Tokenizer tokenizer(detail::load_tokenizer_json(path));
    fuzz::exercise_tokenizer(tokenizer, parts[0]);
  } catch (const Error&) {
  }
  return 0;
}
