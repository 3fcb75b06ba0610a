// The OpenAI API in-process, without a socket: the protocol's parsers, the chat service, and the
// handler over an engine of the tiny chat model, answering into a connection that records what
// is written. Every 4xx that tests/server/integration_test.sh, openai_client.mjs and
// hardening/request_test.py provoke over HTTP is provoked here too (the body limit's 413s are the
// transport's: read_body is tested below with httplib's reader fed in-process).
#include "server/openai_handler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "orchard/engine.h"
#include "server/builtin_chat_templates.h"
#include "server/channel_waker.h"
#include "server/chat_service.h"
#include "server/front_stage.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// What a transport does with a connection: records the bytes written, and tells the handler
// that the client left when asked to (its writes fail after `good_writes`, or it is not
// `present` when probed).
class RecordingConnection : public ClientConnection {
 public:
  bool write(std::string_view bytes) override {
    if (writes++ >= good_writes) return false;
    text.append(bytes);
    return true;
  }
  bool client_present(std::string_view) override {
    ++probes;
    return present;
  }

  std::string text;
  int writes = 0;
  int good_writes = std::numeric_limits<int>::max();
  bool present = true;
  int probes = 0;
};

// A response as a client sees it: the status and the whole body, however it was written.
struct Answer {
  int status = 0;
  std::string content_type;
  std::string body;
  bool deferred = false;  // written over time
  bool ended = false;     // a deferred body ended properly (write_body returned true)
  std::vector<std::pair<std::string, std::string>> headers;  // beyond the content type
  json parsed() const { return json::parse(body); }
  // The header's value; "(none)" when absent (so that a test can tell absent from empty).
  std::string header(const std::string& name) const {
    for (const auto& [key, value] : headers)
      if (key == name) return value;
    return "(none)";
  }
};

Answer run(const ApiResponse& response, RecordingConnection& connection) {
  Answer a{.status = response.status, .content_type = response.content_type, .body = response.body, .headers = response.headers};
  if (response.write_body) {
    a.deferred = true;
    a.ended = response.write_body(connection);
    a.body = connection.text;
  }
  return a;
}

std::string base_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// The server's objects in the order serve() builds them: the metrics and the waker outlive the
// engine that reports to them and pushes through them.
struct TestServer {
  TestServer(const std::string& path, int64_t n_ctx, const std::string& chat_template = "")
      : model(Model::load(path)),
        tokenizer(load_model_tokenizer(*model)),
        engine(model, tokenizer, {.slots = 2, .n_ctx = n_ctx, .n_threads = 1, .observer = &metrics}),
        service(tokenizer, base_name(path), engine.n_ctx(), chat_template),
        // ServerOptions' default interval.
        handler(service, engine, waker, metrics, {.stream_interval = milliseconds(10)}) {}

  Answer request(const std::string& method, const std::string& path, const std::string& body,
                 RecordingConnection& connection, std::function<bool()> client_left = {}) const {
    return run(handler.handle({.method = method, .path = path, .headers = {}, .body = body, .client_left = std::move(client_left)}),
               connection);
  }
  Answer post(const std::string& path, const json& body) const {
    RecordingConnection connection;
    return request("POST", path, body.dump(), connection);
  }
  Answer post_text(const std::string& path, const std::string& body) const {
    RecordingConnection connection;
    return request("POST", path, body, connection);
  }
  Answer get(const std::string& path) const {
    RecordingConnection connection;
    return request("GET", path, "", connection);
  }
  int64_t metric(const std::string& name) const {
    const std::string text = metrics.render(), key = "\n" + name + " ";
    const size_t at = text.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(text.substr(at + key.size()));
  }
  // Waits until the engine has finished `count` jobs their clients left (the engine notices at
  // its next token, after the handler has returned).
  bool abandoned_reaches(int64_t count) const {
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(60);
    while (metric("orchard_abandoned_requests_total") < count || metric("orchard_requests_active") != 0) {
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  Metrics metrics;
  ChannelWaker waker;
  Engine engine;
  ChatService service;
  OpenAIHandler handler;
};

const json kUser = {{"role", "user"}, {"content", "Hi"}};

json chat_body(json fields = json::object()) {
  json body = {{"messages", json::array({kUser})}, {"max_tokens", 4}};
  for (auto& [key, value] : fields.items()) body[key] = value;
  return body;
}

// The data of each server-sent event, in order; every event must be "data: ...\n\n".
std::vector<std::string> events_of(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) {
      ADD_FAILURE() << "an event without its blank line: " << text.substr(pos, 200);
      break;
    }
    const std::string event = text.substr(pos, end - pos);
    pos = end + 2;
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    out.push_back(event.substr(6));
  }
  return out;
}

void expect_error(const Answer& a, int status, const char* param, const char* code, const std::string& message_part) {
  EXPECT_EQ(a.status, status) << a.body;
  EXPECT_FALSE(a.deferred);
  EXPECT_EQ(a.content_type, "application/json");
  const json body = json::parse(a.body, nullptr, false);
  ASSERT_TRUE(body.is_object() && body.contains("error")) << a.body;
  const json& error = body["error"];
  EXPECT_EQ(error["type"], status >= 500 ? "server_error" : "invalid_request_error") << a.body;
  EXPECT_EQ(error["param"], param ? json(param) : json(nullptr)) << a.body;
  EXPECT_EQ(error["code"], code ? json(code) : json(nullptr)) << a.body;
  ASSERT_TRUE(error["message"].is_string()) << a.body;
  EXPECT_NE(error["message"].get<std::string>().find(message_part), std::string::npos)
      << "'" << message_part << "' not in: " << error["message"].get<std::string>().substr(0, 300);
}

