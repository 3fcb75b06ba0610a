// POST /v1/embeddings through the transport-free handler over the tiny chat model: each malformed
// request's status and param, float and base64 answers alike, dimensions, the same text twice, and
// a batch against one input at a time. (The vectors' values are checked against the float64
// oracle in tests/runtime/embedding_test.cpp.)
#include "server/embeddings.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "orchard/engine.h"
#include "server/channel_waker.h"
#include "server/chat_service.h"
#include "server/metrics.h"
#include "server/openai_handler.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

constexpr int64_t kContext = 64;

struct EmbeddingServer {
  explicit EmbeddingServer(Pooling pooling = Pooling::last)
      : model(Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"))),
        tokenizer(load_model_tokenizer(*model)),
        engine(model, tokenizer, {.slots = 2, .n_ctx = kContext, .n_threads = 1, .observer = &metrics}),
        service(tokenizer, "tiny-qwen2-chat-q8_0.gguf", engine.n_ctx()),
        handler(service, engine, waker, metrics, {.pooling = pooling}) {}

  // The status and the parsed body (every embeddings answer is a whole JSON body).
  std::pair<int, json> post(const std::string& body) const {
    const ApiResponse r = handler.handle({.method = "POST", .path = "/v1/embeddings", .headers = {}, .body = body});
    EXPECT_FALSE(r.write_body) << "an embeddings answer is written whole";
    return {r.status, json::parse(r.body)};
  }
  std::pair<int, json> post(const json& body) const { return post(body.dump()); }

  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  Metrics metrics;
  ChannelWaker waker;
  Engine engine;
  ChatService service;
  OpenAIHandler handler;
};

EmbeddingServer& shared_server() {
  static EmbeddingServer server;
  return server;
}

std::vector<float> vector_of(const json& item) { return item.at("embedding").get<std::vector<float>>(); }

double norm_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// Decodes standard base64 here, independently of the server's encoder.
std::vector<float> floats_of_base64(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::vector<uint8_t> bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const int v = value(c);
    EXPECT_GE(v, 0) << "not base64: " << c;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) bits -= 8, bytes.push_back(static_cast<uint8_t>(acc >> bits));
  }
  EXPECT_EQ(bytes.size() % 4, 0u);
  std::vector<float> out(bytes.size() / 4);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint32_t u = bytes[4 * i] | bytes[4 * i + 1] << 8 | bytes[4 * i + 2] << 16 | static_cast<uint32_t>(bytes[4 * i + 3]) << 24;
    std::memcpy(&out[i], &u, 4);
  }
  return out;
}

TEST(EmbeddingsRoute, AnswersInOpenAIsShape) {
  const auto& server = shared_server();
  const auto [status, body] = server.post(json{{"input", "The quick brown fox"}, {"model", "anything"}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["object"], "list");
  EXPECT_EQ(body["model"], "tiny-qwen2-chat-q8_0.gguf");
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["object"], "embedding");
  EXPECT_EQ(body["data"][0]["index"], 0);
  const auto v = vector_of(body["data"][0]);
  EXPECT_EQ(v.size(), static_cast<size_t>(server.model->config().dim));
  EXPECT_NEAR(norm_of(v), 1.0, 1e-5);
  const int64_t tokens = static_cast<int64_t>(server.tokenizer->encode("The quick brown fox", server.tokenizer->adds_bos()).size());
  EXPECT_EQ(body["usage"]["prompt_tokens"], tokens);
  EXPECT_EQ(body["usage"]["total_tokens"], tokens);
}

TEST(EmbeddingsRoute, TextAndItsTokenIdsGiveTheSameVector) {
  const auto& server = shared_server();
  const std::vector<int32_t> ids = server.tokenizer->encode("hello world", server.tokenizer->adds_bos());
  const auto [s1, text] = server.post(json{{"input", "hello world"}});
  const auto [s2, tokens] = server.post(json{{"input", ids}});
  const auto [s3, nested] = server.post(json{{"input", json::array({ids})}});
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(vector_of(text["data"][0]), vector_of(tokens["data"][0]));
  EXPECT_EQ(vector_of(text["data"][0]), vector_of(nested["data"][0]));
  // The same text twice: the same vector (the second time the slot's cached prefix is reused).
  const auto [s4, again] = server.post(json{{"input", "hello world"}});
  EXPECT_EQ(vector_of(text["data"][0]), vector_of(again["data"][0]));
}

TEST(EmbeddingsRoute, ABatchEqualsOneAtATime) {
  const auto& server = shared_server();
  const std::vector<std::string> texts = {"one", "a longer second input, with more tokens in it", "three", "one"};
  const auto [status, batch] = server.post(json{{"input", texts}});
  ASSERT_EQ(status, 200) << batch.dump();
  ASSERT_EQ(batch["data"].size(), texts.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(batch["data"][i]["index"], i);
    const auto [s, alone] = server.post(json{{"input", texts[i]}});
    ASSERT_EQ(s, 200);
    EXPECT_EQ(vector_of(batch["data"][i]), vector_of(alone["data"][0])) << texts[i];
    tokens += alone["usage"]["prompt_tokens"].get<int64_t>();
  }
  EXPECT_EQ(batch["usage"]["prompt_tokens"], tokens);
  EXPECT_NE(vector_of(batch["data"][0]), vector_of(batch["data"][1]));
}

