// Ollama's API in-process over the tiny chat model: the listing against the model file itself,
// NDJSON framing, the final statistics, every malformed input as a 4xx {"error"} naming the field,
// and answers checked against an oracle that is not this API: the same request through the
// OpenAI endpoints, greedy, gives the same text and token counts.
#include "server/ollama_api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "handler_fixture.h"
#include "server/adapter_registry.h"

namespace orchard::server {
namespace {

using namespace test_fixture;

class OllamaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new TestServer(test::shared_path(kTinyChat), 4096); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static TestServer* server_;
};
TestServer* OllamaTest::server_ = nullptr;

const char* kModel = "tiny-qwen2-chat-q8_0.gguf";
const std::regex kTime(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)");

// The lines of an NDJSON body: each one JSON object (spaces before one are the transport's
// presence probes, which JSON ignores), the body ending in a newline.
std::vector<json> lines_of(const std::string& body) {
  std::vector<json> out;
  EXPECT_FALSE(body.empty());
  EXPECT_EQ(body.back(), '\n');
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) {
      ADD_FAILURE() << "not a JSON object line: " << line.substr(0, 200);
      continue;
    }
    out.push_back(std::move(j));
  }
  return out;
}

// The final line's statistics: counts and durations in nanoseconds that add up.
void expect_final(const json& last, int64_t prompt_tokens, int64_t completion_tokens, const std::string& reason) {
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["done_reason"], reason);
  EXPECT_EQ(last["prompt_eval_count"], prompt_tokens);
  EXPECT_EQ(last["eval_count"], completion_tokens);
  for (const char* d : {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"}) {
    ASSERT_TRUE(last[d].is_number_integer()) << d;
    EXPECT_GE(last[d].get<int64_t>(), 0) << d;
  }
  EXPECT_EQ(last["total_duration"].get<int64_t>(), last["load_duration"].get<int64_t>() + last["prompt_eval_duration"].get<int64_t>() +
                                                       last["eval_duration"].get<int64_t>());
  EXPECT_GT(last["total_duration"].get<int64_t>(), 0);
}

TEST_F(OllamaTest, VersionTagsPsAndShowDescribeTheModel) {
  const Received v = server_->get("/api/version");
  ASSERT_EQ(v.status, 200);
  EXPECT_TRUE(std::regex_match(v.parsed()["version"].get<std::string>(), std::regex(R"(\d+\.\d+\.\d+)")));

  const Received tags = server_->get("/api/tags");
  ASSERT_EQ(tags.status, 200);
  EXPECT_EQ(tags.content_type, "application/json");
  const json models = tags.parsed()["models"];
  ASSERT_EQ(models.size(), 1u);
  const json& m = models[0];
  EXPECT_EQ(m["name"], kModel);
  EXPECT_EQ(m["model"], kModel);
  EXPECT_EQ(m["size"], std::filesystem::file_size(test::shared_path(kTinyChat)));
  EXPECT_TRUE(std::regex_match(m["digest"].get<std::string>(), std::regex("[0-9a-f]{64}")));
  EXPECT_TRUE(std::regex_match(m["modified_at"].get<std::string>(), kTime)) << m["modified_at"];
  const json& d = m["details"];
  EXPECT_EQ(d["format"], "gguf");
  EXPECT_EQ(d["family"], "qwen2");
  EXPECT_EQ(d["families"], json::array({"qwen2"}));
  EXPECT_EQ(d["parent_model"], "");
  EXPECT_EQ(d["quantization_level"], "Q8_0");  // the file's name says so
  EXPECT_TRUE(std::regex_match(d["parameter_size"].get<std::string>(), std::regex(R"(\d+(\.\d+)?[KMB]?)")));
  // The digest is the model's: the same on every listing.
  EXPECT_EQ(server_->get("/api/tags").parsed()["models"][0]["digest"], m["digest"]);

  const json ps = server_->get("/api/ps").parsed()["models"];
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0]["name"], kModel);
  EXPECT_EQ(ps[0]["digest"], m["digest"]);

  for (const char* key : {"model", "name"}) {
    const Received show = server_->post("/api/show", {{key, std::string(kModel) + ":latest"}});
    ASSERT_EQ(show.status, 200) << show.body;
    const json s = show.parsed();
    EXPECT_EQ(s["template"], server_->tokenizer->chat_template());
    EXPECT_NE(s["modelfile"].get<std::string>().find("FROM " + test::shared_path(kTinyChat)), std::string::npos);
    EXPECT_EQ(s["details"], d);
    EXPECT_EQ(s["model_info"]["general.architecture"], "qwen2");
    EXPECT_EQ(s["model_info"]["qwen2.block_count"], server_->model->config().n_layers);
    EXPECT_EQ(s["model_info"]["qwen2.embedding_length"], server_->model->config().dim);
    EXPECT_EQ(s["capabilities"][0], "completion");
    EXPECT_NE(s["parameters"].get<std::string>().find("stop \"<|im_end|>\""), std::string::npos) << s["parameters"];
  }
}

