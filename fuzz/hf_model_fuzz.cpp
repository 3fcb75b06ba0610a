// Hugging Face folders: the safetensors reader and config.json. An input is a config.json,
// fuzz::kSplit, then the bytes of model.safetensors; both become files of a scratch folder and
// the folder is loaded as a model (one token through it when it loads).
#include <cstdint>
#include <vector>

#include "formats/safetensors.h"
#include "fuzz_support.h"
#include "orchard/error.h"
#include "orchard/model.h"

using namespace orchard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_input(fuzz::as_text(data, size), 2);
  // Without a separator the whole input is the safetensors file, read on its own below.
  const std::string_view config = parts.size() > 1 ? parts[0] : std::string_view();
  const std::string_view weights = parts.back();

  // The safetensors reader straight from memory (exact size: ASan sees reads past the end).
  try {
    const auto* begin = reinterpret_cast<const uint8_t*>(weights.data());
    SafetensorsSet set;
    read_safetensors(blob_from_bytes(std::vector<uint8_t>(begin, begin + weights.size()), "fuzz.safetensors"), set);
  } catch (const Error&) {
  }

  if (parts.size() > 1) {
    const auto& scratch = fuzz::ScratchDir::get();
    scratch.write("config.json", config);
    scratch.write("model.safetensors", weights);
    try {
      const auto model = Model::load(scratch.root(), {.kernels = KernelChoice::reference});
      fuzz::exercise_model(model, 0);
    } catch (const Error&) {
    }
  }
  return 0;
}