class OpenAIHandlerTest : public ::testing::Test {
 protected:
  // The integration test's context: 4096 tokens, so that its long prompt is too long here too.
  static void SetUpTestSuite() { server_ = new TestServer(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"), 4096); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static TestServer* server_;
};
TestServer* OpenAIHandlerTest::server_ = nullptr;

struct ErrorCase {
  const char* name;
  const char* path;
  std::string body;
  int status;
  const char* param;
  const char* code;
  std::string message;
};

// A value nested 100,000 levels deep (then another key), in each place request_test.py puts one.
std::vector<ErrorCase> deep_cases() {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string msg = kUser.dump();
  auto body_level = [&](const char* name, std::string body) {
    return ErrorCase{name, "/v1/chat/completions", std::move(body), 400, nullptr, "invalid_json", "levels deep"};
  };
  json call_message = {{"role", "assistant"}, {"content", nullptr},
                       {"tool_calls", json::array({{{"id", "c"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", deep}}}}})}};
  return {
      body_level("deep: top level", R"({"messages":[)" + msg + R"(],"x":)" + deep + R"(,"y":1})"),
      body_level("deep: messages", R"({"messages":[{"role":"user","content":"hi","x":)" + deep + R"(,"y":1}]})"),
      body_level("deep: tools", R"({"messages":[)" + msg + R"(],"tools":[{"type":"function","function":{"name":"f","parameters":{"x":)" +
                                    deep + R"(,"type":"object"}}}]})"),
      body_level("deep: chat_template_kwargs", R"({"messages":[)" + msg + R"(],"chat_template_kwargs":{"a":)" + deep + R"(,"b":1}})"),
      body_level("deep: schema const", R"({"messages":[)" + msg +
                                           R"(],"response_format":{"type":"json_schema","json_schema":{"schema":{"const":)" + deep +
                                           R"(,"type":"string"}}}})"),
      body_level("deep: schema enum", R"({"messages":[)" + msg +
                                          R"(],"response_format":{"type":"json_schema","json_schema":{"schema":{"enum":[)" + deep +
                                          R"(],"type":"string"}}}})"),
      body_level("deep: schema $defs", R"({"messages":[)" + msg +
                                           R"(],"response_format":{"type":"json_schema","json_schema":{"schema":{"$defs":{"a":)" + deep +
                                           R"(},"type":"string"}}}})"),
      // A JSON string holding deep JSON: only the parse of the arguments meets it.
      {"deep: tool_calls.arguments", "/v1/chat/completions", json{{"messages", json::array({kUser, call_message})}}.dump(), 400,
       "messages", "invalid_value", "levels deep"},
  };
}

json schema_request(const json& schema) {
  return chat_body({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "s"}, {"schema", schema}}}}}});
}

json optional_properties(int n) {
  json properties = json::object();
  for (int i = 0; i < n; ++i) properties["property_" + std::to_string(i)] = {{"type", "integer"}};
  return {{"type", "object"}, {"properties", properties}};
}

const json kUnsupportedSchema = {{"type", "object"}, {"properties", {{"s", {{"type", "string"}, {"pattern", "a+"}}}}}};

std::vector<ErrorCase> error_cases() {
  const char* chat = "/v1/chat/completions";
  const char* completions = "/v1/completions";
  auto c = [&](const char* name, const json& fields, const char* param, const std::string& message,
               const char* code = "invalid_value") {
    return ErrorCase{name, chat, chat_body(fields).dump(), 400, param, code, message};
  };
  auto with_messages = [&](const char* name, const json& messages, const char* param, const std::string& message,
                           const char* code = "invalid_value") {
    return ErrorCase{name, chat, json{{"messages", messages}}.dump(), 400, param, code, message};
  };
  auto p = [&](const char* name, const json& body, const char* param, const std::string& message,
               const char* code = "invalid_value") {
    return ErrorCase{name, completions, body.dump(), 400, param, code, message};
  };
  const json tool = {{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}};
  std::vector<ErrorCase> cases = {
      // integration_test.sh and openai_client.mjs
      {"truncated JSON (curl)", chat, R"({"messages":)", 400, nullptr, "invalid_json", "not valid JSON"},
      {"truncated JSON (openai client)", chat, R"({"messages": [)", 400, nullptr, "invalid_json", "not valid JSON"},
      c("n = 2", {{"n", 2}}, "n", "only n = 1", "unsupported_value"),
      with_messages("messages a string", "hello", "messages", "non-empty array"),
      with_messages("a prompt beyond the context", json::array({{{"role", "user"}, {"content", std::string(20000, 'x')}}}),
                    "messages", "context holds 4096", "context_length_exceeded"),
      c("an unsupported response schema", {{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "u"}, {"schema", kUnsupportedSchema}}}}}},
        "response_format", "unsupported JSON schema", "invalid_schema"),
      c("an unsupported tool schema", {{"tool_choice", "required"}, {"tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", kUnsupportedSchema}}}}})}},
        "tools", "unsupported JSON schema", "invalid_schema"),
      c("temperature a string", {{"temperature", "hot"}}, "temperature", "'temperature' must be a number"),
      // request_test.py: schemas that would build huge automata
      {"minLength 1e9", chat, schema_request({{"type", "string"}, {"minLength", 1000000000}}).dump(), 400, "response_format", "invalid_schema", "$.minLength"},
      {"maxLength 1e9", chat, schema_request({{"type", "string"}, {"maxLength", 1000000000}}).dump(), 400, "response_format", "invalid_schema", "$.maxLength"},
      {"minItems 1e9", chat, schema_request({{"type", "array"}, {"minItems", 1000000000}}).dump(), 400, "response_format", "invalid_schema", "$.minItems"},
      {"1000 optional properties", chat, schema_request(optional_properties(1000)).dump(), 400, "response_format", "invalid_schema", "$.properties"},
      {"10000 optional properties", chat, schema_request(optional_properties(10000)).dump(), 400, "response_format", "invalid_schema", "$.properties"},
      p("a completion beyond the context", {{"prompt", [] {
          std::string s;
          for (int i = 0; i < 5000; ++i) s += "hello ";
          return s;
        }()}, {"max_tokens", 4}}, "prompt", "context holds 4096", "context_length_exceeded"),
      // The rest of the protocol's refusals (openai_protocol.cpp, chat_service.cpp).
      {"a body that is not an object", chat, "[1, 2]", 400, nullptr, "invalid_json", "must be a JSON object"},
      {"an empty body", chat, "", 400, nullptr, "invalid_json", "not valid JSON"},
      with_messages("no messages", json::array(), "messages", "non-empty array"),
      with_messages("a message not an object", json::array({"hi"}), "messages[0]", "must be an object"),
      with_messages("a message without a role", json::array({{{"content", "hi"}}}), "messages[0].role", "must be a string"),
      with_messages("an unknown role", json::array({{{"role", "wizard"}, {"content", "hi"}}}), "messages[0].role", "'wizard' is not one of"),
      with_messages("content a number", json::array({{{"role", "user"}, {"content", 5}}}), "messages[0].content", "must be a string or an array"),
      with_messages("an image part", json::array({{{"role", "user"}, {"content", json::array({{{"type", "image_url"}, {"image_url", "x"}}})}}}),
                    "messages[0].content", "only text is supported"),
      // (json::value("type", "") threw on these: a 500; found by fuzz_openai_request)
      with_messages("a part whose type is a number", json::array({{{"role", "user"}, {"content", json::array({{{"type", 1}}})}}}),
                    "messages[0].content", "only text is supported"),
      c("a tool whose type is a number", {{"tools", json::array({{{"type", 3}}})}}, "tools[0]", "must be {\"type\": \"function\""),
      c("a tool_choice whose type is an array", {{"tool_choice", {{"type", json::array()}}}}, "tool_choice", "must be none, auto"),
      with_messages("a user message without content", json::array({{{"role", "user"}}}), "messages[0].content", "is required"),
      with_messages("tool_calls not an array", json::array({kUser, {{"role", "assistant"}, {"content", ""}, {"tool_calls", 1}}}),
                    "messages[1].tool_calls", "must be an array"),
      with_messages("a tool call without a name", json::array({kUser, {{"role", "assistant"}, {"tool_calls", json::array({{{"function", json::object()}}})}}}),
                    "messages[1].tool_calls", "need function.name"),
      c("n = 0", {{"n", 0}}, "n", "'n' must be between"),
      c("n not an integer", {{"n", 1.5}}, "n", "'n' must be an integer"),
      c("temperature above 2", {{"temperature", 3}}, "temperature", "must be between"),
      c("top_p above 1", {{"top_p", 1.5}}, "top_p", "must be between"),
      c("top_k negative", {{"top_k", -1}}, "top_k", "must be between"),
      c("min_p above 1", {{"min_p", 2}}, "min_p", "must be between"),
      c("presence_penalty above 2", {{"presence_penalty", 3}}, "presence_penalty", "must be between"),
      c("frequency_penalty below -2", {{"frequency_penalty", -3}}, "frequency_penalty", "must be between"),
      c("repetition_penalty 0", {{"repetition_penalty", 0}}, "repetition_penalty", "must be between"),
      c("repeat_last_n below -1", {{"repeat_last_n", -2}}, "repeat_last_n", "must be between"),
      c("repeat_last_n not an integer", {{"repeat_last_n", 1.5}}, "repeat_last_n", "must be an integer"),
      c("seed a string", {{"seed", "x"}}, "seed", "must be an integer"),
      c("max_tokens 0", {{"max_tokens", 0}}, "max_tokens", "must be between"),
      c("max_completion_tokens a string", {{"max_completion_tokens", "8"}}, "max_completion_tokens", "must be an integer"),
      c("five stop strings", {{"stop", json::array({"a", "b", "c", "d", "e"})}}, "stop", "at most 4 strings"),
      c("a stop that is not a string", {{"stop", json::array({1})}}, "stop", "only strings"),
      c("stream a string", {{"stream", "yes"}}, "stream", "must be a boolean"),
      c("stream_options not an object", {{"stream_options", 1}}, "stream_options", "must be an object"),
      c("include_usage not a boolean", {{"stream_options", {{"include_usage", "x"}}}}, "include_usage", "must be a boolean"),
      c("logprobs not a boolean", {{"logprobs", 1}}, "logprobs", "must be a boolean"),
      c("top_logprobs 21", {{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs", "must be between"),
      c("top_logprobs without logprobs", {{"top_logprobs", 2}}, "top_logprobs", "needs 'logprobs': true"),
      c("tools not an array", {{"tools", tool}}, "tools", "must be an array"),
      c("a tool that is not a function", {{"tools", json::array({{{"type", "code"}}})}}, "tools[0]", "must be {\"type\": \"function\""),
      c("a tool's parameters not an object", {{"tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", 1}}}}})}},
        "tools[0].function.parameters", "must be a JSON Schema object"),
      c("an unknown tool_choice", {{"tools", json::array({tool})}, {"tool_choice", "sometimes"}}, "tool_choice", "must be none, auto, required"),
      c("a tool_choice object without a name", {{"tools", json::array({tool})}, {"tool_choice", {{"type", "function"}}}}, "tool_choice", "must be none, auto, required"),
      c("tool_choice required without tools", {{"tool_choice", "required"}}, "tool_choice", "no 'tools' are given"),
      c("tool_choice naming a missing function", {{"tools", json::array({tool})}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "g"}}}}}},
        "tool_choice", "names function 'g', which is not in 'tools'"),
      c("response_format a string", {{"response_format", "json"}}, "response_format", "must be an object with a 'type'"),
      c("an unknown response_format type", {{"response_format", {{"type", "xml"}}}}, "response_format.type", "must be text, json_object or json_schema"),
      c("json_schema without a schema", {{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "s"}}}}}},
        "response_format.json_schema", "must be a JSON Schema object"),
      c("chat_template_kwargs not an object", {{"chat_template_kwargs", json::array()}}, "chat_template_kwargs", "must be an object"),
      // The template calls .strip() on reasoning_content of the last assistant message.
      {"messages the template cannot render", chat,
       json{{"messages", json::array({kUser, {{"role", "assistant"}, {"content", "x"}, {"reasoning_content", 5}}})}}.dump(), 400,
       "messages", nullptr, "the chat template could not render these messages"},
      p("a completion without a prompt", {{"max_tokens", 4}}, "prompt", "'prompt' is required"),
      p("a prompt that is a number", {{"prompt", 5}}, "prompt", "must be a string"),
      // Prompts as token ids and arrays of prompts (issue 21): what is not one of the four shapes,
      // and token ids the vocabulary does not hold, named by their prompt's index.
      p("a token id beyond the vocabulary", {{"prompt", json::array({json::array({1, 2}), json::array({3, 1 << 24})})}}, "prompt",
        "prompt[1] holds token id 16777216, outside the vocabulary"),
      p("a negative token id", {{"prompt", json::array({5, -1})}}, "prompt", "prompt[1] holds token id -1, which is outside"),
      p("a token id beyond int32", {{"prompt", json::array({int64_t{1} << 40})}}, "prompt", "outside the vocabulary"),
      p("a token id that is not an integer", {{"prompt", json::array({1.5})}}, "prompt", "prompt[0] must be a token id"),
      p("prompts of strings and numbers", {{"prompt", json::array({"a", 5})}}, "prompt", "(prompt[1] is neither)"),
      p("an empty prompt array", {{"prompt", json::array()}}, "prompt", "'prompt' must be a string, an array of strings"),
      p("an empty prompt among several", {{"prompt", json::array({"a", ""})}}, "prompt", "prompt[1] is empty", nullptr),
      p("an empty token prompt", {{"prompt", json::array({json::array()})}}, "prompt", "the prompt is empty", nullptr),
      p("129 prompts", {{"prompt", json::array_t(129, "a")}}, "prompt", "more than 128 prompts"),
      p("completion n = 2", {{"prompt", "a"}, {"n", 2}}, "n", "only n = 1", "unsupported_value"),
      p("completion logprobs 21", {{"prompt", "a"}, {"logprobs", 21}}, "logprobs", "must be between"),
      p("completion echo a string", {{"prompt", "a"}, {"echo", "x"}}, "echo", "must be a boolean"),
      // The tiny model's tokenizer adds no BOS: an empty prompt has no token to start from.
      p("an empty completion prompt", {{"prompt", ""}}, "prompt", "the prompt is empty", nullptr),
      {"truncated completion JSON", completions, R"({"prompt": )", 400, nullptr, "invalid_json", "not valid JSON"},
  };
  for (ErrorCase& d : deep_cases()) cases.push_back(std::move(d));
  return cases;
}