// Not streamed, then streamed (Ollama's default): the same text as /v1/chat/completions greedy,
// the same token counts, the final statistics.
TEST_F(OllamaTest, ChatStreamedAndNotIsChatsAnswer) {
  const json messages = json::array({{{"role", "system"}, {"content", "You are terse."}}, {{"role", "user"}, {"content", "Tell me a story."}}});
  const json oracle = server_->post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 7}, {"temperature", 0}, {"repetition_penalty", 1.1}}).parsed();
  const std::string expected = oracle["choices"][0]["message"]["content"];
  const std::string reason = oracle["choices"][0]["finish_reason"];
  const json body = {{"model", kModel}, {"messages", messages}, {"options", {{"temperature", 0}, {"num_predict", 7}}}};

  json plain = body;
  plain["stream"] = false;
  const Received a = server_->post("/api/chat", plain);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content_type, "application/json");
  const json r = json::parse(a.body.substr(a.body.find('{')));  // after any presence probes
  EXPECT_EQ(r["model"], kModel);
  EXPECT_TRUE(std::regex_match(r["created_at"].get<std::string>(), kTime));
  EXPECT_EQ(r["message"], (json{{"role", "assistant"}, {"content", expected}}));
  expect_final(r, oracle["usage"]["prompt_tokens"], oracle["usage"]["completion_tokens"], reason);

  const Received s = server_->post("/api/chat", body);  // stream absent: streamed
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.content_type, "application/x-ndjson");
  EXPECT_TRUE(s.ended);
  const std::vector<json> lines = lines_of(s.body);
  ASSERT_GE(lines.size(), 2u);
  std::string text;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["done"], false);
    EXPECT_EQ(lines[i]["model"], kModel);
    EXPECT_TRUE(std::regex_match(lines[i]["created_at"].get<std::string>(), kTime));
    EXPECT_EQ(lines[i]["message"]["role"], "assistant");
    text += lines[i]["message"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, expected);
  EXPECT_EQ(lines.back()["message"]["content"], "");
  expect_final(lines.back(), oracle["usage"]["prompt_tokens"], oracle["usage"]["completion_tokens"], reason);
}

