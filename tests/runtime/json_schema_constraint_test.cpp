// JSON Schema constraints on whole texts: each supported keyword accepts the texts it should and
// rejects the rest, fed byte by byte and token by token (the two must agree).
#include "runtime/constraint/json_schema_constraint.h"

#include <gtest/gtest.h>

#include "constraint_test_support.h"
#include "orchard/error.h"

namespace orchard {
namespace {

using test::compile_tiny;
using test::tiny_vocabulary;

// Whether the constraint takes `text` as a complete value, driven one byte at a time.
bool accepts_bytes(const std::shared_ptr<const CompiledSchema>& schema, const std::string& text) {
  JsonSchemaConstraint c(schema);
  for (char b : text)
    if (!c.accept_bytes(std::string(1, b))) return false;
  return c.complete();
}

// The same through the tokenizer's ids and accept(), then EOS.
bool accepts_tokens(const std::shared_ptr<const CompiledSchema>& schema, const std::string& text) {
  const auto& v = tiny_vocabulary();
  JsonSchemaConstraint c(schema);
  for (int32_t id : v.tokenizer->encode(text)) {
    if (!c.allows(id)) return false;
    c.accept(id);
  }
  const int32_t eos = v.tokenizer->eos_ids().at(0);
  if (!c.allows(eos)) return false;
  c.accept(eos);
  return c.finished();
}

void expect_language(const std::string& schema_text, const std::vector<std::string>& valid,
                     const std::vector<std::string>& invalid, const SchemaOptions& options = {}) {
  SCOPED_TRACE(schema_text);
  const auto schema = compile_tiny(schema_text, options);
  for (const std::string& text : valid) {
    EXPECT_TRUE(accepts_bytes(schema, text)) << "bytes should be accepted: " << text;
    EXPECT_TRUE(accepts_tokens(schema, text)) << "tokens should be accepted: " << text;
  }
  for (const std::string& text : invalid) {
    EXPECT_FALSE(accepts_bytes(schema, text)) << "bytes should be rejected: " << text;
    EXPECT_FALSE(accepts_tokens(schema, text)) << "tokens should be rejected: " << text;
  }
}

TEST(JsonSchemaConstraint, ObjectWithRequiredAndOptionalPropertiesInSchemaOrder) {
  expect_language(
      R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
          "ok": {"type": "boolean"}}, "required": ["name"], "additionalProperties": false})",
      {R"({"name":"Bo"})", R"({"name": "Bo", "age": 3})", R"({"name":"x","ok":false})",
       "{\n  \"name\": \"x\",\n  \"age\": 30,\n  \"ok\": true\n}", R"({ "name" : "" })"},
      {"{}", R"({"age":3})", R"({"name":"x","extra":1})", R"({"name":1})", R"({"name":"x",})",
       R"({"name":"x","age":1.5})", R"({"name":"x"} )", R"({"name":"x")",
       // Order is a documented restriction: schema order only.
       R"({"age":3,"name":"x"})",
       // Whitespace is bounded: two spaces, or a newline with a deep indent, are not generated.
       R"({  "name":"x"})", "{\n                   \"name\":\"x\"}"});
}

TEST(JsonSchemaConstraint, OptionalPropertiesNeedCommasOnlyBetweenThoseWritten) {
  expect_language(R"({"properties": {"a": {"type": "null"}, "b": {"type": "null"}, "c": {"type": "null"}}})",
                  {"{}", R"({"a":null})", R"({"b":null})", R"({"c":null})", R"({"a":null,"c":null})",
                   R"({"a":null,"b":null,"c":null})"},
                  {R"({,"b":null})", R"({"a":null,})", R"({"a":null "b":null})", R"({"b":null,"a":null})"});
}

TEST(JsonSchemaConstraint, StringLengthsCountCodePoints) {
  expect_language(R"({"type": "string", "minLength": 2, "maxLength": 4})",
                  {R"("ab")", R"("abcd")", "\"\xC3\xA9\xE2\x98\x83\"", R"("\u00e9x")", R"("a\"")",
                   R"("\ud83d\ude00x")", "\"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\""},
                  {R"("a")", R"("abcde")", "\"a\x01\"", "\"\xC0\x80x\"", R"("\ud800x")", R"("a\x")",
                   "\"\xED\xA0\x80x\"", R"(ab)", R"("ab)"});
}

TEST(JsonSchemaConstraint, IntegerRangesAreExact) {
  expect_language(R"({"type": "integer", "minimum": -15, "maximum": 120})",
                  {"-15", "-9", "0", "7", "99", "100", "120"},
                  {"-16", "121", "007", "1.5", "-0", "1000", "200", "-", "+5"});
  expect_language(R"({"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 8})", {"6", "7"},
                  {"5", "8", "0"});
  expect_language(R"({"type": "integer", "minimum": 1000})", {"1000", "5432", "123456789"}, {"999", "-1000", "0"});
}

