// Shared pieces of the constrained-decoding tests: vocabularies loaded once per test binary.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "orchard/tokenizer.h"
#include "runtime/constraint/json_schema_constraint.h"
#include "test_paths.h"

namespace orchard::test {

struct LoadedVocabulary {
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const TokenVocabulary> vocab;
};

// `relative` under shared/: the tiny-chat GGUF (1024 tokens) or the qwen3 tokenizer (151k).
inline const LoadedVocabulary& shared_vocabulary(const std::string& relative) {
  static std::mutex mutex;
  static std::map<std::string, LoadedVocabulary> loaded;
  std::lock_guard lock(mutex);
  LoadedVocabulary& slot = loaded[relative];
  if (!slot.tokenizer) {
    slot.tokenizer = Tokenizer::load(shared_path(relative));
    slot.vocab = TokenVocabulary::build(*slot.tokenizer);
  }
  return slot;
}

inline const LoadedVocabulary& tiny_vocabulary() {
  return shared_vocabulary("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf");
}
inline const LoadedVocabulary& qwen_vocabulary() { return shared_vocabulary("tokenizers/qwen3"); }

inline std::shared_ptr<const CompiledSchema> compile_tiny(const std::string& schema_text,
                                                          const SchemaOptions& options = {}) {
  return JsonSchemaConstraint::compile_text(schema_text, tiny_vocabulary().vocab, options);
}

}  // namespace orchard::test