// Options map onto the sampler: the same seed, temperature and top-k give the same text as the
// OpenAI endpoint with those values; stop strings end the text.
TEST_F(OllamaTest, OptionsMapOntoTheSampler) {
  const json messages = json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  const json oracle = server_->post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 10}, {"temperature", 1.3}, {"top_p", 0.95},
                                                             {"top_k", 20}, {"seed", 42}, {"repetition_penalty", 1.2}}).parsed();
  const Received a = server_->post("/api/chat", {{"messages", messages}, {"stream", false},
                                               {"options", {{"temperature", 1.3}, {"top_p", 0.95}, {"top_k", 20}, {"seed", 42}, {"repeat_penalty", 1.2}, {"num_predict", 10}}}});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.parsed()["message"]["content"], oracle["choices"][0]["message"]["content"]);
  // Ollama's defaults (0.8, 40, 0.9, repeat penalty 1.1) apply when options say nothing.
  const json defaults = server_->post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 10}, {"temperature", 0.8}, {"top_p", 0.9},
                                                               {"top_k", 40}, {"repetition_penalty", 1.1}, {"seed", 9}}).parsed();
  const Received d = server_->post("/api/chat", {{"messages", messages}, {"stream", false}, {"options", {{"seed", 9}, {"num_predict", 10}}}});
  EXPECT_EQ(d.parsed()["message"]["content"], defaults["choices"][0]["message"]["content"]);
}

// generate: the chat template around prompt and system; raw: the prompt as it is, as completions.
TEST_F(OllamaTest, GenerateWithTheTemplateAndRaw) {
  const json oracle = server_->post("/v1/chat/completions", {{"messages", json::array({{{"role", "system"}, {"content", "Be kind."}}, {{"role", "user"}, {"content", "Hello"}}})},
                                                             {"max_tokens", 6}, {"temperature", 0}, {"repetition_penalty", 1.1}}).parsed();
  const Received a = server_->post("/api/generate", {{"model", kModel}, {"prompt", "Hello"}, {"system", "Be kind."}, {"stream", false},
                                                   {"options", {{"temperature", 0}, {"num_predict", 6}}}});
  ASSERT_EQ(a.status, 200) << a.body;
  const json r = a.parsed();
  EXPECT_EQ(r["response"], oracle["choices"][0]["message"]["content"]);
  EXPECT_FALSE(r.contains("message"));
  expect_final(r, oracle["usage"]["prompt_tokens"], oracle["usage"]["completion_tokens"], oracle["choices"][0]["finish_reason"]);

  const json raw_oracle = server_->post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 6}, {"temperature", 0}, {"repetition_penalty", 1.1}}).parsed();
  const Received raw = server_->post("/api/generate", {{"prompt", "Once upon a time"}, {"raw", true}, {"options", {{"temperature", 0}, {"num_predict", 6}}}});
  ASSERT_EQ(raw.status, 200) << raw.body;
  EXPECT_EQ(raw.content_type, "application/x-ndjson");
  const std::vector<json> lines = lines_of(raw.body);
  std::string text;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["done"], false);
    text += lines[i]["response"].get<std::string>();
  }
  EXPECT_EQ(text, raw_oracle["choices"][0]["text"]);
  expect_final(lines.back(), raw_oracle["usage"]["prompt_tokens"], raw_oracle["usage"]["completion_tokens"], raw_oracle["choices"][0]["finish_reason"]);

  // No prompt: Ollama's "load the model" request, answered at once.
  for (bool stream : {false, true}) {
    const Received load = server_->post("/api/generate", {{"model", kModel}, {"stream", stream}});
    ASSERT_EQ(load.status, 200);
    const json done = lines_of(load.body.empty() ? std::string() : load.body + (stream ? "" : "\n")).back();
    EXPECT_EQ(done["done"], true);
    EXPECT_EQ(done["done_reason"], "load");
    EXPECT_EQ(done["response"], "");
  }
}