TEST_F(OpenAIHandlerTest, EveryClientMistakeIsAnErrorObjectWithItsStatusParamAndCode) {
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  const int64_t prefilled = server_->metric("orchard_prompt_tokens_total");
  for (const ErrorCase& e : error_cases()) {
    SCOPED_TRACE(e.name);
    expect_error(server_->post_text(e.path, e.body), e.status, e.param, e.code, e.message);
  }
  // Each refused before its job reached the engine.
  EXPECT_EQ(server_->metric("orchard_generated_tokens_total"), generated);
  EXPECT_EQ(server_->metric("orchard_prompt_tokens_total"), prefilled);
  // Still serving.
  EXPECT_EQ(server_->post("/v1/chat/completions", chat_body()).status, 200);
}

TEST_F(OpenAIHandlerTest, UnknownRoutesAre404WithTheMethodAndPath) {
  expect_error(server_->get("/v1/nothing"), 404, nullptr, nullptr, "no route GET /v1/nothing");
  expect_error(server_->get("/v1/chat/completions"), 404, nullptr, nullptr, "no route GET /v1/chat/completions");
  expect_error(server_->post("/health", json::object()), 404, nullptr, nullptr, "no route POST /health");
  RecordingConnection connection;
  expect_error(server_->request("DELETE", "/v1/models", "", connection), 404, nullptr, nullptr, "no route DELETE /v1/models");
  expect_error(server_->request("HEAD", "/v1/completions", "", connection), 404, nullptr, nullptr, "no route HEAD /v1/completions");
}