TEST(EmbeddingsRoute, Base64IsTheFloatsLittleEndian) {
  const auto& server = shared_server();
  const auto [s1, floats] = server.post(json{{"input", json::array({"alpha", "beta"})}, {"encoding_format", "float"}});
  const auto [s2, encoded] = server.post(json{{"input", json::array({"alpha", "beta"})}, {"encoding_format", "base64"}});
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(encoded["data"][i]["embedding"].is_string());
    EXPECT_EQ(floats_of_base64(encoded["data"][i]["embedding"]), vector_of(floats["data"][i]));
  }
  // The encoder on its own, on lengths that pad with one and two '='.
  EXPECT_EQ(base64_floats({1.0f}), "AACAPw==");
  EXPECT_EQ(base64_floats({1.0f, -2.0f}), "AACAPwAAAMA=");
  EXPECT_EQ(base64_floats({1.0f, -2.0f, 0.5f}), "AACAPwAAAMAAAAA/");
}

TEST(EmbeddingsRoute, DimensionsTruncateAndRenormalise) {
  const auto& server = shared_server();
  const auto [s1, full] = server.post(json{{"input", "matryoshka"}});
  const auto [s2, cut] = server.post(json{{"input", "matryoshka"}, {"dimensions", 32}});
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  const auto v = vector_of(full["data"][0]), w = vector_of(cut["data"][0]);
  ASSERT_EQ(w.size(), 32u);
  EXPECT_NEAR(norm_of(w), 1.0, 1e-5);
  double head = 0;
  for (size_t i = 0; i < 32; ++i) head += static_cast<double>(v[i]) * v[i];
  for (size_t i = 0; i < 32; ++i) EXPECT_NEAR(w[i], v[i] / std::sqrt(head), 1e-6);
  const auto [s3, whole] = server.post(json{{"input", "matryoshka"}, {"dimensions", server.model->config().dim}});
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(vector_of(whole["data"][0]).size(), v.size());
}

TEST(EmbeddingsRoute, MalformedRequestsAre4xxNamingTheField) {
  const auto& server = shared_server();
  const int64_t dim = server.model->config().dim;
  struct Bad {
    std::string body;
    int status;
    std::string param;
    std::string code = "";
  };
  const std::vector<Bad> cases = {
      {"not json", 400, ""},
      {"[1, 2]", 400, ""},
      {R"({})", 400, "input"},
      {R"({"input": null})", 400, "input"},
      {R"({"input": ""})", 400, "input"},
      {R"({"input": []})", 400, "input"},
      {R"({"input": ["a", ""]})", 400, "input"},
      {R"({"input": [[]]})", 400, "input"},
      {R"({"input": [[1, 2], []]})", 400, "input"},
      {R"({"input": 5})", 400, "input"},
      {R"({"input": {"text": "a"}})", 400, "input"},
      {R"({"input": [true]})", 400, "input"},
      {R"({"input": ["a", 1]})", 400, "input"},
      {R"({"input": [1, "a"]})", 400, "input"},
      {R"({"input": [[1], "a"]})", 400, "input"},
      {R"({"input": [1.5]})", 400, "input"},
      {R"({"input": [-1]})", 400, "input"},
      {R"({"input": [1024]})", 400, "input"},
      {R"({"input": [[5], [18446744073709551615]]})", 400, "input"},
      {json{{"input", std::vector<int32_t>(kContext + 1, 7)}}.dump(), 400, "input", "context_length_exceeded"},
      {json{{"input", std::vector<std::string>(kMaxEmbeddingInputs + 1, "a")}}.dump(), 400, "input"},
      {R"({"input": "a", "encoding_format": "binary"})", 400, "encoding_format"},
      {R"({"input": "a", "encoding_format": 1})", 400, "encoding_format"},
      {R"({"input": "a", "dimensions": 0})", 400, "dimensions"},
      {R"({"input": "a", "dimensions": -3})", 400, "dimensions"},
      {json{{"input", "a"}, {"dimensions", dim + 1}}.dump(), 400, "dimensions"},
      {R"({"input": "a", "dimensions": 8.5})", 400, "dimensions"},
      {R"({"input": "a", "dimensions": "8"})", 400, "dimensions"},
      {R"({"input": "a", "model": 3})", 400, "model"},
      {R"({"input": "a", "user": 3})", 400, "user"},
  };
  for (const Bad& c : cases) {
    const auto [status, body] = server.post(c.body);
    EXPECT_EQ(status, c.status) << c.body << " -> " << body.dump();
    ASSERT_TRUE(body.contains("error")) << c.body;
    EXPECT_EQ(body["error"]["type"], "invalid_request_error") << c.body;
    if (!c.param.empty()) {
      EXPECT_EQ(body["error"]["param"], c.param) << c.body << " -> " << body.dump();
    }
    if (!c.code.empty()) {
      EXPECT_EQ(body["error"]["code"], c.code) << c.body;
    }
  }
  // The context may be filled exactly: nothing is generated after an embedding's input.
  const auto [status, body] = server.post(json{{"input", std::vector<int32_t>(kContext, 7)}});
  EXPECT_EQ(status, 200) << body.dump();
}

// `--pooling mean`: the mean over the input's positions, which differs from the last one's; on a
// one-token input they are the same.
TEST(EmbeddingsRoute, MeanPoolingIsAnOption) {
  const auto& last = shared_server();
  const EmbeddingServer mean(Pooling::mean);
  const auto [s1, a] = last.post(json{{"input", "pooled over every token"}});
  const auto [s2, b] = mean.post(json{{"input", "pooled over every token"}});
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  EXPECT_NE(vector_of(a["data"][0]), vector_of(b["data"][0]));
  EXPECT_NEAR(norm_of(vector_of(b["data"][0])), 1.0, 1e-5);
  const auto [s3, c] = last.post(json{{"input", json::array({7})}});
  const auto [s4, d] = mean.post(json{{"input", json::array({7})}});
  EXPECT_EQ(vector_of(c["data"][0]), vector_of(d["data"][0]));
}

}  // namespace
}  // namespace orchard::server