// format "json" and a schema: the content parses, and fits the schema (checked here).
TEST_F(OllamaTest, FormatJsonAndSchema) {
  const json messages = json::array({{{"role", "user"}, {"content", "A person, as JSON."}}});
  const Received a = server_->post("/api/chat", {{"messages", messages}, {"stream", false}, {"format", "json"}, {"options", {{"seed", 1}, {"num_predict", 60}}}});
  ASSERT_EQ(a.status, 200) << a.body;
  const json r = a.parsed();
  const std::string content = r["message"]["content"];
  EXPECT_EQ(content.substr(0, content.find_first_not_of(" \n\t")).find_first_not_of(" \n\t"), std::string::npos);
  EXPECT_EQ(content[content.find_first_not_of(" \n\t")], '{') << content;  // an object, cut or not
  if (r["done_reason"] == "stop") {
    EXPECT_TRUE(json::parse(content, nullptr, false).is_object()) << r;
  }
  const json schema = {{"type", "object"},
                       {"properties", {{"age", {{"type", "integer"}, {"minimum", 1}, {"maximum", 99}}}, {"ok", {{"type", "boolean"}}}}},
                       {"required", json::array({"age", "ok"})},
                       {"additionalProperties", false}};
  const Received s = server_->post("/api/generate", {{"prompt", "Give me JSON."}, {"stream", false}, {"format", schema}, {"options", {{"seed", 2}, {"num_predict", 60}}}});
  ASSERT_EQ(s.status, 200) << s.body;
  const json value = json::parse(s.parsed()["response"].get<std::string>(), nullptr, false);
  ASSERT_TRUE(value.is_object()) << s.body;
  EXPECT_EQ(value.size(), 2u);
  ASSERT_TRUE(value["age"].is_number_integer());
  EXPECT_GE(value["age"].get<int>(), 1);
  EXPECT_LE(value["age"].get<int>(), 99);
  EXPECT_TRUE(value["ok"].is_boolean());
}

// A conversation with Ollama's tool calls (arguments an object) and a tool result: the prompt
// is the one chat renders for the same conversation in OpenAI's shape.
TEST_F(OllamaTest, ToolMessagesRenderAsChatsDo) {
  const json tool = {{"type", "function"},
                     {"function", {{"name", "get_weather"}, {"description", "Weather"}, {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}};
  const json ollama_messages = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}},
                                            {{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array({{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}})}},
                                            {{"role", "tool"}, {"content", "sunny"}, {"tool_name", "get_weather"}}});
  const json openai_messages = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}},
                                            {{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array({{{"id", "c1"}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\"}"}}}}})}},
                                            {{"role", "tool"}, {"tool_call_id", "c1"}, {"name", "get_weather"}, {"content", "sunny"}}});
  const json oracle = server_->post("/v1/chat/completions", {{"messages", openai_messages}, {"tools", json::array({tool})}, {"max_tokens", 3}, {"temperature", 0}, {"repetition_penalty", 1.1}}).parsed();
  const Received a = server_->post("/api/chat", {{"messages", ollama_messages}, {"tools", json::array({tool})}, {"stream", false}, {"options", {{"temperature", 0}, {"num_predict", 3}}}});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.parsed()["prompt_eval_count"], oracle["usage"]["prompt_tokens"]);
}

struct ErrorCase {
  const char* name;
  const char* path;
  std::string body;
  int status;
  std::string message;
};