// A schema whose determinization takes about a second (request_test.py's slow schema) stops as
// soon as the transport says its client left: ApiRequest::client_left reaches the compiler.
TEST_F(OpenAIHandlerTest, AClientThatLeavesStopsItsSchemaCompilation) {
  json slow = {{"anyOf", json::array()}};
  for (int i = 0; i < 8; ++i) slow["anyOf"].push_back(optional_properties(90));
  std::atomic<int> asked{0};
  RecordingConnection connection;
  const Clock::time_point start = Clock::now();
  const Answer a = server_->request("POST", "/v1/chat/completions", schema_request(slow).dump(), connection, [&] {
    ++asked;
    return true;
  });
  const double cancelled = std::chrono::duration<double>(Clock::now() - start).count();
  expect_error(a, 400, "response_format", "invalid_schema", "cancelled");
  EXPECT_GT(asked.load(), 0);
  // Nothing of it is cached: a client that stays gets the compiler's own refusal, after the
  // whole budget (about a second here, several under the sanitizers).
  const Clock::time_point again = Clock::now();
  const Answer refused = server_->post("/v1/chat/completions", schema_request(slow));
  const double whole = std::chrono::duration<double>(Clock::now() - again).count();
  EXPECT_LT(cancelled, whole / 4) << cancelled << " s cancelled, " << whole << " s whole";
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(refused.parsed()["error"]["code"], "invalid_schema");
  EXPECT_EQ(refused.parsed()["error"]["message"].get<std::string>().find("cancelled"), std::string::npos) << refused.body;
}

TEST_F(OpenAIHandlerTest, AChatAnswerThatIsNotStreamed) {
  const json request = chat_body({{"max_tokens", 8}, {"seed", 7}, {"temperature", 0.7}});
  const Answer a = server_->post("/v1/chat/completions", request);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content_type, "application/json");
  if (a.deferred) {
    EXPECT_TRUE(a.ended);
  }
  const json body = a.parsed();
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "tiny-qwen2-chat-q8_0.gguf");
  ASSERT_EQ(body["choices"].size(), 1u);
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(body["choices"][0]["message"]["content"].is_string());
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["completion_tokens"], 8);
  EXPECT_GT(body["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(body["usage"]["total_tokens"], body["usage"]["prompt_tokens"].get<int>() + 8);
  // Same seed, same text.
  EXPECT_EQ(server_->post("/v1/chat/completions", request).parsed()["choices"][0]["message"]["content"],
            body["choices"][0]["message"]["content"]);
}

TEST_F(OpenAIHandlerTest, AStreamedChatIsEventsEndingInDone) {
  const json plain = chat_body({{"max_tokens", 16}, {"temperature", 0}});
  json streamed = plain;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const Answer a = server_->post("/v1/chat/completions", streamed);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content_type, "text/event-stream");
  ASSERT_TRUE(a.deferred);
  EXPECT_TRUE(a.ended);
  const std::vector<std::string> events = events_of(a.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text, finish;
  json usage;
  std::string id;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (id.empty()) id = chunk["id"];
    EXPECT_EQ(chunk["id"], id);  // one completion
    if (i == 0) {
      EXPECT_EQ(chunk["choices"][0]["delta"]["role"], "assistant");
    }
    if (chunk.contains("usage")) usage = chunk["usage"];
    for (const json& choice : chunk["choices"]) {
      if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
      if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
    }
  }
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage["completion_tokens"], 16);
  // Greedy: the stream's text is the answer's that is not streamed.
  EXPECT_EQ(text, server_->post("/v1/chat/completions", plain).parsed()["choices"][0]["message"]["content"]);
}

TEST_F(OpenAIHandlerTest, LogprobsStreamedAndNotOneEntryPerToken) {
  const json request = chat_body({{"max_tokens", 12}, {"seed", 5}, {"temperature", 0.7}, {"logprobs", true}, {"top_logprobs", 2}});
  const json plain = server_->post("/v1/chat/completions", request).parsed();
  const json& entries = plain["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(entries.size(), 12u);
  for (const json& e : entries) {
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    ASSERT_EQ(e["top_logprobs"].size(), 2u);
    EXPECT_GE(e["top_logprobs"][0]["logprob"].get<double>(), e["top_logprobs"][1]["logprob"].get<double>());
  }
  json streamed_request = request;
  streamed_request["stream"] = true;
  const Answer a = server_->post("/v1/chat/completions", streamed_request);
  std::vector<std::string> tokens;
  for (const std::string& event : events_of(a.body)) {
    if (event == "[DONE]") continue;
    const json chunk = json::parse(event);
    for (const json& choice : chunk["choices"])
      if (choice["logprobs"].is_object())
        for (const json& e : choice["logprobs"]["content"]) tokens.push_back(e["token"]);
  }
  ASSERT_EQ(tokens.size(), 12u);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(tokens[i], entries[i]["token"]);
}

TEST_F(OpenAIHandlerTest, ForcedToolCallsStreamedAndNot) {
  const json weather = {{"type", "function"},
                        {"function", {{"name", "get_weather"},
                                      {"parameters", {{"type", "object"},
                                                      {"properties", {{"city", {{"type", "string"}, {"maxLength", 16}}},
                                                                      {"days", {{"type", "integer"}, {"minimum", 1}, {"maximum", 7}}}}},
                                                      {"required", json::array({"city", "days"})},
                                                      {"additionalProperties", false}}}}}};
  const json forced = chat_body({{"tools", json::array({weather})}, {"max_tokens", 60}, {"seed", 3},
                                 {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}});
  const json body = server_->post("/v1/chat/completions", forced).parsed();
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  const json args = json::parse(choice["message"]["tool_calls"][0]["function"]["arguments"].get<std::string>());
  EXPECT_TRUE(args["city"].is_string());
  EXPECT_TRUE(args["days"].is_number_integer());

  json streamed = chat_body({{"tools", json::array({weather})}, {"tool_choice", "required"}, {"max_tokens", 60}, {"stream", true}, {"seed", 5}});
  const Answer a = server_->post("/v1/chat/completions", streamed);
  json call;
  std::string finish;
  for (const std::string& event : events_of(a.body)) {
    if (event == "[DONE]") continue;
    const json chunk = json::parse(event);
    for (const json& c : chunk["choices"]) {
      if (c["delta"].contains("tool_calls")) call = c["delta"]["tool_calls"][0];
      if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
    }
  }
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(call["index"], 0);
  EXPECT_TRUE(json::parse(call["function"]["arguments"].get<std::string>()).is_object());
}

TEST_F(OpenAIHandlerTest, CompletionsStreamedAndNot) {
  const Answer a = server_->post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}, {"echo", true}, {"temperature", 0}});
  ASSERT_EQ(a.status, 200) << a.body;
  const json body = a.parsed();
  EXPECT_EQ(body["object"], "text_completion");
  const std::string text = body["choices"][0]["text"];
  EXPECT_EQ(text.rfind("Once", 0), 0u) << text;  // echoed
  EXPECT_EQ(body["usage"]["completion_tokens"], 3);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");

  const Answer s = server_->post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}, {"echo", true}, {"temperature", 0},
                                                     {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.content_type, "text/event-stream");
  const std::vector<std::string> events = events_of(s.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
  std::string streamed;
  int64_t usage = -1;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "text_completion");
    for (const json& c : chunk["choices"]) streamed += c["text"].get<std::string>();
    if (chunk.contains("usage")) usage = chunk["usage"]["completion_tokens"];
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(usage, 3);
}

// The client's writes fail after the first (the role and the first tokens): the job is cancelled
// at the engine's next token, not run to the context's end (~4000 tokens).
TEST_F(OpenAIHandlerTest, AClientThatLeavesAStreamCancelsItsGeneration) {
  const int64_t abandoned = server_->metric("orchard_abandoned_requests_total");
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  RecordingConnection connection;
  connection.good_writes = 1;
  const json request = chat_body({{"max_tokens", 100000}, {"stream", true}, {"seed", 11},
                                  {"messages", json::array({{{"role", "user"}, {"content", "Go on forever."}}})}});
  const Answer a = server_->request("POST", "/v1/chat/completions", request.dump(), connection);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(connection.writes, 2);  // nothing is written after the failed write
  EXPECT_EQ(a.body.rfind("data: ", 0), 0u);
  EXPECT_EQ(a.body.find("[DONE]"), std::string::npos);
  ASSERT_TRUE(server_->abandoned_reaches(abandoned + 1));
  EXPECT_LT(server_->metric("orchard_generated_tokens_total") - generated, 2000);
}

