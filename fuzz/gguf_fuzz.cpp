// GGUF: the reader (header, metadata of every type, tensor table), the tokenizer a GGUF
// describes, the chat template it carries, and the model loader on the same bytes, ending with
// one token through the model when it loads.
#include <cstdint>
#include <vector>

#include "formats/gguf.h"
#include "fuzz_support.h"
#include "orchard/chat_template.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"

using namespace orchard;

namespace {

// Reads every metadata value back through the typed getters, as the loaders do (a wrong type
// must be an Error, never a bad access).
void read_metadata(const GgufFile& file) {
  for (const auto& [key, value] : file.metadata()) {
    try { (void)file.get_int(key); } catch (const Error&) {}
    try { (void)file.get_float(key); } catch (const Error&) {}
    try { (void)file.get_bool(key); } catch (const Error&) {}
    try { (void)file.get_string(key); } catch (const Error&) {}
    try { (void)file.get_string_array(key); } catch (const Error&) {}
    try { (void)file.get_int_array(key); } catch (const Error&) {}
    try { (void)file.get_float_array(key); } catch (const Error&) {}
    (void)gguf_type_name(value.type);
  }
  for (const GgufTensor& tensor : file.tensors()) (void)file.find_tensor(tensor.name);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  // The reader and what hangs off its metadata. Exact-size heap copies, so that AddressSanitizer
  // sees any read past the end of the file.
  try {
    const auto file = GgufFile::parse(blob_from_bytes(bytes, "fuzz.gguf"));
    read_metadata(*file);
    try {
      const auto tokenizer = Tokenizer::from_gguf(*file);
      fuzz::exercise_tokenizer(*tokenizer, {});
      if (!tokenizer->chat_template().empty()) {
        const ChatTemplate chat(tokenizer->chat_template(), "<s>", "</s>");
        (void)chat.render_chat(R"([{"role": "user", "content": "Hi"}])");
      }
    } catch (const Error&) {
    }
  } catch (const Error&) {
  }

  // The model loader (which also picks llama2.c for bytes without the GGUF magic).
  try {
    const auto model = Model::load_from_memory(bytes, "fuzz.gguf", {.kernels = KernelChoice::reference});
    fuzz::exercise_model(model, 0);
  } catch (const Error&) {
  }
  return 0;
}
