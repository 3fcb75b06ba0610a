// Constrained decoding to a JSON Schema: the compiled form (automaton + per-state token masks,
// shared by every request using the schema) and the per-request state that masks logits.
//
//   auto schema = JsonSchemaConstraint::compile(json_schema, *tokenizer);   // once, shareable
//   JsonSchemaConstraint c(schema);                                        // per request
//   loop: c.apply(logits, tokens_left); t = sample(logits); c.accept(t);   // until c.finished()
//
// Supported: type (object/array/string/number/integer/boolean/null, or a list of them),
// properties, required, additionalProperties, items, minItems/maxItems, minLength/maxLength,
// minimum/maximum/exclusiveMinimum/exclusiveMaximum, enum, const, anyOf/oneOf, allOf with one
// schema, local $ref (#/$defs/..., recursion bounded). Annotations (title, description, format,
// default, ...) are ignored; anything else is an error naming the schema path.
// Choices: properties are generated in the schema's order; with "properties" present only the
// listed properties are generated, whatever additionalProperties says; oneOf is treated as anyOf;
// number bounds are tightened to integers; integers have at most 18 digits.
#pragma once
#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/constraint/byte_automaton.h"
#include "runtime/constraint/schema_compiler.h"
#include "runtime/constraint/token_mask.h"
#include "runtime/constraint/token_vocabulary.h"
#include "runtime/logit_constraint.h"

namespace orchard {

class Tokenizer;

namespace constraint {

// A schema compiled against one vocabulary. Thread-safe: masks are computed on first use of a
// state and then served from the cache to every request.
class CompiledSchema {
 public:
  CompiledSchema(Dfa dfa, std::shared_ptr<const TokenVocabulary> vocab);

  const Dfa& dfa() const { return dfa_; }
  const TokenVocabulary& vocabulary() const { return *vocab_; }
  // The tokens allowed from `state`, ignoring the token budget.
  const TokenMask& mask(int32_t state) const;
  // The tokens allowed from `state` when at most `budget` more tokens may follow.
  const TokenMask& steering_mask(int32_t state, int64_t budget) const;
  // Computes the masks of every state now (e.g. at server start) instead of on first use.
  void precompute_all() const;
  size_t cached_masks() const;

 private:
  Dfa dfa_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  mutable std::vector<std::atomic<const TokenMask*>> masks_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<TokenMask>> owned_;
  mutable std::map<int32_t, std::unique_ptr<SteeringTable>> steering_;
};

}  // namespace constraint

using constraint::CompiledSchema;
using constraint::SchemaOptions;
using constraint::TokenVocabulary;

class JsonSchemaConstraint final : public LogitConstraint {
 public:
  // Compiles `schema` (properties in the order the object lists them). Throws orchard::Error
  // naming the schema path for invalid or unsupported schemas.
  static std::shared_ptr<const CompiledSchema> compile(const nlohmann::ordered_json& schema,
                                                       std::shared_ptr<const TokenVocabulary> vocab,
                                                       const SchemaOptions& options = {});
  // nlohmann::json sorts keys, so properties come alphabetically; prefer ordered_json or text.
  static std::shared_ptr<const CompiledSchema> compile(const nlohmann::json& schema, const Tokenizer& tokenizer,
                                                       const SchemaOptions& options = {});
  static std::shared_ptr<const CompiledSchema> compile_text(std::string_view schema_json,
                                                            std::shared_ptr<const TokenVocabulary> vocab,
                                                            const SchemaOptions& options = {});

  explicit JsonSchemaConstraint(std::shared_ptr<const CompiledSchema> schema);

  void apply(std::span<float> logits, int64_t tokens_left) override;
  // Throws orchard::Error if the token is not allowed here.
  void accept(int32_t token) override;
  bool complete() const override;
  bool finished() const override;

  // Whether `token` may come next (ignoring the budget); EOS only when complete.
  bool allows(int32_t token) const;
  // Feeds raw bytes (tests, forced text); false and no change if they leave the language.
  bool accept_bytes(std::string_view bytes);
  // Fewest single-byte tokens that would complete the value from here.
  uint32_t closing_distance() const { return schema_->dfa().closing_distance(state_); }

 private:
  bool is_eos(int32_t token) const;

  std::shared_ptr<const CompiledSchema> schema_;
  int32_t state_;
  bool ended_ = false;  // EOS accepted
};

// Compiled schemas by schema text and options, for a server where many requests repeat a
// schema. Keeps the `capacity` most recently used.
class SchemaCache {
 public:
  SchemaCache(std::shared_ptr<const TokenVocabulary> vocab, size_t capacity = 64);
  std::shared_ptr<const CompiledSchema> get(std::string_view schema_json, const SchemaOptions& options = {});

 private:
  std::shared_ptr<const TokenVocabulary> vocab_;
  size_t capacity_;
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const CompiledSchema>>> entries_;  // most recent first
};

// Tool calls in the Qwen (Hermes) format:
//   <tool_call>\n{"name": "<fn>", "arguments": <arguments per the tool's schema>}\n</tool_call>
// `tools` pairs function names with their parameter schemas (null: the function takes no
// parameters, so its arguments are an object); the schema returned admits a call of any of them
// (the server's forced tool calls and the tests use this one builder), and
// qwen_tool_call_options gives `options` the wrapper as prefix and suffix. Throws orchard::Error
// for an empty list.
nlohmann::ordered_json tool_call_schema(const std::vector<std::pair<std::string, nlohmann::ordered_json>>& tools);
SchemaOptions qwen_tool_call_options(SchemaOptions options = {});

}  // namespace orchard