// With tools the text is held back while it may be a tool call: nothing is written after the
// role chunk, and the client's absence shows when it is probed.
TEST_F(OpenAIHandlerTest, AClientThatLeavesAStreamHeldBackAsAToolCallCancelsIt) {
  const int64_t abandoned = server_->metric("orchard_abandoned_requests_total");
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  const json write_tool = {{"type", "function"},
                           {"function", {{"name", "write"},
                                         {"parameters", {{"type", "object"},
                                                         {"properties", {{"text", {{"type", "string"}}}}},
                                                         {"required", json::array({"text"})}}}}}};
  RecordingConnection connection;
  connection.present = false;
  const json request = chat_body({{"tools", json::array({write_tool})}, {"tool_choice", "required"}, {"max_tokens", 100000},
                                  {"stream", true}, {"seed", 11}});
  const Answer a = server_->request("POST", "/v1/chat/completions", request.dump(), connection);
  EXPECT_EQ(a.status, 200);
  EXPECT_GT(connection.probes, 0);
  ASSERT_TRUE(server_->abandoned_reaches(abandoned + 1));
  EXPECT_LT(server_->metric("orchard_generated_tokens_total") - generated, 2000);
}

// An answer that is not streamed waits for its job in a deferred body that probes the client;
// one that has left cancels the job, and the body ends without its end (the transport cuts the
// connection).
TEST_F(OpenAIHandlerTest, AClientThatLeavesBeforeAnAnswerThatIsNotStreamedCancelsIt) {
  const int64_t abandoned = server_->metric("orchard_abandoned_requests_total");
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  RecordingConnection connection;
  connection.present = false;
  const json request = chat_body({{"max_tokens", 100000}, {"seed", 11},
                                  {"messages", json::array({{{"role", "user"}, {"content", "Go on forever."}}})}});
  const Answer a = server_->request("POST", "/v1/chat/completions", request.dump(), connection);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "application/json");
  ASSERT_TRUE(a.deferred) << "the job ended before its first wait";
  EXPECT_FALSE(a.ended);
  EXPECT_TRUE(a.body.empty());
  EXPECT_GT(connection.probes, 0);
  ASSERT_TRUE(server_->abandoned_reaches(abandoned + 1));
  EXPECT_LT(server_->metric("orchard_generated_tokens_total") - generated, 2000);
}

TEST_F(OpenAIHandlerTest, ModelsHealthAndMetrics) {
  Answer a = server_->get("/v1/models");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "application/json");
  json body = a.parsed();
  EXPECT_EQ(body["object"], "list");
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["id"], "tiny-qwen2-chat-q8_0.gguf");
  EXPECT_EQ(body["data"][0]["object"], "model");
  EXPECT_EQ(body["data"][0]["owned_by"], "orchard");

  a = server_->get("/health");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.parsed(), json({{"status", "ok"}}));
  RecordingConnection connection;
  a = server_->request("HEAD", "/health", "", connection);  // answered as GET; the transport drops the body
  EXPECT_EQ(a.status, 200);

  // A job of an earlier test may still be ending (its answer is sent before the engine counts it
  // out), so wait until the gauges are still before comparing the page with a second rendering.
  ASSERT_TRUE(server_->abandoned_reaches(0));
  a = server_->get("/metrics");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/plain; version=0.0.4");
  EXPECT_EQ(a.body, server_->metrics.render());
  EXPECT_NE(a.body.find("orchard_generated_tokens_total "), std::string::npos);
  EXPECT_NE(a.body.find("orchard_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), std::string::npos);
}

// Without a chat template the chat route refuses and points to completions.
TEST(OpenAIHandler, AModelWithoutAChatTemplateRefusesChat) {
  TestServer server(test::source_path("models/stories260K/stories260K.gguf"), 256);
  expect_error(server.post("/v1/chat/completions", chat_body()), 400, "messages", "no_chat_template", "use /v1/completions");
  const Answer a = server.post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"temperature", 0}});
  EXPECT_EQ(a.status, 200) << a.body;
}

TEST(OpenAIHandler, ErrorResponsesAreOpenAIErrorObjects) {
  const ApiResponse r = error_response(RequestError(400, "bad", "temperature", "invalid_value"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_FALSE(r.write_body);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"error":{"message":"bad","type":"invalid_request_error","param":"temperature","code":"invalid_value"}})"));
  EXPECT_EQ(json::parse(error_response(500, "boom").body)["error"]["type"], "server_error");
  EXPECT_TRUE(json::parse(error_response(404, "none").body)["error"]["param"].is_null());
}

// The transport's body reader, fed in-process (no socket): the 413s of integration_test.sh and
// network_test.py (a body beyond the limit however it is framed), 415 for multipart and 400 for a
// body that could not be read, each an error object.
TEST(OpenAIHandler, TheHttpTransportsBodyLimits) {
  const size_t max = 4u << 20;
  auto reader_of = [](size_t bytes, bool ok) {
    return httplib::ContentReader(
        [bytes, ok](httplib::ContentReceiver receive) {
          const std::string block(64 << 10, 'a');
          for (size_t sent = 0; sent < bytes; sent += block.size())
            if (!receive(block.data(), std::min(block.size(), bytes - sent))) return false;
          return ok;
        },
        [](httplib::MultipartContentHeader, httplib::ContentReceiver) { return false; });
  };
  auto refusal = [&](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    try {
      read_body(req, res, reader, max);
    } catch (const RequestError& e) {
      return error_response(e);
    }
    return ApiResponse{};
  };
  httplib::Request req;
  httplib::Response res;
  EXPECT_EQ(read_body(req, res, reader_of(max, true), max).size(), max);

  ApiResponse r = refusal(req, res, reader_of(5000000, true));
  RecordingConnection connection;
  expect_error(run(r, connection), 413, nullptr, nullptr, "larger than 4194304 bytes");
  // httplib's own check of a Content-Length over the limit.
  httplib::Response too_long;
  too_long.status = 413;
  expect_error(run(refusal(req, too_long, reader_of(0, false)), connection), 413, nullptr, nullptr, "larger than");
  expect_error(run(refusal(req, res, reader_of(100, false)), connection), 400, nullptr, nullptr, "could not be read");
  httplib::Request multipart;
  multipart.set_header("Content-Type", "multipart/form-data; boundary=x");
  expect_error(run(refusal(multipart, res, reader_of(100, true)), connection), 415, nullptr, nullptr, "multipart");
}