TEST(JsonSchemaConstraint, NumbersStayWithinIntegerBounds) {
  expect_language(R"({"type": "number", "minimum": -2, "maximum": 10})",
                  {"0", "10", "10.0", "9.99", "3", "-2", "-2.00", "-1.5", "-0.25", "0.5"},
                  {"10.5", "10.01", "-2.1", "-3", "11", "1e3", "01"});
  expect_language(R"({"type": "number"})", {"1e5", "-2.5E-3", "0.5", "12", "-0.0", "3E+07"},
                  {"01", "1.", ".5", "+1", "1e", "1e999", "--1"});
}

TEST(JsonSchemaConstraint, EnumConstBooleanNull) {
  expect_language(R"({"enum": ["red", "green", 3, null]})", {R"("red")", R"("green")", "3", "null"},
                  {R"("blue")", R"("re")", "4", "nul"});
  expect_language(R"({"const": {"a": [1, 2]}})", {R"({"a":[1,2]})"}, {R"({"a":[1]})", R"({"a":[1,2,3]})"});
  expect_language(R"({"type": ["boolean", "null"]})", {"true", "false", "null"}, {"0", R"("true")"});
}

TEST(JsonSchemaConstraint, ArrayItemCounts) {
  expect_language(R"({"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3})",
                  {"[true]", "[true, false,true]", "[ true ]", "[\n  false\n]"},
                  {"[]", "[true,true,true,true]", "[1]", "[true,]", "[,true]"});
  expect_language(R"({"type": "array", "items": {"type": "integer"}})", {"[]", "[1,2,3,4,5,6,7,8,9,10,11]"},
                  {"[1,,2]", "[1 2]"});
}

TEST(JsonSchemaConstraint, AnyOfAndNestedRefs) {
  expect_language(R"({"anyOf": [{"type": "string", "maxLength": 1}, {"type": "integer", "minimum": 0}]})",
                  {R"("x")", "5"}, {"true", R"("xy")", "-1"});
  const std::string tree = R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
      "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"],
      "additionalProperties": false}}, "$ref": "#/$defs/node"})";
  expect_language(tree, {R"({"v":1})", R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4}]}]})"},
                  {R"({"kids":[]})", R"({"v":1,"kids":[{}]})"});
}

TEST(JsonSchemaConstraint, FreeFormObjectsForJsonObjectMode) {
  expect_language(R"({"type": "object"})",
                  {"{}", R"({"a":{"b":[1,"x",null,true,{}]}})", R"({"k": -1.5e3, "l": []})"},
                  {"[1]", R"({"a":})", R"({a:1})", R"({"a":1,})", "\"x\""});
  // A free-form value holds containers at most free_form_depth deep; deeper ones must be empty.
  SchemaOptions shallow;
  shallow.free_form_depth = 1;
  expect_language(R"({"type": "object"})", {R"({"a":[1,[]]})", R"({"a":{"b":{}}})"},
                  {R"({"a":[[1]]})", R"({"a":{"b":{"c":1}}})"}, shallow);
}

