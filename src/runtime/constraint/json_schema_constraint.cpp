#include "runtime/constraint/json_schema_constraint.h"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_depth.h"
#include "orchard/tokenizer.h"

namespace orchard {
namespace constraint {

CompiledSchema::CompiledSchema(Dfa dfa, std::shared_ptr<const TokenVocabulary> vocab)
    : dfa_(std::move(dfa)), vocab_(std::move(vocab)), masks_(dfa_.size()) {}

const TokenMask& CompiledSchema::mask(int32_t state) const {
  if (const TokenMask* m = masks_[size_t(state)].load(std::memory_order_acquire)) return *m;
  // Computed outside the lock so that requests on other states are not held up; if two requests
  // race on one state, the first stored mask wins and the other copy is dropped.
  auto computed = std::make_unique<TokenMask>(compute_mask(dfa_, *vocab_, state));
  std::lock_guard<std::mutex> lock(mutex_);
  if (const TokenMask* m = masks_[size_t(state)].load(std::memory_order_acquire)) return *m;
  owned_.push_back(std::move(computed));
  masks_[size_t(state)].store(owned_.back().get(), std::memory_order_release);
  return *owned_.back();
}

const TokenMask& CompiledSchema::steering_mask(int32_t state, int64_t budget) const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = steering_.find(state);
    if (it != steering_.end()) return it->second->for_budget(budget);
  }
  auto computed = std::make_unique<SteeringTable>(compute_steering(dfa_, *vocab_, state));
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, inserted] = steering_.emplace(state, std::move(computed));
  return it->second->for_budget(budget);
}

void CompiledSchema::precompute_all() const {
  for (size_t s = 1; s < dfa_.size(); ++s) mask(int32_t(s));
}

size_t CompiledSchema::cached_masks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return owned_.size();
}

}  // namespace constraint

namespace {

std::shared_ptr<const CompiledSchema> build(const nlohmann::ordered_json& schema,
                                            std::shared_ptr<const TokenVocabulary> vocab,
                                            const SchemaOptions& options) {
  constraint::Nfa nfa(options.max_nfa_states);
  const auto [start, accept] = constraint::compile_schema(schema, options, nfa);
  constraint::DfaBudget budget;
  budget.max_states = options.max_states;
  budget.max_subset_entries = options.max_subset_entries;
  budget.deadline = std::chrono::steady_clock::now() + options.time_limit;
  budget.cancelled = options.cancelled;
  constraint::Dfa dfa = constraint::Dfa::build(nfa, start, accept, vocab->single_byte_tokens(), budget);
  return std::make_shared<const CompiledSchema>(std::move(dfa), std::move(vocab));
}

}  // namespace

std::shared_ptr<const CompiledSchema> JsonSchemaConstraint::compile(const nlohmann::ordered_json& schema,
                                                                    std::shared_ptr<const TokenVocabulary> vocab,
                                                                    const SchemaOptions& options) {
  return build(schema, std::move(vocab), options);
}

std::shared_ptr<const CompiledSchema> JsonSchemaConstraint::compile(const nlohmann::json& schema,
                                                                    const Tokenizer& tokenizer,
                                                                    const SchemaOptions& options) {
  return build(nlohmann::ordered_json::parse(schema.dump()), TokenVocabulary::build(tokenizer), options);
}

std::shared_ptr<const CompiledSchema> JsonSchemaConstraint::compile_text(std::string_view schema_json,
                                                                         std::shared_ptr<const TokenVocabulary> vocab,
                                                                         const SchemaOptions& options) {
  check_json_depth(schema_json, "$: the schema");
  nlohmann::ordered_json schema;
  try {
    schema = nlohmann::ordered_json::parse(schema_json);
  } catch (const nlohmann::json::exception& e) {
    fail("$: the schema is not valid JSON: ", e.what());
  }
  return build(schema, std::move(vocab), options);
}

JsonSchemaConstraint::JsonSchemaConstraint(std::shared_ptr<const CompiledSchema> schema)
    : schema_(std::move(schema)), state_(schema_->dfa().start()) {}