// openai_protocol directly: what the parsers make of valid requests.
TEST(OpenAIProtocol, ChatRequestDefaultsAndNormalization) {
  const ChatRequest r = parse_chat_request(json::parse(R"({
    "messages": [
      {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
      {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
      {"role": "tool", "tool_call_id": "c", "content": "ok"}],
    "stop": "END", "max_tokens": 9, "max_completion_tokens": 7, "top_p": 0})"));
  EXPECT_EQ(r.messages[0]["content"], "Be brief.");  // parts joined: templates expect text
  EXPECT_EQ(r.messages[2]["content"], "");            // null content becomes empty text
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["arguments"], json({{"a", 1}}));  // a mapping for the template
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r.max_tokens, 7);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);  // OpenAI's defaults
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_GT(r.sampling.top_p, 0.0f);  // 0 means the most likely token only, not "off"
  EXPECT_LT(r.sampling.top_p, 1e-3f);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.tool_choice, ToolChoiceMode::auto_);
  EXPECT_EQ(r.response_format, "text");

  // Unseeded requests differ from each other; a seed is kept.
  const json plain = {{"messages", json::array({kUser})}};
  EXPECT_NE(parse_chat_request(plain).sampling.seed, parse_chat_request(plain).sampling.seed);
  json seeded = plain;
  seeded["seed"] = -1;
  EXPECT_EQ(parse_chat_request(seeded).sampling.seed, std::numeric_limits<uint64_t>::max());
  // null is absent.
  seeded["temperature"] = nullptr;
  EXPECT_FLOAT_EQ(parse_chat_request(seeded).sampling.temperature, 1.0f);
}

TEST(OpenAIProtocol, CompletionRequestDefaults) {
  const CompletionRequest r = parse_completion_request(json::parse(R"({"prompt": ["Once"], "echo": true, "logprobs": 2})"));
  EXPECT_EQ(r.prompt, "Once");
  EXPECT_EQ(r.max_tokens, 16);  // the completions API's default
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_EQ(parse_completion_request(json{{"prompt", "x"}}).logprobs, -1);
}

TEST(OpenAIProtocol, BodiesThatAreNotAnObjectAreRefused) {
  for (const char* body : {"", "[]", "\"text\"", "{", "{} {}", "nul"}) {
    SCOPED_TRACE(body);
    try {
      parse_body(body);
      ADD_FAILURE() << "accepted";
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status, 400);
      EXPECT_EQ(e.code, "invalid_json");
    }
  }
  EXPECT_TRUE(parse_body(R"({"a": [1, {"b": null}]})").is_object());
}

// ChatService turns requests into jobs: the budget is what the context leaves, constraints come
// from response_format and forced tools, tool_choice "none" turns tools off.
TEST_F(OpenAIHandlerTest, ChatServicePreparesJobs) {
  ChatService& service = server_->service;
  ChatRequest r = parse_chat_request(chat_body({{"max_tokens", 1 << 30}}));
  PreparedJob job = service.prepare(r);
  ASSERT_GT(job.prompt.size(), 0u);
  EXPECT_EQ(job.options.max_tokens, 4096 - static_cast<int64_t>(job.prompt.size()));
  EXPECT_FALSE(job.options.constraint);
  EXPECT_FALSE(job.tools_enabled);
  EXPECT_EQ(job.options.top_logprobs, -1);

  r = parse_chat_request(chat_body({{"response_format", {{"type", "json_object"}}}, {"logprobs", true}, {"top_logprobs", 3}}));
  job = service.prepare(r);
  EXPECT_TRUE(job.options.constraint);
  EXPECT_EQ(job.options.max_tokens, 4);
  EXPECT_EQ(job.options.top_logprobs, 3);

  const json tool = {{"type", "function"}, {"function", {{"name", "f"}}}};
  job = service.prepare(parse_chat_request(chat_body({{"tools", json::array({tool})}})));
  EXPECT_TRUE(job.tools_enabled);
  EXPECT_FALSE(job.options.constraint);  // auto: the model may answer in text
  job = service.prepare(parse_chat_request(chat_body({{"tools", json::array({tool})}, {"tool_choice", "none"}})));
  EXPECT_FALSE(job.tools_enabled);
  job = service.prepare(parse_chat_request(chat_body({{"tools", json::array({tool})}, {"tool_choice", "required"}})));
  EXPECT_TRUE(job.tools_enabled);
  EXPECT_TRUE(job.options.constraint);

  EXPECT_EQ(finish_reason_name(finish_reason_of(StopReason::max_tokens)), "length");
  EXPECT_EQ(finish_reason_name(finish_reason_of(StopReason::context_full)), "length");
  EXPECT_EQ(finish_reason_name(finish_reason_of(StopReason::end_of_sequence)), "stop");
  EXPECT_EQ(finish_reason_name(finish_reason_of(StopReason::stop_string)), "stop");
}

// ---- issue 21: API keys, CORS, model lookups and aliases, several prompts, cut tool calls ----

// A handler with other options over the suite's engine and service.
struct OtherHandler {
  OtherHandler(TestServer& server, HandlerOptions options, ChatService* service = nullptr)
      : handler(service ? *service : server.service, server.engine, server.waker, server.metrics, std::move(options)) {}
  Answer request(const std::string& method, const std::string& path, const std::string& body,
                 std::vector<std::pair<std::string, std::string>> headers = {}) const {
    RecordingConnection connection;
    return run(handler.handle({.method = method, .path = path, .headers = std::move(headers), .body = body, .client_left = {}}),
               connection);
  }
  OpenAIHandler handler;
};

class ApiSurfaceTest : public OpenAIHandlerTest {};

std::pair<std::string, std::string> bearer(const std::string& key) { return {"Authorization", "Bearer " + key}; }

TEST_F(ApiSurfaceTest, ApiKeysGuardEveryApiRouteButHealth) {
  const OtherHandler guarded(*server_, {.api_keys = {"first-key", "second-key"}});
  const std::string chat = chat_body().dump();
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  // Without a key, with a wrong one, with another scheme: 401, an error object, WWW-Authenticate.
  for (const auto& headers : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {}, {bearer("first-keyx")}, {bearer("first-ke")}, {bearer("")}, {{"Authorization", "Basic first-key"}},
           {{"Authorization", "first-key"}}, {{"X-Api-Key", "first-key"}}}) {
    SCOPED_TRACE(headers.empty() ? "no header" : headers[0].first + ": " + headers[0].second);
    for (const auto& [method, path, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"POST", "/v1/chat/completions", chat}, {"POST", "/chat/completions", chat},
             {"POST", "/v1/completions", R"({"prompt": "Once", "max_tokens": 2})"}, {"GET", "/v1/models", ""},
             {"GET", "/models", ""}, {"GET", "/v1/models/tiny-qwen2-chat-q8_0.gguf", ""}, {"GET", "/metrics", ""},
             {"GET", "/v1/nothing", ""}, {"POST", "/v1/adapters", "{}"}, {"DELETE", "/v1/adapters/x", ""}, {"GET", "/api/tags", ""},
             {"POST", "/anything", "{}"}}) {
      SCOPED_TRACE(method + " " + path);
      const Answer a = guarded.request(method, path, body, headers);
      const bool sent = !headers.empty() && headers[0].first == "Authorization";
      expect_error(a, 401, nullptr, "invalid_api_key", sent ? "not valid" : "needs an API key");
      EXPECT_EQ(a.header("WWW-Authenticate"), "Bearer");
      EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "(none)");  // no CORS unless asked
    }
  }
  EXPECT_EQ(server_->metric("orchard_generated_tokens_total"), generated);  // nothing ran
  // Either key, the scheme in any case; /health and pages that are no API call need none.
  EXPECT_EQ(guarded.request("POST", "/v1/chat/completions", chat, {bearer("first-key")}).status, 200);
  EXPECT_EQ(guarded.request("POST", "/v1/chat/completions", chat, {{"authorization", "bearer second-key"}}).status, 200);
  EXPECT_EQ(guarded.request("GET", "/v1/models", "", {{"AUTHORIZATION", "BEARER  second-key "}}).status, 200);
  EXPECT_EQ(guarded.request("GET", "/health", "").status, 200);
  EXPECT_EQ(guarded.request("HEAD", "/health", "").status, 200);
  EXPECT_EQ(guarded.request("GET", "/nothing-here", "").status, 404);
  // The admin listener's requests (loopback, the operator's) need none.
  RecordingConnection connection;
  EXPECT_EQ(run(guarded.handler.handle({.method = "GET", .path = "/metrics", .admin = true}), connection).status, 200);
  // Without keys nothing is asked.
  EXPECT_EQ(server_->get("/v1/models").status, 200);
}