TEST(JsonSchemaConstraint, ToolCallWrapperAroundArguments) {
  const nlohmann::ordered_json weather = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})");
  const nlohmann::ordered_json time = nlohmann::ordered_json::parse(R"({"type": "object", "properties": {}})");
  const auto schema = JsonSchemaConstraint::compile(tool_call_schema({{"get_weather", weather}, {"get_time", time}}),
                                                    tiny_vocabulary().vocab, qwen_tool_call_options());
  EXPECT_TRUE(accepts_bytes(schema,
                            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
  EXPECT_TRUE(accepts_bytes(schema, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts_bytes(schema, "{\"name\": \"get_time\", \"arguments\": {}}"));
  EXPECT_FALSE(accepts_bytes(schema, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"x\"}}\n</tool_call>"));
  EXPECT_FALSE(accepts_bytes(schema, "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts_bytes(schema, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}"));
}

// The server compiles forced tool calls through tool_call_schema and caches them by its text:
// the text is pinned here (properties name then arguments, so the model writes the name first).
TEST(JsonSchemaConstraint, ToolCallSchemaTextAndFunctionsWithoutParameters) {
  const nlohmann::ordered_json city = nlohmann::ordered_json::parse(R"({"type": "object", "properties": {"city": {"type": "string"}}})");
  EXPECT_EQ(tool_call_schema({{"get_weather", city}}).dump(),
            R"({"type":"object","properties":{"name":{"const":"get_weather"},"arguments":{"type":"object","properties":{"city":{"type":"string"}}}},"required":["name","arguments"],"additionalProperties":false})");
  EXPECT_EQ(tool_call_schema({{"a", city}, {"b", city}}).dump().rfind(R"({"anyOf":[{"type":"object","properties":{"name":{"const":"a"})", 0), 0u);
  // No parameters: the arguments are an object (OpenAI's reading), not any value.
  const nlohmann::ordered_json none = tool_call_schema({{"now", nullptr}});
  EXPECT_EQ(none["properties"]["arguments"].dump(), R"({"type":"object"})");
  const auto schema = JsonSchemaConstraint::compile(none, tiny_vocabulary().vocab, qwen_tool_call_options());
  EXPECT_TRUE(accepts_bytes(schema, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts_bytes(schema, "<tool_call>\n{\"name\": \"now\", \"arguments\": 3}\n</tool_call>"));
  EXPECT_THROW(tool_call_schema({}), Error);
}

TEST(JsonSchemaConstraint, EosOnlyWhenCompleteAndNothingAfterAClosedValue) {
  const auto schema = compile_tiny(R"({"type": "object", "properties": {"a": {"type": "integer"}}})");
  const int32_t eos = tiny_vocabulary().tokenizer->eos_ids().at(0);
  JsonSchemaConstraint c(schema);
  EXPECT_FALSE(c.allows(eos));
  ASSERT_TRUE(c.accept_bytes(R"({"a":12)"));
  EXPECT_FALSE(c.complete());
  EXPECT_FALSE(c.allows(eos));
  EXPECT_THROW(c.accept(eos), Error);
  ASSERT_TRUE(c.accept_bytes("}"));
  EXPECT_TRUE(c.complete());
  EXPECT_TRUE(c.finished());
  EXPECT_TRUE(c.allows(eos));
  EXPECT_FALSE(c.accept_bytes(" "));
  // A bare number may go on, so it is complete but not finished.
  JsonSchemaConstraint n(compile_tiny(R"({"type": "integer"})"));
  ASSERT_TRUE(n.accept_bytes("12"));
  EXPECT_TRUE(n.complete());
  EXPECT_FALSE(n.finished());
}

TEST(JsonSchemaConstraint, ErrorsNameTheSchemaPath) {
  auto message = [](const std::string& schema) {
    try {
      compile_tiny(schema);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(R"({"properties": {"age": {"type": "integer", "patternProperties": {}}}})"),
            "$.properties.age: unsupported keyword \"patternProperties\"");
  EXPECT_EQ(message(R"({"type": "string", "pattern": "a+"})"), "$: unsupported keyword \"pattern\"");
  EXPECT_EQ(message(R"({"type": "array", "items": {"type": "strin"}})"), "$.items.type: unknown type \"strin\"");
  EXPECT_EQ(message(R"({"properties": {"a": {"$ref": "#/$defs/missing"}}})"),
            "$.properties.a.$ref: \"#/$defs/missing\" does not resolve");
  EXPECT_EQ(message(R"({"type": "string", "minLength": 3, "maxLength": 2})"), "$: maxLength is below minLength");
  EXPECT_EQ(message(R"({"properties": {}, "required": ["x"]})"), "$.required: \"x\" is not in properties");
  EXPECT_EQ(message(R"({"type": "integer", "minimum": 5, "maximum": 4})"),
            "$: no integer lies between minimum and maximum");
  EXPECT_EQ(message(R"({"type": "object", "properties": {"a": false}, "required": ["a"]})"),
            "the schema admits no value");
  EXPECT_EQ(message("{\"type\": ").rfind("$: the schema is not valid JSON", 0), 0u);
}

TEST(JsonSchemaConstraint, CompiledSchemaIsSharedAndCachedByText) {
  SchemaCache cache(tiny_vocabulary().vocab, 2);
  const auto a = cache.get(R"({"type": "integer"})");
  EXPECT_EQ(a, cache.get(R"({"type": "integer"})"));
  EXPECT_NE(a, cache.get(R"({"type": "integer"})", qwen_tool_call_options()));
  cache.get(R"({"type": "string"})");
  cache.get(R"({"type": "boolean"})");
  EXPECT_NE(a, cache.get(R"({"type": "integer"})"));  // evicted as least recently used
  // Two requests on one compiled schema keep their own positions.
  JsonSchemaConstraint x(a), y(a);
  ASSERT_TRUE(x.accept_bytes("12"));
  EXPECT_TRUE(y.accept_bytes("-3"));
  EXPECT_FALSE(x.accept_bytes("-"));
}

}  // namespace
}  // namespace orchard