TEST_F(OllamaTest, MalformedInputsAre4xxErrorsNamingTheField) {
  const json user = json::array({{{"role", "user"}, {"content", "Hi"}}});
  auto chat = [&](json fields) {
    json body = {{"model", kModel}, {"messages", user}, {"stream", false}};
    for (auto& [k, v] : fields.items()) body[k] = v;
    return body.dump();
  };
  auto generate = [&](json fields) {
    json body = {{"model", kModel}, {"prompt", "Hi"}, {"stream", false}};
    for (auto& [k, v] : fields.items()) body[k] = v;
    return body.dump();
  };
  const std::vector<ErrorCase> cases = {
      {"not JSON", "/api/chat", "{\"messages\": [", 400, "not valid JSON"},
      {"a body that is a list", "/api/chat", "[]", 400, "JSON object"},
      {"messages an object", "/api/chat", chat({{"messages", {{"role", "user"}}}}), 400, "'messages' must be an array"},
      {"a message a number", "/api/chat", chat({{"messages", json::array({1})}}), 400, "messages[0] must be an object"},
      {"a bad role", "/api/chat", chat({{"messages", json::array({{{"role", "robot"}, {"content", "x"}}})}}), 400, "messages[0].role"},
      {"images", "/api/chat", chat({{"messages", json::array({{{"role", "user"}, {"content", "x"}, {"images", json::array({"aGk="})}}})}}), 400,
       "messages[0].images"},
      {"tool_calls an object", "/api/chat", chat({{"messages", json::array({{{"role", "assistant"}, {"content", ""}, {"tool_calls", json::object()}}})}}), 400,
       "messages[0].tool_calls"},
      {"stream a string", "/api/chat", chat({{"stream", "no"}}), 400, "'stream' must be a boolean"},
      {"model a number", "/api/chat", chat({{"model", 5}}), 400, "'model' must be a string"},
      {"options a list", "/api/chat", chat({{"options", json::array()}}), 400, "'options' must be an object"},
      {"temperature a string", "/api/chat", chat({{"options", {{"temperature", "hot"}}}}), 400, "options.temperature"},
      {"temperature 5", "/api/chat", chat({{"options", {{"temperature", 5}}}}), 400, "options.temperature"},
      {"repeat_penalty 0", "/api/chat", chat({{"options", {{"repeat_penalty", 0}}}}), 400, "options.repeat_penalty"},
      {"repeat_last_n -2", "/api/chat", chat({{"options", {{"repeat_last_n", -2}}}}), 400, "options.repeat_last_n"},
      {"seed a float", "/api/chat", chat({{"options", {{"seed", 1.5}}}}), 400, "options.seed"},
      {"stop a number", "/api/chat", chat({{"options", {{"stop", 3}}}}), 400, "options.stop"},
      {"num_predict 0", "/api/chat", chat({{"options", {{"num_predict", 0}}}}), 400, "options.num_predict"},
      {"format xml", "/api/chat", chat({{"format", "xml"}}), 400, "'format' must be"},
      {"an unsupported schema", "/api/chat", chat({{"format", {{"type", "string"}, {"minLength", 1000000000}}}}), 400, "format"},
      {"tools an object", "/api/chat", chat({{"tools", {{"type", "function"}}}}), 400, "'tools' must be an array"},
      {"generate: prompt a number", "/api/generate", generate({{"prompt", 1}}), 400, "'prompt' must be a string"},
      {"generate: suffix", "/api/generate", generate({{"suffix", "end"}}), 400, "'suffix' is not supported"},
      {"generate: template", "/api/generate", generate({{"template", "{{ .Prompt }}"}}), 400, "'template' is not supported"},
      {"generate: context", "/api/generate", generate({{"context", json::array({1, 2})}}), 400, "'context' is not supported"},
      {"generate: images", "/api/generate", generate({{"images", json::array({"aGk="})}}), 400, "'images'"},
      {"generate: raw with format", "/api/generate", generate({{"raw", true}, {"format", "json"}}), 400, "'format' is not supported with 'raw'"},
      {"generate: raw a string", "/api/generate", generate({{"raw", "yes"}}), 400, "'raw' must be a boolean"},
      {"show without a model", "/api/show", "{}", 400, "'model' is required"},
      {"pull", "/api/pull", "{\"model\": \"llama3\"}", 404, "no route POST /api/pull"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Received a = server_->post_text(c.path, c.body);
    EXPECT_EQ(a.status, c.status) << a.body;
    EXPECT_FALSE(a.deferred);
    const json body = json::parse(a.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << a.body;
    ASSERT_EQ(body.size(), 1u) << a.body;  // Ollama's shape: {"error": "..."} and nothing else
    ASSERT_TRUE(body["error"].is_string()) << a.body;
    EXPECT_NE(body["error"].get<std::string>().find(c.message), std::string::npos) << a.body;
  }
  EXPECT_EQ(server_->get("/api/chat").status, 404);
}

// On a server that offers adapters an unknown model is a 404 in Ollama's shape; the base's name,
// with the ":latest" tag Ollama's clients add, is the base.
TEST_F(OllamaTest, ModelNamesOnAServerWithAdapters) {
  AdapterRegistry registry(server_->model, kModel, true, false);
  const OpenAIHandler handler(server_->service, server_->engine, server_->waker, server_->metrics, {}, &registry);
  auto post = [&](const char* path, const json& body) {
    RecordingConnection connection;
    return run(handler.handle({.method = "POST", .path = path, .headers = {}, .body = body.dump(), .client_left = {}}), connection);
  };
  const json messages = json::array({{{"role", "user"}, {"content", "Hi"}}});
  const Received missing = post("/api/chat", {{"model", "nope"}, {"messages", messages}, {"stream", false}});
  EXPECT_EQ(missing.status, 404);
  const json error = json::parse(missing.body);
  ASSERT_EQ(error.size(), 1u);
  EXPECT_NE(error["error"].get<std::string>().find("'nope'"), std::string::npos) << missing.body;
  EXPECT_EQ(post("/api/show", {{"model", "nope"}}).status, 404);
  for (const std::string& name : {std::string(kModel), std::string(kModel) + ":latest"}) {
    const Received a = post("/api/chat", {{"model", name}, {"messages", messages}, {"stream", false}, {"options", {{"num_predict", 2}}}});
    ASSERT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(json::parse(a.body.substr(a.body.find('{')))["model"], kModel);
  }
}

// NDJSON streams watch their client too: a client whose second write fails cancels its job.
TEST_F(OllamaTest, AClientThatLeavesAStreamCancelsItsGeneration) {
  const int64_t abandoned = server_->metric("orchard_abandoned_requests_total");
  const int64_t generated = server_->metric("orchard_generated_tokens_total");
  RecordingConnection connection;
  connection.good_writes = 1;
  const json body = {{"messages", json::array({{{"role", "user"}, {"content", "Go on forever."}}})}, {"options", {{"seed", 11}}}};
  const Received a = server_->request("POST", "/api/chat", body.dump(), connection);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(connection.writes, 2);
  EXPECT_EQ(a.body.find("\"done\":true"), std::string::npos);
  ASSERT_TRUE(server_->abandoned_reaches(abandoned + 1));
  EXPECT_LT(server_->metric("orchard_generated_tokens_total") - generated, 2000);
}

// The translation alone (what the fuzz target openai_request also drives): Ollama's documented
// fields and defaults (github.com/ollama/ollama docs/api.md) mapped onto the OpenAI requests.
TEST(OllamaParse, ChatMapsOllamasFieldsOntoAChatRequest) {
  const OllamaRequest r = parse_ollama_chat(json::parse(R"({"model": "tiny:latest",
      "messages": [{"role": "user", "content": "hi"}],
      "options": {"num_predict": 5, "repeat_penalty": 1.3, "temperature": 0, "stop": ["x"]}})"));
  EXPECT_EQ(r.model, "tiny");  // a bare name's ":latest" is the name
  EXPECT_TRUE(r.stream);       // Ollama streams unless "stream": false
  ASSERT_TRUE(r.chat);
  EXPECT_FALSE(r.completion);
  EXPECT_EQ(r.chat->messages, json::parse(R"([{"role": "user", "content": "hi"}])"));
  EXPECT_EQ(r.chat->max_tokens, 5);
  EXPECT_FLOAT_EQ(r.chat->sampling.repeat_penalty, 1.3f);
  EXPECT_FLOAT_EQ(r.chat->sampling.temperature, 0.0f);
  EXPECT_EQ(r.chat->stop, std::vector<std::string>{"x"});
  // Ollama's sampling defaults where "options" says nothing.
  const OllamaRequest d = parse_ollama_chat(json::parse(R"({"messages": [{"role": "user", "content": "hi"}], "stream": false})"));
  EXPECT_FALSE(d.stream);
  EXPECT_FALSE(d.model);
  ASSERT_TRUE(d.chat);
  EXPECT_FLOAT_EQ(d.chat->sampling.temperature, 0.8f);
  EXPECT_EQ(d.chat->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(d.chat->sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(d.chat->sampling.min_p, 0.0f);
  EXPECT_FLOAT_EQ(d.chat->sampling.repeat_penalty, 1.1f);
  EXPECT_EQ(d.chat->sampling.repeat_last_n, 64);
  // repeat_last_n: 0 looks at no token, -1 at all of them.
  for (const auto& [given, expected] : {std::pair{16, 16}, {0, 0}, {-1, std::numeric_limits<int32_t>::max()}}) {
    const OllamaRequest n = parse_ollama_chat(
        json{{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}, {"options", {{"repeat_last_n", given}}}});
    EXPECT_EQ(n.chat->sampling.repeat_last_n, expected) << given;
  }
  // No messages: Ollama's request that only loads the model.
  const OllamaRequest load = parse_ollama_chat(json::parse(R"({"model": "tiny"})"));
  EXPECT_FALSE(load.chat);
  EXPECT_FALSE(load.completion);
}

TEST(OllamaParse, GenerateIsAChatTurnOrWithRawACompletion) {
  const OllamaRequest chat = parse_ollama_generate(json::parse(R"({"prompt": "Why?", "system": "Be brief."})"));
  ASSERT_TRUE(chat.chat);
  EXPECT_EQ(chat.chat->messages, json::parse(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}])"));
  const OllamaRequest raw = parse_ollama_generate(json::parse(R"({"prompt": "Once", "raw": true, "options": {"num_predict": 7}})"));
  ASSERT_TRUE(raw.completion);
  EXPECT_FALSE(raw.chat);
  EXPECT_EQ(raw.completion->max_tokens, 7);
  // Without num_predict a raw generation runs until the context is full, as Ollama's does.
  const OllamaRequest open = parse_ollama_generate(json::parse(R"({"prompt": "Once", "raw": true})"));
  ASSERT_TRUE(open.completion && open.completion->max_tokens);
  EXPECT_GT(*open.completion->max_tokens, 1 << 20);
  const OllamaRequest load = parse_ollama_generate(json::parse(R"({"model": "tiny", "prompt": ""})"));
  EXPECT_FALSE(load.chat || load.completion);
}

// Each refusal is a 400 whose message names the field as an Ollama client wrote it.
TEST(OllamaParse, RefusalsNameOllamasField) {
  const auto refusal = [](OllamaRequest (*parse)(const json&), const char* body) {
    try {
      parse(json::parse(body));
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status, 400) << body;
      return std::string(e.what());
    }
    ADD_FAILURE() << "accepted: " << body;
    return std::string();
  };
  const std::string hi = R"("messages": [{"role": "user", "content": "hi"}])";
  EXPECT_NE(refusal(parse_ollama_chat, ("{" + hi + R"(, "options": {"num_predict": 0}})").c_str()).find("options.num_predict"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_chat, ("{" + hi + R"(, "options": {"temperature": "hot"}})").c_str()).find("options.temperature"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_chat, ("{" + hi + R"(, "options": {"repeat_last_n": -2}})").c_str()).find("options.repeat_last_n"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_chat, ("{" + hi + R"(, "format": 5})").c_str()).find("format"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_chat, R"({"messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]})").find("messages[0].images"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_chat, R"({"messages": {"role": "user"}})").find("messages"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_chat, ("{" + hi + R"(, "stream": "yes"})").c_str()).find("stream"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_generate, R"({"prompt": "a", "context": [1, 2]})").find("context"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_generate, R"({"prompt": "a", "raw": true, "format": "json"})").find("format"), std::string::npos);
  EXPECT_NE(refusal(parse_ollama_generate, R"({"prompt": 3})").find("prompt"), std::string::npos);
}

}  // namespace
}  // namespace orchard::server