TEST_F(ApiSurfaceTest, CorsAnswersPreflightsAndMarksAnswersForAllowedOrigins) {
  const OtherHandler cors(*server_, {.api_keys = {"k"}, .cors_origins = {"https://app.example", "http://localhost:3000"}});
  // The preflight: no key (browsers send none), 204, the methods and the headers asked for.
  Answer a = cors.request("OPTIONS", "/v1/chat/completions", "",
                          {{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"},
                           {"Access-Control-Request-Headers", "authorization, content-type, x-stainless-os"}});
  EXPECT_EQ(a.status, 204);
  EXPECT_TRUE(a.body.empty());
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_EQ(a.header("Vary"), "Origin");
  EXPECT_NE(a.header("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  EXPECT_NE(a.header("Access-Control-Allow-Methods").find("GET"), std::string::npos);
  EXPECT_EQ(a.header("Access-Control-Allow-Headers"), "authorization, content-type, x-stainless-os");
  EXPECT_EQ(a.header("Access-Control-Max-Age"), "600");
  // Headers asked for in a shape that is no list of names: the default list.
  a = cors.request("OPTIONS", "/v1/models", "", {{"Origin", "http://localhost:3000"}, {"Access-Control-Request-Headers", "a\r\nb: c"}});
  EXPECT_EQ(a.status, 204);
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "http://localhost:3000");
  EXPECT_EQ(a.header("Access-Control-Allow-Headers"), "authorization, content-type");
  // Another origin: answered, but not allowed (the browser then refuses the page the answer).
  a = cors.request("OPTIONS", "/v1/models", "", {{"Origin", "https://evil.example"}});
  EXPECT_EQ(a.status, 204);
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "(none)");
  // Answers, errors included, carry the origin when it is allowed.
  a = cors.request("GET", "/v1/models", "", {{"Origin", "https://app.example"}, bearer("k")});
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_EQ(a.header("Vary"), "Origin");
  a = cors.request("GET", "/v1/models", "", {{"Origin", "https://app.example"}});
  EXPECT_EQ(a.status, 401);
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "https://app.example");
  a = cors.request("GET", "/v1/models", "", {{"Origin", "https://app.example.evil"}, bearer("k")});
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "(none)");
  // "*": any origin, echoed.
  const OtherHandler any(*server_, {.cors_origins = {"*"}});
  a = any.request("POST", "/v1/completions", R"({"prompt": "Once", "max_tokens": 2})", {{"origin", "https://x.example"}});
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "https://x.example");
  // Without --cors-origin: OPTIONS is a 404 as before, and no answer carries a CORS header.
  RecordingConnection connection;
  a = server_->request("OPTIONS", "/v1/chat/completions", "", connection);
  expect_error(a, 404, nullptr, nullptr, "no route OPTIONS /v1/chat/completions");
  const OtherHandler plain(*server_, {});
  a = plain.request("GET", "/v1/models", "", {{"Origin", "https://app.example"}});
  EXPECT_EQ(a.header("Access-Control-Allow-Origin"), "(none)");
  EXPECT_EQ(a.header("Vary"), "(none)");
}

TEST_F(ApiSurfaceTest, ModelsByIdAndPathsWithoutV1) {
  Answer a = server_->get("/v1/models/tiny-qwen2-chat-q8_0.gguf");
  ASSERT_EQ(a.status, 200) << a.body;
  json m = a.parsed();
  EXPECT_EQ(m["id"], "tiny-qwen2-chat-q8_0.gguf");
  EXPECT_EQ(m["object"], "model");
  EXPECT_EQ(m["owned_by"], "orchard");
  EXPECT_TRUE(m["created"].is_number_integer());
  expect_error(server_->get("/v1/models/gpt-4o"), 404, "model", "model_not_found", "'gpt-4o' does not exist");
  expect_error(server_->get("/models/a/b"), 404, "model", "model_not_found", "'a/b' does not exist");
  // Every OpenAI path without "/v1".
  EXPECT_EQ(server_->get("/models").parsed()["data"][0]["id"], "tiny-qwen2-chat-q8_0.gguf");
  EXPECT_EQ(server_->get("/models/tiny-qwen2-chat-q8_0.gguf").parsed()["id"], "tiny-qwen2-chat-q8_0.gguf");
  const json greedy = chat_body({{"temperature", 0}});
  a = server_->post("/chat/completions", greedy);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.parsed()["choices"][0]["message"]["content"],
            server_->post("/v1/chat/completions", greedy).parsed()["choices"][0]["message"]["content"]);
  a = server_->post("/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.parsed()["object"], "text_completion");
  expect_error(server_->get("/nothing"), 404, nullptr, nullptr, "no route GET /nothing");
  // The mapping: a path is "/v1" + itself exactly when that is a route.
  EXPECT_EQ(OpenAIHandler::api_path("/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(OpenAIHandler::api_path("/models/x"), "/v1/models/x");
  EXPECT_EQ(OpenAIHandler::api_path("/models/"), "/models/");  // a route that takes a name needs one
  EXPECT_EQ(OpenAIHandler::api_path("/v1/completions"), "/v1/completions");
  EXPECT_EQ(OpenAIHandler::api_path("/health"), "/health");
  EXPECT_EQ(OpenAIHandler::api_path("/"), "/");
  EXPECT_EQ(OpenAIHandler::api_path("/nothing"), "/nothing");
  for (const OpenAIHandler::Route& r : OpenAIHandler::routes())
    if (std::string_view(r.path).starts_with("/v1/") && !r.takes_name) {
      EXPECT_EQ(OpenAIHandler::api_path(std::string(r.path).substr(3)), r.path);
    }
}

// --alias: the id the base goes by everywhere (serve() gives it to the service and the registry).
TEST_F(ApiSurfaceTest, AnAliasIsTheBaseModelsId) {
  ChatService aliased(server_->tokenizer, "my-model", server_->engine.n_ctx());
  const OtherHandler h(*server_, {}, &aliased);
  json list = h.request("GET", "/v1/models", "").parsed();
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "my-model");
  EXPECT_EQ(h.request("GET", "/v1/models/my-model", "").status, 200);
  EXPECT_EQ(h.request("GET", "/v1/models/tiny-qwen2-chat-q8_0.gguf", "").status, 404);
  Answer a = h.request("POST", "/v1/chat/completions", chat_body({{"model", "my-model"}}).dump());
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.parsed()["model"], "my-model");
  a = h.request("POST", "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 2}, {"model", "my-model"}}.dump());
  EXPECT_EQ(a.parsed()["model"], "my-model");
}

TEST_F(ApiSurfaceTest, SystemFingerprintNamesTheVersionAndKernels) {
  const std::string fast = server_->post("/v1/chat/completions", chat_body()).parsed()["system_fingerprint"];
  EXPECT_EQ(fast.rfind("orchard-0.1.0-", 0), 0u) << fast;
  EXPECT_NE(fast, "orchard-0.1.0-reference");
  EXPECT_EQ(server_->post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).parsed()["system_fingerprint"], fast);
  const OtherHandler reference(*server_, {.kernels = KernelChoice::reference});
  EXPECT_EQ(reference.request("POST", "/v1/completions", R"({"prompt": "Once", "max_tokens": 2})").parsed()["system_fingerprint"],
            "orchard-0.1.0-reference");
  const Answer s = server_->post("/v1/chat/completions", chat_body({{"stream", true}}));
  for (const std::string& event : events_of(s.body))
    if (event != "[DONE]") {
      EXPECT_EQ(json::parse(event)["system_fingerprint"], fast);
    }
}

