// `orchard serve`: the OpenAI-compatible HTTP API over one model, with continuous batching.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orchard/engine.h"
#include "orchard/model.h"
#include "server/adapter_registry.h"

namespace httplib {
struct Request;
struct Response;
}

namespace orchard {
class Engine;
}

namespace orchard::server {

class ChatService;
class FrontServer;
class Metrics;
class OpenAIHandler;
struct ApiRequest;
struct ApiResponse;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;            // requests decoded together
  int64_t n_ctx = 0;           // per request; 0: the model's (capped at 4096)
  size_t max_body_bytes = 4u << 20;
  KernelChoice kernels = KernelChoice::fast;
  uint64_t memory_budget = 0;  // limited-memory mode (docs/flash.md); stream buffers per slot
  bool measure_activation_levels = true;  // LoadOptions'
  std::string tokenizer_path;  // override
  int threads = 0;             // forward-pass threads; 0: chosen from the model's size (runtime/engine.cpp)
  KvCacheType kv_cache = KvCacheType::automatic;
  // A stream's tokens go out at most once per interval (the first and the last at once), the
  // tokens of one write in one chunk. Writes faster than a screen refreshes show nothing more
  // and cost a wake-up, a send, and a client's read and parse per token.
  int64_t stream_interval_us = 10000;
  // Reuse of cached prompt prefixes between requests (EngineOptions::share_prefix).
  bool share_prefix = true;
  // A second listener, on loopback only, that answers /metrics and /health; -1: none, 0: any
  // free port. The private cloud node serves its counts there and not on its public port.
  int admin_port = -1;
  // LoRA adapters (--lora NAME=PATH[:SCALE]): offered by name beside the base, each request
  // choosing one by its "model" (AdapterRegistry), or with `merge_adapters` (--lora-merge) all of
  // them merged into the base's weights at load, the one model served under the base's name.
  std::vector<AdapterSpec> adapters;
  bool merge_adapters = false;
  // POST /v1/adapters and DELETE /v1/adapters/NAME (--allow-adapter-updates); refused (403) without.
  bool allow_adapter_updates = false;
  // Speculative decoding in every slot (--spec ngram, --draft-model PATH; EngineOptions).
  SpeculationOptions speculation;
  // API keys (--api-key, --api-key-file) and CORS origins (--cors-origin): HandlerOptions.
  std::vector<std::string> api_keys;
  std::vector<std::string> cors_origins;
  // --alias: the base model's id (in /v1/models, answers' "model", accepted as a request's
  // "model"); empty: the model file's name.
  std::string alias;
  // --chat-template NAME / --chat-template-file F: Jinja that replaces the model's chat template
  // (ChatService); empty: the model's own.
  std::string chat_template;
  // --pooling last|mean: how POST /v1/embeddings pools an input's final hidden states (HandlerOptions).
  Pooling pooling = Pooling::last;
};

// What serve() hands to the routes of its public port.
struct ServedModel {
  Engine& engine;
  ChatService& service;  // the handler's: the model's name, tokenizer and prompts
  const OpenAIHandler& handler;
  Metrics& metrics;
  const ServerOptions& options;
  AdapterRegistry& adapters;
};
// Registers the routes of the public port; by default the OpenAI API's. The private cloud node
// registers its gateway instead (src/cloud/node.cpp), which hands what it decrypts to `handler`.
using RouteInstaller = std::function<void(FrontServer& http, const ServedModel& served)>;

// The OpenAI API's routes, each answered by `served.handler`: what `serve` installs by default.
// A transport in front of the handler (the router) installs its own routes first, then these
// for the rest (httplib takes the first route that matches).
void install_openai_routes(FrontServer& http, const ServedModel& served);

// The request as the handler takes it, on the thread that answers it (client_left watches that
// thread's connection).
ApiRequest api_request(const httplib::Request& req, std::string body);

// The handler's response as httplib's: a whole body, or a chunked content provider that writes
// the deferred body in one call and then ends it (or, when that failed, cuts the connection).
void send(ApiResponse response, httplib::Response& res);

// Loads the model and serves until `should_stop` returns true (polled) or the process ends.
// `on_ready` is called with the bound ports (admin: -1 without one) once the server listens. After a stop, answers in
// flight get 2 s before their connections are cut; should the process still run 10 s after the
// stop, it exits (status 1): meant for a process's main, as `orchard serve`.
void serve(const std::string& model_path, const ServerOptions& options,
           const std::function<void(int port, int admin_port)>& on_ready, const std::function<bool()>& should_stop,
           const RouteInstaller& public_routes = {});

}  // namespace orchard::server
