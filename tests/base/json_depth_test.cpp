// The JSON nesting bound, on its own and in every reader of untrusted JSON. Before it, a value
// nested 100,000 deep crashed the server at its first copy (SIGSEGV), and a safetensors header of
// '[' built gigabytes of empty arrays.
#include "base/json_depth.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#if ORCHARD_WITH_SERVER
#include "server/openai_protocol.h"
#endif
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::string nested(int depth, const std::string& inner = "1") {
  std::string text;
  for (int i = 0; i < depth; ++i) text += (i % 2 ? "{\"k\":" : "[");
  text += inner;
  for (int i = depth - 1; i >= 0; --i) text += (i % 2 ? "}" : "]");
  return text;
}

TEST(JsonDepth, CountsOnlyBracketsOutsideStrings) {
  EXPECT_FALSE(json_too_deep_at(nested(kMaxJsonDepth)));
  EXPECT_EQ(json_too_deep_at(nested(kMaxJsonDepth + 1)), std::optional<size_t>(nested(kMaxJsonDepth).find("1")));
  EXPECT_FALSE(json_too_deep_at(R"(["[[[[", "\"[[[[", {"{{{{": "}}}}"}])", 2));
  EXPECT_EQ(json_too_deep_at(R"(["\\", [[1]]])", 2), std::optional<size_t>(8));  // an escaped backslash ends the escape
  EXPECT_FALSE(json_too_deep_at("]]]]][[", 2));  // stray closers do not lend depth
  EXPECT_TRUE(json_too_deep_at("]]]]][[[", 2));
}

TEST(JsonDepth, ErrorNamesTheInput) {
  try {
    check_json_depth(nested(300), "some.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("some.json: JSON nested more than 256 levels deep"), std::string::npos) << e.what();
  }
}

#if ORCHARD_WITH_SERVER  // the server's request parser (absent with -DORCHARD_SERVER=OFF)
// A deep value followed by another key: the shape that crashed the server.
std::string deep_then_key(const std::string& where) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string message = R"({"role":"user","content":"hi"})";
  if (where == "top") return R"({"messages":[)" + message + R"(],"x":)" + deep + R"(,"y":1})";
  if (where == "messages") return R"({"messages":[{"role":"user","content":"hi","x":)" + deep + R"(,"y":1}]})";
  if (where == "tools")
    return R"({"messages":[)" + message + R"(],"tools":[{"type":"function","function":{"name":"f","parameters":{"x":)" + deep +
           R"(,"type":"object"}}}]})";
  if (where == "kwargs") return R"({"messages":[)" + message + R"(],"chat_template_kwargs":{"a":)" + deep + R"(,"b":1}})";
  return R"({"messages":[)" + message + R"(],"response_format":{"type":"json_schema","json_schema":{"schema":{"enum":[)" +
         deep + R"(],"const":1}}}})";
}

TEST(JsonDepth, DeeplyNestedRequestsAreRefusedWith400) {
  for (const char* where : {"top", "messages", "tools", "kwargs", "schema"}) {
    try {
      server::parse_chat_request(server::parse_body(deep_then_key(where)));
      ADD_FAILURE() << where << ": accepted";
    } catch (const server::RequestError& e) {
      EXPECT_EQ(e.status, 400) << where;
      EXPECT_NE(std::string(e.what()).find("more than 256 levels"), std::string::npos) << where << ": " << e.what();
    }
  }
}

TEST(JsonDepth, DeeplyNestedToolCallArgumentsAreRefusedWith400) {
  std::string arguments = std::string(100000, '[') + std::string(100000, ']');
  const server::json body = {
      {"messages",
       {{{"role", "user"}, {"content", "hi"}},
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls", {{{"id", "c"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", arguments}}}}}}}}}};
  try {
    server::parse_chat_request(body);
    FAIL() << "accepted";
  } catch (const server::RequestError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("levels deep"), std::string::npos) << e.what();
  }
}
#endif

std::string load_error(const std::function<void()>& load) {
  try {
    load();
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

TEST(JsonDepth, DeepTokenizerJsonIsRefused) {
  test::TempDir dir;
  const std::string path = dir.write("tokenizer.json", R"({"model":)" + nested(100000) + R"(,"x":1})");
  const std::string message = load_error([&] { Tokenizer::load(path); });
  EXPECT_NE(message.find(path + ": JSON nested more than"), std::string::npos) << message;
}

TEST(JsonDepth, DeepConfigJsonIsRefused) {
  test::TempDir dir;
  dir.write("config.json", R"({"architectures":)" + nested(100000) + R"(,"x":1})");
  dir.write("model.safetensors", std::string(8, '\0'));
  const std::string message = load_error([&] { Model::load(dir.path()); });
  EXPECT_NE(message.find("config.json: JSON nested more than"), std::string::npos) << message;
}

// 8 MB of '[' (the issue's 100 MB peaked at 7.75 GB of memory before failing).
TEST(JsonDepth, DeepSafetensorsHeaderIsRefusedBeforeParsing) {
  test::TempDir dir;
  const std::string header(8u << 20, '[');
  std::string file(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(file.data(), &length, 8);
  const std::string path = dir.write("model.safetensors", file + header);
  dir.write("config.json", test::read_text(test::shared_path("golden/qwen2-hf-f32/config.json")));
  const std::string message = load_error([&] { Model::load(dir.path()); });
  EXPECT_NE(message.find("safetensors header: JSON nested more than"), std::string::npos) << message;
}

}  // namespace
}  // namespace orchard
