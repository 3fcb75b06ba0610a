// End to end: sampling freely (temperature 1, no filters) from a random-weight model and from
// stories260K under a schema constraint always yields JSON that parses and validates, also when
// max_tokens is barely enough and steering must close the value.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "constraint_test_support.h"
#include "orchard/model.h"
#include "orchard/engine.h"

namespace orchard {
namespace {

using Json = nlohmann::json;

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// An independent validator for the supported subset (kept apart from the compiler on purpose).
// Returns an empty string when `v` is valid, else what is wrong.
std::string validate(const Json& v, const Json& s, const Json& root, const std::string& path = "$") {
  if (s.is_boolean()) return s.get<bool>() ? "" : path + ": false schema";
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return validate(v, root.at(Json::json_pointer(ref.substr(1))), root, path);
  }
  if (s.contains("const") && v != s["const"]) return path + ": not the const";
  if (s.contains("enum")) {
    bool found = false;
    for (const Json& e : s["enum"]) found |= (e == v);
    if (!found) return path + ": not in enum";
  }
  if (s.contains("anyOf")) {
    for (const Json& alt : s["anyOf"])
      if (validate(v, alt, root, path).empty()) return "";
    return path + ": matches no anyOf alternative";
  }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_string()) types.push_back(s["type"]);
    else for (const Json& t : s["type"]) types.push_back(t);
    bool ok = false;
    for (const std::string& t : types) {
      ok |= (t == "object" && v.is_object()) || (t == "array" && v.is_array()) || (t == "string" && v.is_string()) ||
            (t == "integer" && v.is_number_integer()) || (t == "number" && v.is_number()) ||
            (t == "boolean" && v.is_boolean()) || (t == "null" && v.is_null());
    }
    if (!ok) return path + ": wrong type " + v.type_name();
  }
  if (v.is_string()) {
    const size_t n = code_points(v.get<std::string>());
    if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return path + ": too short";
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return path + ": too long";
  }
  if (v.is_number()) {
    const double x = v.get<double>();
    if (s.contains("minimum") && x < s["minimum"].get<double>()) return path + ": below minimum";
    if (s.contains("maximum") && x > s["maximum"].get<double>()) return path + ": above maximum";
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return path + ": too few items";
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return path + ": too many items";
    if (s.contains("items"))
      for (size_t i = 0; i < v.size(); ++i) {
        std::string e = validate(v[i], s["items"], root, path + "[" + std::to_string(i) + "]");
        if (!e.empty()) return e;
      }
  }
  if (v.is_object()) {
    if (s.contains("required"))
      for (const Json& r : s["required"])
        if (!v.contains(r.get<std::string>())) return path + ": missing " + r.get<std::string>();
    for (const auto& [key, value] : v.items()) {
      if (s.contains("properties") && s["properties"].contains(key)) {
        std::string e = validate(value, s["properties"][key], root, path + "." + key);
        if (!e.empty()) return e;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return path + ": unexpected property " + key;
      }
    }
  }
  return "";
}

const std::vector<std::string> kSchemas = {
    // Nested objects and arrays with bounded fields.
    R"({"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "scores": {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1}, "minItems": 1, "maxItems": 3},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 6},
                    "zip": {"type": "integer", "minimum": 1000, "maximum": 9999}},
                    "required": ["city", "zip"], "additionalProperties": false},
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 4}},
        "required": ["name", "age", "address"], "additionalProperties": false})",
    // Enums, const, anyOf, nullable.
    R"({"type": "object", "properties": {"kind": {"const": "point"},
        "color": {"enum": ["red", "green", null, 7]},
        "v": {"anyOf": [{"type": "integer", "minimum": -3, "maximum": 3}, {"type": "boolean"}]},
        "note": {"type": ["string", "null"], "maxLength": 5}},
        "required": ["kind", "color", "v", "note"], "additionalProperties": false})",
    // Integer ranges in an array of arrays.
    R"({"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": -20, "maximum": 20},
        "maxItems": 3}, "minItems": 2, "maxItems": 3})",
    // json_object mode: any object.
    R"({"type": "object"})",
    // A recursive tree through $defs.
    R"({"$defs": {"n": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9},
        "k": {"type": "array", "items": {"$ref": "#/$defs/n"}, "maxItems": 2}}, "required": ["v"],
        "additionalProperties": false}}, "$ref": "#/$defs/n"})",
};

