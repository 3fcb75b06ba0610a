// POST /v1/responses in-process over the tiny chat model: the request's translation field by field,
// every malformed input as a 400 naming its field, and answers checked against an oracle that is
// not this API: the same conversation through /v1/chat/completions, greedy, gives the same text,
// the same prompt tokens and the same tool call.
#include "server/responses_api.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "handler_fixture.h"
#include "server/adapter_registry.h"

namespace orchard::server {
namespace {

using namespace test_fixture;

class ResponsesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new TestServer(test::shared_path(kTinyChat), 4096); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static TestServer* server_;
};
TestServer* ResponsesTest::server_ = nullptr;

const json kWeather = {{"type", "function"},
                       {"name", "get_weather"},
                       {"description", "Current weather in a city"},
                       {"parameters",
                        {{"type", "object"},
                         {"properties", {{"city", {{"type", "string"}, {"maxLength", 16}}}, {"days", {{"type", "integer"}, {"minimum", 1}, {"maximum", 7}}}}},
                         {"required", json::array({"city", "days"})},
                         {"additionalProperties", false}}},
                       {"strict", true}};

// The arguments the weather tool allows, checked apart from the server's schema compiler.
void expect_weather_arguments(const std::string& text) {
  const json args = json::parse(text, nullptr, false);
  ASSERT_TRUE(args.is_object()) << text;
  EXPECT_EQ(args.size(), 2u) << text;
  ASSERT_TRUE(args.contains("city") && args["city"].is_string()) << text;
  ASSERT_TRUE(args.contains("days") && args["days"].is_number_integer()) << text;
  EXPECT_GE(args["days"].get<int>(), 1);
  EXPECT_LE(args["days"].get<int>(), 7);
}

// The events of a Responses stream: "event: TYPE\ndata: JSON\n\n", the data's type the event's.
std::vector<json> events_of(const std::string& sent) {
  // Comment lines (":", the presence probes written while text is held back) are dropped first,
  // as an SSE reader does.
  std::string text;
  for (size_t pos = 0; pos < sent.size();) {
    size_t end = sent.find('\n', pos);
    end = end == std::string::npos ? sent.size() : end + 1;
    if (sent[pos] != ':') text.append(sent, pos, end - pos);
    pos = end;
  }
  std::vector<json> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) {
      ADD_FAILURE() << "an event without its blank line: " << text.substr(pos, 200);
      break;
    }
    const std::string event = text.substr(pos, end - pos);
    pos = end + 2;
    const size_t newline = event.find('\n');
    if (event.rfind("event: ", 0) != 0 || newline == std::string::npos || event.compare(newline + 1, 6, "data: ") != 0) {
      ADD_FAILURE() << "not an event: " << event.substr(0, 200);
      continue;
    }
    const std::string type = event.substr(7, newline - 7);
    json data = json::parse(event.substr(newline + 7), nullptr, false);
    if (!data.is_object()) {
      ADD_FAILURE() << "data is not a JSON object: " << event.substr(0, 200);
      continue;
    }
    EXPECT_EQ(data["type"], type);
    out.push_back(std::move(data));
  }
  return out;
}

std::vector<std::string> types_of(const std::vector<json>& events) {
  std::vector<std::string> out;
  for (const json& e : events) out.push_back(e["type"]);
  return out;
}

json greedy(json body) {
  body["temperature"] = 0;
  return body;
}

// The text of a chat completion for the same conversation (the oracle).
json chat_answer(const TestServer& s, const json& messages, int max_tokens, json extra = json::object()) {
  json body = {{"messages", messages}, {"max_tokens", max_tokens}, {"temperature", 0}};
  for (auto& [k, v] : extra.items()) body[k] = v;
  const Received a = s.post("/v1/chat/completions", body);
  EXPECT_EQ(a.status, 200) << a.body;
  return a.parsed();
}

std::string output_text(const json& response) {
  std::string text;
  for (const json& item : response["output"])
    if (item["type"] == "message")
      for (const json& part : item["content"]) text += part["text"].get<std::string>();
  return text;
}

