#include "orchard/engine.h"

#include "base/error.h"
#include "base/mapped_file.h"
#include "model/model_impl.h"

namespace orchard {

namespace {

std::shared_ptr<const Tokenizer> find_tokenizer(const Model& model, const std::string& override_path) {
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

}  // namespace

std::shared_ptr<const Tokenizer> load_model_tokenizer(const Model& model, const std::string& override_path) {
  std::shared_ptr<const Tokenizer> tokenizer = find_tokenizer(model, override_path);
  // A token the tokenizer can produce but the embedding has no row for cannot be run: refuse the
  // pair here, at load, rather than fail each request that happens to use such a token. Fewer
  // tokenizer tokens than embedding rows is normal (vocabularies padded to a multiple of 64 or
  // 128 for the kernels); TokenStream never samples those padding rows.
  const int64_t n_vocab = model.config().n_vocab;
  if (tokenizer->vocab_size() > n_vocab)
    fail(override_path.empty() ? model.path() : override_path, ": the tokenizer has ", tokenizer->vocab_size(),
         " tokens but the model's embedding has only ", n_vocab,
         " rows; ids from ", n_vocab, " on could not be run (a tokenizer of another model?)");
  return tokenizer;
}

}  // namespace orchard