bool JsonSchemaConstraint::is_eos(int32_t token) const {
  const auto& eos = schema_->vocabulary().eos_ids();
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

void JsonSchemaConstraint::apply(std::span<float> logits, int64_t tokens_left) {
  constexpr float kBlocked = -std::numeric_limits<float>::infinity();
  if (ended_) {
    std::fill(logits.begin(), logits.end(), kBlocked);
    return;
  }
  // Keep EOS logits aside: EOS is special (never in the masks) but allowed once complete.
  const auto& eos = schema_->vocabulary().eos_ids();
  float saved[8];
  const size_t n_saved = std::min<size_t>(eos.size(), 8);
  for (size_t i = 0; i < n_saved; ++i)
    saved[i] = size_t(eos[i]) < logits.size() ? logits[size_t(eos[i])] : kBlocked;

  const constraint::TokenMask* mask = &schema_->mask(state_);
  // Steering: once fewer tokens remain after this one than some allowed token could need to
  // close, keep only tokens after which the value can still be closed in time.
  const int64_t after = std::max<int64_t>(tokens_left, 1) - 1;
  if (tokens_left >= 0 && after < int64_t(mask->max_distance_after)) mask = &schema_->steering_mask(state_, after);
  mask->apply(logits);

  if (schema_->dfa().accepting(state_))
    for (size_t i = 0; i < n_saved; ++i)
      if (size_t(eos[i]) < logits.size()) logits[size_t(eos[i])] = saved[i];
}

bool JsonSchemaConstraint::allows(int32_t token) const {
  if (ended_) return false;
  if (is_eos(token)) return complete();
  const TokenVocabulary& v = schema_->vocabulary();
  if (token < 0 || size_t(token) >= v.size() || !v.usable(token)) return false;
  return schema_->dfa().step(state_, v.bytes(token)) != constraint::Dfa::dead;
}

void JsonSchemaConstraint::accept(int32_t token) {
  if (!allows(token)) fail("constrained decoding: token ", token, " is not allowed by the schema here");
  if (is_eos(token)) {
    ended_ = true;
    return;
  }
  state_ = schema_->dfa().step(state_, schema_->vocabulary().bytes(token));
}

bool JsonSchemaConstraint::accept_bytes(std::string_view bytes) {
  if (ended_) return false;
  const int32_t next = schema_->dfa().step(state_, bytes);
  if (next == constraint::Dfa::dead) return false;
  state_ = next;
  return true;
}

bool JsonSchemaConstraint::complete() const { return schema_->dfa().accepting(state_); }

bool JsonSchemaConstraint::finished() const { return ended_ || (complete() && !schema_->dfa().has_successor(state_)); }

SchemaCache::SchemaCache(std::shared_ptr<const TokenVocabulary> vocab, size_t capacity)
    : vocab_(std::move(vocab)), capacity_(std::max<size_t>(capacity, 1)) {}

std::shared_ptr<const CompiledSchema> SchemaCache::get(std::string_view schema_json, const SchemaOptions& options) {
  // Options are part of the key: the same schema with another wrapper is another automaton.
  const std::string key = str_cat(options.max_indent, '|', options.free_form_depth, '|', options.max_ref_depth, '|',
                                  options.max_states, '|', options.prefix.size(), ':', options.prefix, '|',
                                  options.suffix.size(), ':', options.suffix, '|', schema_json);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->first == key) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front().second;
      }
  }
  // Compiled without the lock: a slow schema must not stall requests for cached ones.
  auto compiled = JsonSchemaConstraint::compile_text(schema_json, vocab_, options);
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.emplace_front(key, compiled);
  while (entries_.size() > capacity_) entries_.pop_back();
  return compiled;
}

nlohmann::ordered_json tool_call_schema(const std::vector<std::pair<std::string, nlohmann::ordered_json>>& tools) {
  if (tools.empty()) fail("tool_call_schema: no tools");
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (const auto& [name, parameters] : tools) {
    nlohmann::ordered_json call;
    call["type"] = "object";
    call["properties"]["name"] = {{"const", name}};
    // A function declared without parameters takes an (empty) arguments object, as OpenAI
    // defines it: not any JSON value.
    call["properties"]["arguments"] = parameters.is_null() ? nlohmann::ordered_json{{"type", "object"}} : parameters;
    call["required"] = {"name", "arguments"};
    call["additionalProperties"] = false;
    calls.push_back(call);
  }
  if (calls.size() == 1) return calls[0];
  return {{"anyOf", calls}};
}

SchemaOptions qwen_tool_call_options(SchemaOptions options) {
  options.prefix = "<tool_call>\n";
  options.suffix = "\n</tool_call>";
  return options;
}

}  // namespace orchard