TEST(ResponsesRequestTest, EveryFieldMapsOntoTheChatRequest) {
  const json body = {{"model", "m"},
                     {"instructions", "Be brief."},
                     {"input", json::array({{{"role", "user"}, {"content", "Hi"}},
                                            {{"type", "message"}, {"role", "assistant"},
                                             {"content", json::array({{{"type", "output_text"}, {"text", "Let me "}, {"annotations", json::array()}},
                                                                      {{"type", "output_text"}, {"text", "look."}}})}},
                                            {{"type", "function_call"}, {"call_id", "call_1"}, {"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\",\"days\":2}"}},
                                            {{"type", "function_call_output"}, {"call_id", "call_1"}, {"output", "sunny"}},
                                            {{"role", "developer"}, {"content", json::array({{{"type", "input_text"}, {"text", "a"}}, {{"type", "input_text"}, {"text", "b"}}})}}})},
                     {"max_output_tokens", 33},
                     {"temperature", 0.5},
                     {"top_p", 0.25},
                     {"tools", json::array({kWeather})},
                     {"tool_choice", {{"type", "function"}, {"name", "get_weather"}}},
                     {"text", {{"format", {{"type", "json_schema"}, {"name", "x"}, {"schema", {{"type", "integer"}}}, {"strict", true}}}}},
                     {"stream", true},
                     {"store", false},
                     {"metadata", {{"k", "v"}}}};
  const ResponsesRequest r = parse_responses_request(body);
  const ChatRequest& c = r.chat;
  EXPECT_EQ(c.model, "m");
  const json expected_messages = json::array(
      {{{"role", "system"}, {"content", "Be brief."}},
       {{"role", "user"}, {"content", "Hi"}},
       {{"role", "assistant"}, {"content", "Let me look."},
        {"tool_calls", json::array({{{"id", "call_1"}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}, {"days", 2}}}}}}})}},
       {{"role", "tool"}, {"content", "sunny"}, {"tool_call_id", "call_1"}, {"name", "get_weather"}},
       {{"role", "developer"}, {"content", "ab"}}});
  EXPECT_EQ(c.messages, expected_messages) << c.messages.dump(1);
  EXPECT_EQ(c.max_tokens, 33);
  EXPECT_FLOAT_EQ(c.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(c.sampling.top_p, 0.25f);
  ASSERT_EQ(c.tools.size(), 1u);
  EXPECT_EQ(c.tools[0], (json{{"type", "function"},
                              {"function", {{"name", "get_weather"}, {"description", "Current weather in a city"}, {"parameters", kWeather["parameters"]}}}}));
  EXPECT_EQ(c.tool_choice, ToolChoiceMode::function);
  EXPECT_EQ(c.forced_function, "get_weather");
  EXPECT_EQ(c.response_format, "json_schema");
  EXPECT_EQ(c.response_schema, (json{{"type", "integer"}}));
  EXPECT_TRUE(c.stream);
  // Echoed as given.
  EXPECT_EQ(r.instructions, "Be brief.");
  EXPECT_EQ(r.tools, json::array({kWeather}));
  EXPECT_EQ(r.tool_choice, (json{{"type", "function"}, {"name", "get_weather"}}));
  EXPECT_EQ(r.text_format["name"], "x");
  EXPECT_EQ(r.metadata, (json{{"k", "v"}}));
  EXPECT_EQ(r.max_output_tokens, 33);

  // A string input is one user message; the rest take their defaults.
  const ResponsesRequest plain = parse_responses_request({{"input", "Hello"}});
  EXPECT_EQ(plain.chat.messages, json::array({{{"role", "user"}, {"content", "Hello"}}}));
  EXPECT_FALSE(plain.chat.max_tokens.has_value());
  EXPECT_FLOAT_EQ(plain.chat.sampling.temperature, 1.0f);
  EXPECT_TRUE(plain.chat.tools.is_null());
  EXPECT_EQ(plain.chat.response_format, "text");
  EXPECT_FALSE(plain.chat.stream);
  EXPECT_EQ(plain.tool_choice, "auto");
  EXPECT_EQ(plain.text_format, (json{{"type", "text"}}));

  for (const char* mode : {"auto", "none", "required"}) {
    const ResponsesRequest t = parse_responses_request({{"input", "x"}, {"tools", json::array({kWeather})}, {"tool_choice", mode}});
    EXPECT_EQ(t.chat.tool_choice, std::string(mode) == "auto" ? ToolChoiceMode::auto_
                                  : std::string(mode) == "none" ? ToolChoiceMode::none
                                                                : ToolChoiceMode::required);
  }
  EXPECT_EQ(parse_responses_request({{"input", "x"}, {"text", {{"format", {{"type", "json_object"}}}}}}).chat.response_format, "json_object");
  // Parallel calls: consecutive function_call items are one assistant message.
  const ResponsesRequest two = parse_responses_request(
      {{"input", json::array({{{"role", "user"}, {"content", "x"}},
                              {{"type", "function_call"}, {"call_id", "a"}, {"name", "f"}, {"arguments", "{}"}},
                              {{"type", "function_call"}, {"call_id", "b"}, {"name", "g"}, {"arguments", "{}"}}})}});
  ASSERT_EQ(two.chat.messages.size(), 2u);
  EXPECT_EQ(two.chat.messages[1]["tool_calls"].size(), 2u);
  EXPECT_EQ(two.chat.messages[1]["content"], "");
}

