// The handler in-process over the tiny chat model, for the tests of the APIs beside OpenAI's chat
// (responses_test.cpp, ollama_test.cpp): a connection that records what is written, an answer
// as a client sees it, and the server's objects in the order serve() builds them.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "orchard/engine.h"
#include "server/channel_waker.h"
#include "server/chat_service.h"
#include "server/metrics.h"
#include "server/openai_handler.h"
#include "server/openai_protocol.h"
#include "test_paths.h"

namespace orchard::server::test_fixture {

class RecordingConnection : public ClientConnection {
 public:
  bool write(std::string_view bytes) override {
    if (writes++ >= good_writes) return false;
    text.append(bytes);
    return true;
  }
  bool client_present(std::string_view probe) override {
    ++probes;
    if (present) text.append(probe);  // what the client then receives
    return present;
  }
  std::string text;
  int writes = 0;
  int good_writes = std::numeric_limits<int>::max();
  bool present = true;
  int probes = 0;
};

struct Received {
  int status = 0;
  std::string content_type;
  std::string body;
  bool deferred = false;
  bool ended = false;
  json parsed() const { return json::parse(body); }
};

inline Received run(const ApiResponse& response, RecordingConnection& connection) {
  Received a{.status = response.status, .content_type = response.content_type, .body = response.body};
  if (response.write_body) {
    a.deferred = true;
    a.ended = response.write_body(connection);
    a.body = connection.text;
  }
  return a;
}

struct TestServer {
  TestServer(const std::string& path, int64_t n_ctx)
      : model(Model::load(path)),
        tokenizer(load_model_tokenizer(*model)),
        engine(model, tokenizer, {.slots = 2, .n_ctx = n_ctx, .n_threads = 1, .observer = &metrics}),
        service(tokenizer, path.substr(path.find_last_of('/') + 1), engine.n_ctx()),
        handler(service, engine, waker, metrics, {.stream_interval = std::chrono::milliseconds(10)}) {}

  Received request(const std::string& method, const std::string& path, const std::string& body, RecordingConnection& connection) const {
    return run(handler.handle({.method = method, .path = path, .headers = {}, .body = body, .client_left = {}}), connection);
  }
  Received post(const std::string& path, const json& body) const {
    RecordingConnection connection;
    return request("POST", path, body.dump(), connection);
  }
  Received post_text(const std::string& path, const std::string& body) const {
    RecordingConnection connection;
    return request("POST", path, body, connection);
  }
  Received get(const std::string& path) const {
    RecordingConnection connection;
    return request("GET", path, "", connection);
  }
  int64_t metric(const std::string& name) const {
    const std::string text = metrics.render(), key = "\n" + name + " ";
    const size_t at = text.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(text.substr(at + key.size()));
  }
  // Waits until the engine has finished `count` jobs their clients left.
  bool abandoned_reaches(int64_t count) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (metric("orchard_abandoned_requests_total") < count || metric("orchard_requests_active") != 0) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
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

inline const char* kTinyChat = "models/tiny-chat/tiny-qwen2-chat-q8_0.gguf";

}  // namespace orchard::server::test_fixture
