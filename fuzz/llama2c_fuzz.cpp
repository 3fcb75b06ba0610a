// llama2.c: the legacy checkpoint reader and the tokenizer.bin reader. An input is a checkpoint,
// optionally followed by fuzz::kSplit and a tokenizer.bin.
#include <cstdint>
#include <vector>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "tokenizer/tokenizer_loaders.h"
#include "tokenizer/tokenizer_parts.h"

using namespace orchard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_input(fuzz::as_text(data, size), 2);

  if (!parts[0].empty() || parts.size() == 1) {
    try {
      const auto* begin = reinterpret_cast<const uint8_t*>(parts[0].data());
      const auto model = Model::load_from_memory(std::vector<uint8_t>(begin, begin + parts[0].size()),
                                                 "fuzz.bin", {.kernels = KernelChoice::reference});
      fuzz::exercise_model(model, 1);
    } catch (const Error&) {
    }
  }

  if (parts.size() > 1) {
    // The tokenizer reader only takes a path: the bytes go through a scratch file.
    const auto& scratch = fuzz::ScratchDir::get();
    const std::string path = scratch.write("tokenizer.bin", parts[1]);
    try {
      const Tokenizer tokenizer(detail::load_llama2c_tokenizer(path));
      fuzz::exercise_tokenizer(tokenizer, parts[0]);
    } catch (const Error&) {
    }
  }
  return 0;
}