struct ErrorCase {
  const char* name;
  json body;
  const char* param;
  const char* code;
  std::string message;
};

TEST_F(ResponsesTest, MalformedInputsAre400sNamingTheField) {
  const json user = {{"role", "user"}, {"content", "Hi"}};
  auto with = [&](json fields) {
    json body = {{"input", "Hi"}, {"max_output_tokens", 4}};
    for (auto& [k, v] : fields.items()) body[k] = v;
    return body;
  };
  const std::vector<ErrorCase> cases = {
      {"previous_response_id", with({{"previous_response_id", "resp_1"}}), "previous_response_id", "unsupported_parameter", "stores no responses"},
      {"store true", with({{"store", true}}), "store", "unsupported_parameter", "stores no responses"},
      {"conversation", with({{"conversation", "conv_1"}}), "conversation", "unsupported_parameter", "stores no conversations"},
      {"background", with({{"background", true}}), "background", "unsupported_parameter", "stores no responses"},
      {"no input", {{"max_output_tokens", 4}}, "input", "invalid_value", "'input' is required"},
      {"input a number", with({{"input", 3}}), "input", "invalid_value", "a string or a non-empty array"},
      {"input empty", with({{"input", json::array()}}), "input", "invalid_value", "non-empty array"},
      {"an item not an object", with({{"input", json::array({user, 1})}}), "input[1]", "invalid_value", "input[1] must be an item object"},
      {"a reasoning item", with({{"input", json::array({user, {{"type", "reasoning"}, {"summary", json::array()}}})}}), "input[1].type",
       "unsupported_value", "input[1] has type 'reasoning'"},
      {"an item reference", with({{"input", json::array({{{"type", "item_reference"}, {"id", "msg_1"}}})}}), "input[0]", "unsupported_value",
       "stores no items"},
      {"an item type not a string", with({{"input", json::array({{{"type", 5}, {"role", "user"}, {"content", "x"}}})}}), "input[0].type",
       "invalid_value", "must be a string"},
      {"an image part", with({{"input", json::array({{{"role", "user"}, {"content", json::array({{{"type", "input_text"}, {"text", "a"}}, {{"type", "input_image"}, {"image_url", "x"}}})}}})}}),
       "input[0].content[1]", "unsupported_value", "'input_image' part"},
      {"a part without text", with({{"input", json::array({{{"role", "user"}, {"content", json::array({{{"type", "input_text"}}})}}})}}),
       "input[0].content[0].text", "invalid_value", "must be a string"},
      {"a bad role", with({{"input", json::array({{{"role", "robot"}, {"content", "x"}}})}}), "input[0].role", "invalid_value", "'robot'"},
      {"a message without content", with({{"input", json::array({{{"type", "message"}, {"role", "user"}}})}}), "input[0].content", "invalid_value", "required"},
      {"a function call without call_id", with({{"input", json::array({user, {{"type", "function_call"}, {"name", "f"}, {"arguments", "{}"}}})}}),
       "input[1].call_id", "invalid_value", "must be a string"},
      {"a function call without arguments", with({{"input", json::array({user, {{"type", "function_call"}, {"name", "f"}, {"call_id", "c"}}})}}),
       "input[1].arguments", "invalid_value", "must be a string"},
      {"a function call output without output", with({{"input", json::array({user, {{"type", "function_call_output"}, {"call_id", "c"}}})}}),
       "input[1].output", "invalid_value", "required"},
      {"instructions a number", with({{"instructions", 1}}), "instructions", "invalid_value", "must be a string"},
      {"max_output_tokens 0", with({{"max_output_tokens", 0}}), "max_output_tokens", "invalid_value", "between 1 and"},
      {"max_output_tokens text", with({{"max_output_tokens", "4"}}), "max_output_tokens", "invalid_value", "between 1 and"},
      {"temperature 3", with({{"temperature", 3}}), "temperature", "invalid_value", "between"},
      {"top_p text", with({{"top_p", "high"}}), "top_p", "invalid_value", "must be a number"},
      {"stream text", with({{"stream", "yes"}}), "stream", "invalid_value", "must be a boolean"},
      {"tools an object", with({{"tools", kWeather}}), "tools", "invalid_value", "must be an array"},
      {"a web search tool", with({{"tools", json::array({{{"type", "web_search"}}})}}), "tools[0].type", "unsupported_value", "'web_search'"},
      {"a tool without a name", with({{"tools", json::array({{{"type", "function"}}})}}), "tools[0].name", "invalid_value", "must be a string"},
      {"a tool's parameters a string", with({{"tools", json::array({{{"type", "function"}, {"name", "f"}, {"parameters", "x"}}})}}),
       "tools[0].parameters", "invalid_value", "JSON Schema object"},
      {"a tool's strict a string", with({{"tools", json::array({{{"type", "function"}, {"name", "f"}, {"strict", "yes"}}})}}),
       "tools[0].strict", "invalid_value", "must be a boolean"},
      {"tool_choice unknown", with({{"tools", json::array({kWeather})}, {"tool_choice", "sometimes"}}), "tool_choice", "invalid_value", "auto, none, required"},
      {"tool_choice in chat's shape", with({{"tools", json::array({kWeather})}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}),
       "tool_choice", "invalid_value", "auto, none, required"},
      {"tool_choice a missing function", with({{"tools", json::array({kWeather})}, {"tool_choice", {{"type", "function"}, {"name", "g"}}}}),
       "tool_choice", "invalid_value", "'g'"},
      {"tool_choice required without tools", with({{"tool_choice", "required"}}), "tool_choice", "invalid_value", "no 'tools'"},
      {"text not an object", with({{"text", "json"}}), "text", "invalid_value", "must be an object"},
      {"text.format type xml", with({{"text", {{"format", {{"type", "xml"}}}}}}), "text.format.type", "invalid_value", "text, json_object or json_schema"},
      {"json_schema without schema", with({{"text", {{"format", {{"type", "json_schema"}, {"name", "s"}}}}}}), "text.format.schema", "invalid_value",
       "JSON Schema object"},
      {"json_schema strict a string", with({{"text", {{"format", {{"type", "json_schema"}, {"name", "s"}, {"schema", json::object()}, {"strict", "y"}}}}}}),
       "text.format.strict", "invalid_value", "must be a boolean"},
      {"an unsupported schema", with({{"text", {{"format", {{"type", "json_schema"}, {"name", "s"}, {"schema", {{"type", "string"}, {"minLength", 1000000000}}}}}}}}),
       "text.format", "invalid_schema", "$.minLength"},
      {"metadata a list", with({{"metadata", json::array()}}), "metadata", "invalid_value", "must be an object"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Received a = server_->post("/v1/responses", c.body);
    EXPECT_EQ(a.status, 400) << a.body;
    EXPECT_FALSE(a.deferred);
    const json body = json::parse(a.body, nullptr, false);
    ASSERT_TRUE(body.is_object() && body.contains("error")) << a.body;
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_EQ(body["error"]["param"], c.param) << a.body;
    EXPECT_EQ(body["error"]["code"], c.code) << a.body;
    EXPECT_NE(body["error"]["message"].get<std::string>().find(c.message), std::string::npos) << a.body;
  }
  const Received not_json = server_->post_text("/v1/responses", "{\"input\": ");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_EQ(not_json.parsed()["error"]["code"], "invalid_json");
  EXPECT_EQ(server_->get("/v1/responses").status, 404);
}

// The same conversation through chat completions (the oracle): the same text, the same tokens.
TEST_F(ResponsesTest, APlainResponseIsChatsAnswerInTheResponseShape) {
  const Received a = server_->post("/v1/responses", greedy({{"instructions", "You are terse."}, {"input", "Tell me a story."}, {"max_output_tokens", 6}}));
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content_type, "application/json");
  const json r = a.parsed();
  const json chat = chat_answer(*server_, json::array({{{"role", "system"}, {"content", "You are terse."}}, {{"role", "user"}, {"content", "Tell me a story."}}}), 6);
  EXPECT_EQ(r["id"].get<std::string>().rfind("resp_", 0), 0u);
  EXPECT_EQ(r["object"], "response");
  EXPECT_TRUE(r["created_at"].is_number_integer());
  EXPECT_EQ(r["model"], "tiny-qwen2-chat-q8_0.gguf");
  EXPECT_EQ(r["instructions"], "You are terse.");
  EXPECT_EQ(r["max_output_tokens"], 6);
  EXPECT_EQ(r["temperature"], 0);
  EXPECT_EQ(r["store"], false);
  EXPECT_TRUE(r["error"].is_null());
  ASSERT_EQ(r["output"].size(), 1u);
  const json& item = r["output"][0];
  EXPECT_EQ(item["type"], "message");
  EXPECT_EQ(item["role"], "assistant");
  EXPECT_EQ(item["id"].get<std::string>().rfind("msg_", 0), 0u);
  ASSERT_EQ(item["content"].size(), 1u);
  EXPECT_EQ(item["content"][0]["type"], "output_text");
  EXPECT_EQ(item["content"][0]["annotations"], json::array());
  EXPECT_EQ(item["content"][0]["text"], chat["choices"][0]["message"]["content"]);
  const json& usage = r["usage"];
  EXPECT_EQ(usage["input_tokens"], chat["usage"]["prompt_tokens"]);
  EXPECT_EQ(usage["output_tokens"], chat["usage"]["completion_tokens"]);
  EXPECT_EQ(usage["total_tokens"], chat["usage"]["total_tokens"]);
  EXPECT_TRUE(usage["input_tokens_details"]["cached_tokens"].is_number_integer());
  EXPECT_EQ(usage["output_tokens_details"]["reasoning_tokens"], 0);
  // Cut by the limit: incomplete, and says why; otherwise completed.
  const bool cut = chat["choices"][0]["finish_reason"] == "length";
  EXPECT_EQ(r["status"], cut ? "incomplete" : "completed");
  EXPECT_EQ(item["status"], cut ? "incomplete" : "completed");
  EXPECT_EQ(r["incomplete_details"], cut ? json({{"reason", "max_output_tokens"}}) : json(nullptr));
  EXPECT_TRUE(cut) << "6 tokens should not end this story; the incomplete path is what this checks";

  // Long enough to end by itself: completed.
  const Received whole = server_->post("/v1/responses", greedy({{"input", "Hi"}, {"max_output_tokens", 400}}));
  ASSERT_EQ(whole.status, 200);
  const json chat_whole = chat_answer(*server_, json::array({{{"role", "user"}, {"content", "Hi"}}}), 400);
  EXPECT_EQ(output_text(whole.parsed()), chat_whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(whole.parsed()["status"], chat_whole["choices"][0]["finish_reason"] == "length" ? "incomplete" : "completed");
}

// The stream's events in order, numbered, the deltas adding up to the final text (which is the
// answer not streamed).
TEST_F(ResponsesTest, AStreamedResponseIsTheResponsesEventsInOrder) {
  const json body = greedy({{"input", "Tell me a story."}, {"max_output_tokens", 12}, {"stream", true}});
  const Received a = server_->post("/v1/responses", body);
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/event-stream");
  EXPECT_TRUE(a.ended);
  const std::vector<json> events = events_of(a.body);
  ASSERT_GE(events.size(), 9u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i]["sequence_number"], i);
  const std::vector<std::string> types = types_of(events);
  std::vector<std::string> expected = {"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"};
  const size_t deltas = events.size() - 8;
  for (size_t i = 0; i < deltas; ++i) expected.push_back("response.output_text.delta");
  for (const char* t : {"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"})
    expected.push_back(t);
  EXPECT_EQ(types, expected);
  EXPECT_GE(deltas, 1u);

  const json& created = events[0]["response"];
  EXPECT_EQ(created["status"], "in_progress");
  EXPECT_EQ(created["output"], json::array());
  const std::string id = created["id"];
  const std::string item_id = events[2]["item"]["id"];
  EXPECT_EQ(events[2]["item"]["type"], "message");
  EXPECT_EQ(events[2]["item"]["status"], "in_progress");
  EXPECT_EQ(events[2]["output_index"], 0);
  EXPECT_EQ(events[3]["part"], (json{{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}));
  std::string text;
  for (size_t i = 4; i < 4 + deltas; ++i) {
    EXPECT_EQ(events[i]["item_id"], item_id);
    EXPECT_EQ(events[i]["output_index"], 0);
    EXPECT_EQ(events[i]["content_index"], 0);
    text += events[i]["delta"].get<std::string>();
  }
  const json& done = events[4 + deltas];
  EXPECT_EQ(done["text"], text);
  EXPECT_EQ(events[5 + deltas]["part"]["text"], text);
  EXPECT_EQ(events[6 + deltas]["item"]["content"][0]["text"], text);
  EXPECT_EQ(events[6 + deltas]["item"]["id"], item_id);
  EXPECT_EQ(events[6 + deltas]["item"]["status"], "incomplete");
  const json& final = events.back()["response"];
  EXPECT_EQ(final["id"], id);
  EXPECT_EQ(final["status"], "incomplete");
  EXPECT_EQ(final["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(final["output"][0], events[6 + deltas]["item"]);
  EXPECT_EQ(final["usage"]["output_tokens"], 12);

  json plain = body;
  plain.erase("stream");
  const Received b = server_->post("/v1/responses", plain);
  EXPECT_EQ(output_text(b.parsed()), text);

  // One that ends by itself ends with response.completed.
  const Received whole = server_->post("/v1/responses", greedy({{"input", "Hi"}, {"max_output_tokens", 400}, {"stream", true}}));
  const std::vector<json> whole_events = events_of(whole.body);
  ASSERT_FALSE(whole_events.empty());
  EXPECT_EQ(whole_events.back()["type"], whole_events.back()["response"]["status"] == "completed" ? "response.completed" : "response.incomplete");
}

// A forced call: a function_call item with arguments that fit the tool, none of the markup as text;
// streamed as the function-call events; then the round trip: the call and its output sent back
// give a message, and the prompt is the one chat renders for the same conversation.
TEST_F(ResponsesTest, AFunctionToolCallRoundTrip) {
  const json body = {{"input", "What is the weather in Paris?"}, {"tools", json::array({kWeather})}, {"max_output_tokens", 60},
                     {"tool_choice", {{"type", "function"}, {"name", "get_weather"}}}, {"seed", 3}};
  const Received a = server_->post("/v1/responses", body);
  ASSERT_EQ(a.status, 200) << a.body;
  const json r = a.parsed();
  EXPECT_EQ(r["status"], "completed");
  ASSERT_EQ(r["output"].size(), 1u) << r.dump();
  const json& call = r["output"][0];
  EXPECT_EQ(call["type"], "function_call");
  EXPECT_EQ(call["name"], "get_weather");
  EXPECT_EQ(call["status"], "completed");
  EXPECT_EQ(call["id"].get<std::string>().rfind("fc_", 0), 0u);
  EXPECT_EQ(call["call_id"].get<std::string>().rfind("call_", 0), 0u);
  expect_weather_arguments(call["arguments"]);
  EXPECT_EQ(r["tool_choice"], body["tool_choice"]);
  EXPECT_EQ(r["tools"], json::array({kWeather}));

  json streamed_body = body;
  streamed_body["stream"] = true;
  const std::vector<json> events = events_of(server_->post("/v1/responses", streamed_body).body);
  const std::vector<std::string> expected = {"response.created", "response.in_progress", "response.output_item.added",
                                             "response.function_call_arguments.delta", "response.function_call_arguments.done",
                                             "response.output_item.done", "response.completed"};
  ASSERT_EQ(types_of(events), expected);
  EXPECT_EQ(events[2]["item"]["type"], "function_call");
  EXPECT_EQ(events[2]["item"]["arguments"], "");
  const std::string fc_id = events[2]["item"]["id"];
  EXPECT_EQ(events[3]["item_id"], fc_id);
  EXPECT_EQ(events[4]["arguments"], events[3]["delta"]);
  EXPECT_EQ(events[5]["item"]["arguments"], events[3]["delta"]);
  EXPECT_EQ(events[6]["response"]["output"][0], events[5]["item"]);
  expect_weather_arguments(events[4]["arguments"]);

  // The round trip.
  json input = json::array({{{"role", "user"}, {"content", "What is the weather in Paris?"}}, call,
                            {{"type", "function_call_output"}, {"call_id", call["call_id"]}, {"output", "{\"sky\": \"clear\"}"}}});
  const Received back = server_->post("/v1/responses", greedy({{"input", input}, {"tools", json::array({kWeather})}, {"tool_choice", "none"}, {"max_output_tokens", 8}}));
  ASSERT_EQ(back.status, 200) << back.body;
  const json answer = back.parsed();
  ASSERT_EQ(answer["output"].size(), 1u);
  EXPECT_EQ(answer["output"][0]["type"], "message");
  const json chat_messages = json::array(
      {{{"role", "user"}, {"content", "What is the weather in Paris?"}},
       {{"role", "assistant"}, {"content", ""},
        {"tool_calls", json::array({{{"id", call["call_id"]}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", call["arguments"]}}}}})}},
       {{"role", "tool"}, {"tool_call_id", call["call_id"]}, {"name", "get_weather"}, {"content", "{\"sky\": \"clear\"}"}}});
  const json chat = chat_answer(*server_, chat_messages, 8, {{"tools", json::array({{{"type", "function"}, {"function", {{"name", "get_weather"}, {"description", "Current weather in a city"}, {"parameters", kWeather["parameters"]}}}}})}, {"tool_choice", "none"}});
  EXPECT_EQ(answer["usage"]["input_tokens"], chat["usage"]["prompt_tokens"]);
  EXPECT_EQ(output_text(answer), chat["choices"][0]["message"]["content"]);
}

// A forced call cut off by the token limit: incomplete, and none of its markup in the text,
// streamed or not.
TEST_F(ResponsesTest, AToolCallCutOffLeavesNoMarkup) {
  const json body = {{"input", "What is the weather in Paris?"}, {"tools", json::array({kWeather})}, {"max_output_tokens", 5},
                     {"tool_choice", "required"}, {"seed", 3}};
  const Received a = server_->post("/v1/responses", body);
  ASSERT_EQ(a.status, 200) << a.body;
  const json r = a.parsed();
  EXPECT_EQ(r["status"], "incomplete");
  EXPECT_EQ(r["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(r["usage"]["output_tokens"], 5);
  ASSERT_EQ(r["output"].size(), 1u) << r.dump();
  EXPECT_EQ(r["output"][0]["type"], "message");
  EXPECT_EQ(output_text(r).find('<'), std::string::npos) << output_text(r);

  json streamed = body;
  streamed["stream"] = true;
  const Received s = server_->post("/v1/responses", streamed);
  EXPECT_EQ(s.body.find("<tool"), std::string::npos) << s.body;
  const std::vector<json> events = events_of(s.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "response.incomplete");
  EXPECT_EQ(output_text(events.back()["response"]), output_text(r));
}

// text.format json_schema: the output parses and fits the schema (checked here, not by the server).
TEST_F(ResponsesTest, TextFormatJsonSchemaConstrainsTheOutput) {
  const json schema = {{"type", "object"},
                       {"properties", {{"name", {{"type", "string"}, {"maxLength", 8}}}, {"age", {{"type", "integer"}, {"minimum", 0}, {"maximum", 120}}}}},
                       {"required", json::array({"name", "age"})},
                       {"additionalProperties", false}};
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "streamed" : "not streamed");
    const json body = {{"input", "A person, as JSON."}, {"max_output_tokens", 80}, {"seed", 5}, {"stream", stream},
                       {"text", {{"format", {{"type", "json_schema"}, {"name", "person"}, {"schema", schema}, {"strict", true}}}}}};
    const Received a = server_->post("/v1/responses", body);
    ASSERT_EQ(a.status, 200) << a.body;
    const json r = stream ? events_of(a.body).back()["response"] : a.parsed();
    EXPECT_EQ(r["status"], "completed");
    EXPECT_EQ(r["text"]["format"]["type"], "json_schema");
    const json value = json::parse(output_text(r), nullptr, false);
    ASSERT_TRUE(value.is_object()) << output_text(r);
    EXPECT_EQ(value.size(), 2u);
    ASSERT_TRUE(value["name"].is_string());
    EXPECT_LE(value["name"].get<std::string>().size(), 8u * 4);  // up to 8 characters of up to 4 bytes
    ASSERT_TRUE(value["age"].is_number_integer());
    EXPECT_GE(value["age"].get<int>(), 0);
    EXPECT_LE(value["age"].get<int>(), 120);
  }
}

// "model" picks as chat's: on a server that offers adapters an unknown name is a 404 before
// anything runs; the base's id is the base, and the answer names it.
TEST_F(ResponsesTest, ModelNamesOnAServerWithAdapters) {
  AdapterRegistry registry(server_->model, "tiny-qwen2-chat-q8_0.gguf", true, false);
  const OpenAIHandler handler(server_->service, server_->engine, server_->waker, server_->metrics, {}, &registry);
  auto post = [&](const json& body) {
    RecordingConnection connection;
    return run(handler.handle({.method = "POST", .path = "/v1/responses", .headers = {}, .body = body.dump(), .client_left = {}}), connection);
  };
  const Received missing = post({{"model", "nope"}, {"input", "Hi"}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(json::parse(missing.body)["error"]["code"], "model_not_found");
  EXPECT_EQ(json::parse(missing.body)["error"]["param"], "model");
  const Received base = post({{"model", "tiny-qwen2-chat-q8_0.gguf"}, {"input", "Hi"}, {"max_output_tokens", 2}});
  ASSERT_EQ(base.status, 200) << base.body;
  EXPECT_EQ(json::parse(base.body.substr(base.body.find('{')))["model"], "tiny-qwen2-chat-q8_0.gguf");
}

// The client's second write fails (the created events went out): the job is cancelled at the
// engine's next token, not run to its limit.
TEST_F(ResponsesTest, AClientThatLeavesAStreamCancelsItsGeneration) {
  const int64_t abandoned = server_->metric("orchard_abandoned_requests_total");
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  RecordingConnection connection;
  connection.good_writes = 1;
  const json body = {{"input", "Go on forever."}, {"max_output_tokens", 100000}, {"stream", true}, {"seed", 11}};
  const Received a = server_->request("POST", "/v1/responses", body.dump(), connection);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body.rfind("event: response.created\n", 0), 0u);
  EXPECT_EQ(a.body.find("response.completed"), std::string::npos);
  ASSERT_TRUE(server_->abandoned_reaches(abandoned + 1));
  EXPECT_LT(server_->metric("orchard_generated_tokens_total") - generated, 2000);
}

}  // namespace
}  // namespace orchard::server