// One choice per prompt, each what its prompt alone gets (greedy), usage summed; prompts as token
// ids are the same prompts.
TEST_F(ApiSurfaceTest, CompletionsOfSeveralPromptsAndTokenIds) {
  const std::vector<std::string> prompts = {"Once", "Hello there", "The cat"};
  auto alone = [&](const json& prompt) {
    return server_->post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 5}, {"temperature", 0}}).parsed();
  };
  std::vector<json> singles;
  for (const std::string& p : prompts) singles.push_back(alone(p));
  Answer a = server_->post("/v1/completions", {{"prompt", prompts}, {"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(a.status, 200) << a.body;
  json body = a.parsed();
  ASSERT_EQ(body["choices"].size(), 3u);
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["text"], singles[i]["choices"][0]["text"]) << i;
    EXPECT_EQ(body["choices"][i]["finish_reason"], "length");
    prompt_tokens += singles[i]["usage"]["prompt_tokens"].get<int64_t>();
  }
  EXPECT_EQ(body["usage"]["completion_tokens"], 15);
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(body["usage"]["total_tokens"], prompt_tokens + 15);

  // Token ids: the tokenizer's ids of the texts (the tiny model adds no BOS).
  std::vector<json> ids;
  for (const std::string& p : prompts) ids.push_back(server_->tokenizer->encode(p, false));
  json one = alone(ids[1]);
  EXPECT_EQ(one["choices"][0]["text"], singles[1]["choices"][0]["text"]);
  EXPECT_EQ(one["usage"]["prompt_tokens"], singles[1]["usage"]["prompt_tokens"]);
  body = server_->post("/v1/completions", {{"prompt", ids}, {"max_tokens", 5}, {"temperature", 0}}).parsed();
  ASSERT_EQ(body["choices"].size(), 3u);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(body["choices"][i]["text"], singles[i]["choices"][0]["text"]);
  // echo repeats a token prompt as its text.
  body = server_->post("/v1/completions", {{"prompt", ids[2]}, {"max_tokens", 2}, {"echo", true}, {"temperature", 0}}).parsed();
  EXPECT_EQ(body["choices"][0]["text"].get<std::string>().rfind("The cat", 0), 0u) << body;

  // Streamed: each chunk carries its choice's index; each choice's text is the answer's; usage summed.
  a = server_->post("/v1/completions", {{"prompt", prompts}, {"max_tokens", 5}, {"temperature", 0}, {"stream", true},
                                        {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(a.status, 200);
  std::vector<std::string> texts(3);
  std::vector<int> finishes(3, 0);
  json usage;
  const std::vector<std::string> events = events_of(a.body);
  ASSERT_EQ(events.back(), "[DONE]");
  for (size_t e = 0; e + 1 < events.size(); ++e) {
    const json chunk = json::parse(events[e]);
    if (chunk.contains("usage")) usage = chunk["usage"];
    for (const json& c : chunk["choices"]) {
      const size_t i = c["index"];
      ASSERT_LT(i, 3u);
      texts[i] += c["text"].get<std::string>();
      if (!c["finish_reason"].is_null()) finishes[i]++;
    }
  }
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(texts[i], singles[i]["choices"][0]["text"]) << i;
    EXPECT_EQ(finishes[i], 1) << i;
  }
  EXPECT_EQ(usage["completion_tokens"], 15);
  EXPECT_EQ(usage["prompt_tokens"], prompt_tokens);
}

// A forced call cut off by max_tokens: "length", no markup in content, no tool_calls.
TEST_F(ApiSurfaceTest, AToolCallCutOffByMaxTokensLeavesNoMarkup) {
  const json weather = {{"type", "function"},
                        {"function", {{"name", "get_weather"},
                                      {"parameters", {{"type", "object"},
                                                      {"properties", {{"city", {{"type", "string"}}}}},
                                                      {"required", json::array({"city"})}}}}}};
  const json cut = chat_body({{"tools", json::array({weather})}, {"tool_choice", "required"}, {"max_tokens", 6}, {"seed", 3}});
  Answer a = server_->post("/v1/chat/completions", cut);
  ASSERT_EQ(a.status, 200) << a.body;
  const json body = a.parsed();
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "length");
  EXPECT_TRUE(choice["message"]["content"].is_null()) << choice;
  EXPECT_FALSE(choice["message"].contains("tool_calls")) << choice;
  EXPECT_EQ(a.parsed()["usage"]["completion_tokens"], 6);
  json streamed = cut;
  streamed["stream"] = true;
  a = server_->post("/v1/chat/completions", streamed);
  std::string content, finish;
  bool calls = false;
  for (const std::string& event : events_of(a.body)) {
    if (event == "[DONE]") continue;
    const json chunk = json::parse(event);
    for (const json& c : chunk["choices"]) {
      if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
      calls |= c["delta"].contains("tool_calls");
      if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
    }
  }
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(content, "");
  EXPECT_FALSE(calls);
  // With room, the same request completes its call.
  json whole = cut;
  whole["max_tokens"] = 80;
  EXPECT_EQ(server_->post("/v1/chat/completions", whole).parsed()["choices"][0]["finish_reason"], "tool_calls");
}

TEST(ToolReply, ACallLeftOpenByACutIsDropped) {
  ToolReply r = parse_tool_reply("Let me look.\n<tool_call>\n{\"name\": \"f\", \"argu", true);
  EXPECT_TRUE(r.dropped);
  EXPECT_EQ(r.content, "Let me look.");
  EXPECT_TRUE(r.calls.empty());
  // A closed call before the cut one is kept.
  r = parse_tool_reply("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"na", true);
  EXPECT_TRUE(r.dropped);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "f");
  EXPECT_EQ(r.content, "");
  // A cut after a closed call drops nothing.
  r = parse_tool_reply("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call> and th", true);
  EXPECT_FALSE(r.dropped);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments_json, "{\"a\":1}");
  // Not cut: as parse_tool_calls (the open block's text stays).
  r = parse_tool_reply("Hi <tool_call>\n{\"na", false);
  EXPECT_FALSE(r.dropped);
  EXPECT_EQ(r.content, "Hi <tool_call>\n{\"na");
}

// A model without a chat template chats once given one (--chat-template chatml).
TEST(OpenAIHandler, AModelWithoutAChatTemplateChatsWithABuiltInOne) {
  TestServer server(test::source_path("models/stories260K/stories260K.gguf"), 256, builtin_chat_template("chatml"));
  const Answer a = server.post("/v1/chat/completions", chat_body({{"temperature", 0}}));
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.parsed()["usage"]["completion_tokens"], 4);
  // The prompt is the chatml text of the conversation.
  const ChatRequest r = parse_chat_request(chat_body());
  EXPECT_EQ(server.service.prepare(r).prompt, server.tokenizer->encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", false));
  // A given template must parse.
  EXPECT_THROW(ChatService(server.tokenizer, "m", 256, "{% if %}"), Error);
}

}  // namespace
}  // namespace orchard::server
