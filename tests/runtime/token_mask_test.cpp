// Token masks against brute force: for each token, does appending its bytes keep the text a
// valid prefix? Checked by stepping the bytes one at a time (no trie), over states reached along
// valid documents, on the tiny-chat vocabulary (every token) and the qwen3 one (sampled states).
#include "runtime/constraint/token_mask.h"

#include <gtest/gtest.h>

#include <cmath>

#include "constraint_test_support.h"

namespace orchard {
namespace {

const char* kNested = R"({"type": "object", "properties": {
  "name": {"type": "string", "minLength": 1, "maxLength": 12},
  "age": {"type": "integer", "minimum": 0, "maximum": 150},
  "tags": {"type": "array", "items": {"enum": ["a", "bb", "c\"d"]}, "maxItems": 3},
  "pos": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
          "required": ["x", "y"], "additionalProperties": false},
  "note": {"type": ["string", "null"]}},
  "required": ["name", "age", "pos"], "additionalProperties": false})";

const char* kDocument =
    "{\n  \"name\": \"Ad\\u00e9 \xE2\x98\x83\",\n  \"age\": 42,\n  \"tags\": [\"a\", \"c\\\"d\"],\n"
    "  \"pos\": {\"x\": -1.5e3, \"y\": 0.25},\n  \"note\": null\n}";

// Whether `id` may follow `bytes_so_far`, decided byte by byte from a fresh constraint.
bool brute_force_allows(const std::shared_ptr<const CompiledSchema>& schema, const test::LoadedVocabulary& v,
                        const std::string& bytes_so_far, int32_t id) {
  if (v.tokenizer->is_special(id)) return false;
  const std::string token = v.tokenizer->token_bytes(id);
  if (token.empty()) return false;
  JsonSchemaConstraint c(schema);
  if (!c.accept_bytes(bytes_so_far)) return false;
  for (char b : token)
    if (!c.accept_bytes(std::string(1, b))) return false;
  return true;
}

// Compares apply() with brute force after each prefix of `document` listed in `cuts`.
void check_masks(const test::LoadedVocabulary& v, const std::shared_ptr<const CompiledSchema>& schema,
                 const std::string& document, const std::vector<size_t>& cuts) {
  const auto eos = v.tokenizer->eos_ids();
  // Logits longer than the vocabulary, as models pad theirs: the padding must be blocked too.
  const size_t n = size_t(v.tokenizer->vocab_size()) + 37;
  for (size_t cut : cuts) {
    const std::string prefix = document.substr(0, cut);
    JsonSchemaConstraint c(schema);
    ASSERT_TRUE(c.accept_bytes(prefix)) << prefix;
    std::vector<float> logits(n, 1.0f);
    c.apply(logits, -1);
    size_t allowed = 0, mismatches = 0;
    for (size_t id = 0; id < n; ++id) {
      bool expected = false;
      if (id < size_t(v.tokenizer->vocab_size())) {
        const bool is_eos = std::find(eos.begin(), eos.end(), int32_t(id)) != eos.end();
        expected = is_eos ? c.complete() : brute_force_allows(schema, v, prefix, int32_t(id));
      }
      const bool got = !std::isinf(logits[id]);
      allowed += got;
      if (got != expected && mismatches++ < 5)
        ADD_FAILURE() << "after " << prefix.size() << " bytes, token " << id << " ("
                      << v.tokenizer->token_text(int32_t(id)) << "): mask " << got << ", brute force " << expected;
    }
    EXPECT_GT(allowed, 0u) << "after " << prefix.size() << " bytes";
  }
}

TEST(TokenMask, EqualsBruteForceOnEveryTokenOfTheTinyVocabulary) {
  const auto& v = test::tiny_vocabulary();
  const auto schema = JsonSchemaConstraint::compile_text(kNested, v.vocab);
  std::vector<size_t> every;
  for (size_t i = 0; i <= std::string(kDocument).size(); ++i) every.push_back(i);
  check_masks(v, schema, kDocument, every);
  // Free-form JSON too.
  const auto free_form = JsonSchemaConstraint::compile_text(R"({"type": "object"})", v.vocab);
  const std::string doc = R"({"a": [1, {"b": "x\n"}], "c": -0.5e-3})";
  std::vector<size_t> all;
  for (size_t i = 0; i <= doc.size(); ++i) all.push_back(i);
  check_masks(v, free_form, doc, all);
}

TEST(TokenMask, EqualsBruteForceOnSampledStatesOfTheQwenVocabulary) {
  const auto& v = test::qwen_vocabulary();
  const auto schema = JsonSchemaConstraint::compile_text(kNested, v.vocab);
  // Inside structure, inside a string, after an escape, mid-number, in an enum, at the end.
  check_masks(v, schema, kDocument, {0, 1, 4, 12, 17, 18, 30, 33, 45, 58, 74, 80, std::string(kDocument).size()});
}

TEST(TokenMask, MasksAreCachedPerState) {
  const auto& v = test::tiny_vocabulary();
  const auto schema = JsonSchemaConstraint::compile_text(R"({"type": "array", "items": {"type": "integer"}})", v.vocab);
  JsonSchemaConstraint c(schema);
  std::vector<float> logits(size_t(v.tokenizer->vocab_size()), 0.0f);
  c.apply(logits, -1);
  ASSERT_TRUE(c.accept_bytes("[1,"));
  c.apply(logits, -1);
  const size_t cached = schema->cached_masks();
  // "[1,2,3," revisits the states of "[1," (the DFA loops), so nothing new is computed.
  ASSERT_TRUE(c.accept_bytes("2,3,"));
  c.apply(logits, -1);
  EXPECT_EQ(schema->cached_masks(), cached);
}

TEST(TokenMask, SteeringLeavesOnlyTokensThatCanStillClose) {
  const auto& v = test::tiny_vocabulary();
  const auto schema = JsonSchemaConstraint::compile_text(
      R"({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}, "required": ["a"]})",
      v.vocab);
  JsonSchemaConstraint c(schema);
  ASSERT_TRUE(c.accept_bytes(R"({"a": ["xy)"));
  // Closing needs `"]}`: three single-byte tokens.
  EXPECT_EQ(c.closing_distance(), 3u);
  std::vector<float> logits(size_t(v.tokenizer->vocab_size()), 0.0f);
  c.apply(logits, 3);
  for (size_t id = 0; id < logits.size(); ++id) {
    if (std::isinf(logits[id])) continue;
    // Whatever is allowed must leave a value that closes in the 2 tokens after it.
    JsonSchemaConstraint next(schema);
    ASSERT_TRUE(next.accept_bytes(R"({"a": ["xy)"));
    next.accept(int32_t(id));
    EXPECT_LE(next.closing_distance(), 2u) << v.tokenizer->token_text(int32_t(id));
  }
  const int32_t quote = *v.tokenizer->token_id("\"");
  EXPECT_FALSE(std::isinf(logits[size_t(quote)]));
  // With plenty of budget, more string content is fine.
  std::vector<float> free(size_t(v.tokenizer->vocab_size()), 0.0f);
  c.apply(free, 100);
  const int32_t a = *v.tokenizer->token_id("a");
  EXPECT_FALSE(std::isinf(free[size_t(a)]));
  EXPECT_TRUE(std::isinf(logits[size_t(a)]));
}

}  // namespace
}  // namespace orchard
