// The server's OpenAI handler on the tiny chat model, as a private node runs it (no prefix shared
// between requests), for the gateway and client tests.
#pragma once
#include <chrono>
#include <memory>

#include "orchard/engine.h"
#include "server/channel_waker.h"
#include "server/chat_service.h"
#include "server/metrics.h"
#include "server/openai_handler.h"
#include "test_paths.h"

namespace orchard::cloud {

struct TinyHandler {
  TinyHandler()
      : model(Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"))),
        tokenizer(load_model_tokenizer(*model)),
        engine(model, tokenizer, {.slots = 2, .n_ctx = 512, .n_threads = 1, .observer = &metrics, .share_prefix = false}),
        service(tokenizer, "tiny", engine.n_ctx()),
        handler(service, engine, waker, metrics, {.stream_interval = std::chrono::milliseconds(10)}) {}

  server::Metrics metrics;
  server::ChannelWaker waker;
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  Engine engine;
  server::ChatService service;
  server::OpenAIHandler handler;
};

// One for the whole test program: the model loads once, and the engine's threads live to the end.
inline TinyHandler& tiny_handler() {
  static TinyHandler* h = new TinyHandler();
  return *h;
}

}  // namespace orchard::cloud
