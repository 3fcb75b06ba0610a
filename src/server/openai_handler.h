// The OpenAI API without a transport: a request (method, path, headers, body bytes) goes in, a
// response comes out: a status and a whole body, or a status and a body that the transport lets
// the handler write over time (an event stream, or an answer that waits for its generation).
// Routes, validation, error objects, streaming and the watch on the client are all here; the
// handler knows nothing of sockets or of cpp-httplib.
//
// Transports: `http_server.cpp` (cpp-httplib behind the front stage) reads and bounds the body,
// calls `handle`, and maps the response onto httplib's (a deferred body becomes a chunked content
// provider whose DataSink is the ClientConnection). The private cloud node's transport (OHTTP)
// decrypts a request, calls `handle` the same way and encrypts each `write` as one chunk: a
// stream's tokens are gathered into one write per stream interval (RequestChannel), so there is
// one encryption, like one send, per interval and not per token. Tests drive the handler with a
// connection that records its writes (tests/server/openai_handler_test.cpp).
//
// What stays in a transport: reading the body under a limit (and refusing one beyond it, 413),
// framing, the connection's lifetime, and counting requests for /metrics
// (Metrics::count_request with the path and the status it sent: a transport also answers some
// requests itself, such as a body too large, and those must be counted too).
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orchard/engine.h"
#include "server/api_keys.h"
#include "server/api_message.h"
#include "server/openai_protocol.h"

namespace orchard {
class Engine;
}

namespace orchard::server {

class AdapterRegistry;
class ChannelWaker;
class ChatService;
class Metrics;

class OpenAIHandler {
 public:
  using Clock = std::chrono::steady_clock;

  // `engine` runs the jobs, `service` turns requests into them; `waker` wakes the threads that
  // wait on streams (it must outlive the engine); `metrics` is rendered at /metrics.
  // `adapters`: the LoRA adapters requests may choose by "model" (/v1/models lists them,
  // /v1/adapters loads and unloads them); null: none, and any model name means the base.
  OpenAIHandler(ChatService& service, Engine& engine, ChannelWaker& waker, const Metrics& metrics,
                HandlerOptions options, AdapterRegistry* adapters = nullptr);
  ~OpenAIHandler();

  // Thread-safe. Never throws: a client mistake is an OpenAI error object with its 4xx status,
  // anything else a 500 with type "server_error". May block until the job has started (an answer
  // that is not streamed knows its status only then). Unknown method and path: 404, as before
  // the handler (httplib's own answer then; clients and tests rely on it).
  ApiResponse handle(const ApiRequest& request) const;

  // The routes `handle` answers, for a transport that registers routes one by one (httplib).
  struct Route {
    const char* method;
    const char* path;
    // The path takes one more segment, a name (DELETE /v1/adapters/NAME): a transport that
    // matches paths exactly does not reach it.
    bool takes_name = false;
  };
  static const std::vector<Route>& routes();
  // The path a request means: "/X" is "/v1/X" when that is a route (routes()), so that clients
  // configured without the "/v1" prefix reach every OpenAI path; any other path is itself.
  static std::string api_path(const std::string& path);

 private:
  ApiResponse chat(const ApiRequest& request) const;
  ApiResponse completion(const ApiRequest& request) const;
  ApiResponse models() const;
  ApiResponse model(const std::string& id) const;  // GET /v1/models/{id}
  // The routes, once the key and CORS are settled (`path`: a non-/v1 alias already mapped).
  ApiResponse route(const ApiRequest& request, std::string_view method, const std::string& path) const;
  ApiResponse preflight(const ApiRequest& request) const;
  ApiResponse load_adapter(const ApiRequest& request) const;
  ApiResponse unload_adapter(const std::string& name) const;

  ChatService& service_;
  Engine& engine_;
  ChannelWaker& waker_;
  const Metrics& metrics_;
  const HandlerOptions options_;
  const ApiKeys keys_;
  const std::string fingerprint_;  // system_fingerprint
  std::unique_ptr<AdapterRegistry> no_adapters_;  // when none is given: the base under any name
  AdapterRegistry& adapters_;
};

}  // namespace orchard::server