struct LoadedModel {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const TokenVocabulary> vocab;
};

LoadedModel load(const std::string& relative) {
  LoadedModel s;
  s.model = Model::load(test::shared_path(relative));
  s.tokenizer = load_model_tokenizer(*s.model);
  s.vocab = TokenVocabulary::build(*s.tokenizer);
  return s;
}

void run_schemas(const LoadedModel& setup, const std::string& model_name) {
  const std::vector<int32_t> prompt = setup.tokenizer->encode("Answer in JSON:", setup.tokenizer->adds_bos());
  for (const std::string& text : kSchemas) {
    const Json schema = Json::parse(text);
    const auto compiled = JsonSchemaConstraint::compile_text(text, setup.vocab);
    const int64_t closing = JsonSchemaConstraint(compiled).closing_distance();
    for (uint64_t seed : {1u, 2u, 3u}) {
      // Plenty of room, then just enough to close, then a few more than that.
      for (int64_t max_tokens : {int64_t(300), closing, closing + 4}) {
        SCOPED_TRACE(model_name + " seed " + std::to_string(seed) + " max_tokens " + std::to_string(max_tokens) +
                     " schema " + text);
        Session session(setup.model, setup.tokenizer, {.n_ctx = 512});
        auto constraint = std::make_shared<JsonSchemaConstraint>(compiled);
        StreamOptions options;
        options.sampling = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed};
        options.max_tokens = max_tokens;
        options.constraint = constraint;
        std::string out;
        const GenerateResult r = session.reply(prompt, options, [&](std::string_view piece) {
          out += piece;
          return true;
        });
        EXPECT_LE(int64_t(r.tokens.size()), max_tokens);
        EXPECT_TRUE(constraint->complete()) << out;
        Json value;
        try {
          value = Json::parse(out);
        } catch (const Json::exception& e) {
          ADD_FAILURE() << "does not parse: " << e.what() << "\n" << out;
          continue;
        }
        EXPECT_EQ(validate(value, schema, schema), "") << out;
      }
    }
  }
}

TEST(ConstrainedGenerate, RandomWeightChatModelAlwaysGivesValidJson) {
  const LoadedModel s = load("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf");
  run_schemas(s, "tiny-chat");
}

TEST(ConstrainedGenerate, Stories260KAlwaysGivesValidJson) {
  const LoadedModel s = load("models/stories260K/stories260K.gguf");
  run_schemas(s, "stories260K");
}

TEST(ConstrainedGenerate, ToolCallWrapperIsGeneratedAroundTheArguments) {
  const LoadedModel s = load("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf");
  const auto args = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
          "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"]})");
  const auto compiled = JsonSchemaConstraint::compile(tool_call_schema({{"get_weather", args}}), s.vocab,
                                                      qwen_tool_call_options());
  const std::string prefix = "<tool_call>\n", suffix = "\n</tool_call>";
  for (uint64_t seed : {4u, 5u}) {
    Session session(s.model, s.tokenizer, {.n_ctx = 512});
    auto constraint = std::make_shared<JsonSchemaConstraint>(compiled);
    StreamOptions options;
    options.sampling = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed};
    options.max_tokens = 120;
    options.constraint = constraint;
    std::string out;
    session.reply(s.tokenizer->encode("call:"), options, [&](std::string_view piece) {
      out += piece;
      return true;
    });
    ASSERT_GE(out.size(), prefix.size() + suffix.size()) << out;
    EXPECT_EQ(out.substr(0, prefix.size()), prefix);
    EXPECT_EQ(out.substr(out.size() - suffix.size()), suffix);
    const Json call = Json::parse(out.substr(prefix.size(), out.size() - prefix.size() - suffix.size()));
    EXPECT_EQ(call["name"], "get_weather");
    EXPECT_EQ(validate(call["arguments"], Json::parse(args.dump()), Json::parse(args.dump())), "") << out;
  }
}

}  // namespace
}  // namespace orchard
