#include "runtime/model_tokenizer.h"

#include "base/error.h"
#include "base/mapped_file.h"
#include "model/model_impl.h"

namespace orchard {

std::shared_ptr<const Tokenizer> load_model_tokenizer(const Model& model, const std::string& override_path) {
  if (!override_path.empty()) return Tokenizer::load(override_path);
  const Model::Impl& impl = model.impl();
  if (impl.gguf) {
    if (!impl.gguf->find("tokenizer.ggml.model"))
      fail(impl.path, ": the GGUF file holds no tokenizer; pass --tokenizer PATH");
    return Tokenizer::from_gguf(*impl.gguf);
  }
  if (model.config().source_format == "safetensors") {
    if (!file_exists(impl.path + "/tokenizer.json"))
      fail(impl.path, ": no tokenizer.json in the model folder; pass --tokenizer PATH");
    return Tokenizer::load(impl.path);
  }
  const size_t slash = impl.path.find_last_of('/');
  const std::string beside = (slash == std::string::npos ? std::string(".") : impl.path.substr(0, slash)) + "/tokenizer.bin";
  if (file_exists(beside)) return Tokenizer::load(beside);
  fail(impl.path, ": a llama2.c checkpoint has no tokenizer of its own; pass --tokenizer PATH (e.g. tok512.bin)");
}

}  // namespace orchard
