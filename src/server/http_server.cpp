#include "server/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string_view>
#include <thread>

#include "base/error.h"
#include "orchard/adapter.h"
#include "orchard/engine.h"
#include "server/chat_service.h"
#include "server/channel_waker.h"
#include "server/chunk_template.h"
#include "server/front_stage.h"
#include "server/metrics.h"
#include "server/openai_handler.h"

namespace orchard::server {
namespace {

// The DataSink of one chunked answer, as the handler's connection.
class SinkConnection final : public ClientConnection {
 public:
  explicit SinkConnection(httplib::DataSink& sink) : sink_(sink) {}
  bool write(std::string_view bytes) override { return sink_.write(bytes.data(), bytes.size()); }
  bool client_present(std::string_view probe) override { return server::client_present(sink_, probe); }

 private:
  httplib::DataSink& sink_;
};

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Binds before the model loads, so that a port in use fails at once; returns the bound port.
int bind(FrontServer& http, const std::string& host, int port) {
  // httplib's default options set SO_REUSEPORT, with which a second server on the same port
  // binds too and the kernel splits the connections between the two. SO_REUSEADDR only lets a
  // restarted server bind while old connections linger in TIME_WAIT.
  http.set_socket_options([](socket_t sock) {
    int one = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  errno = 0;
  int bound = port;
  if (port == 0) bound = http.bind_to_any_port(host);
  else if (!http.bind_to_port(host, port)) bound = -1;
  if (bound < 0)
    fail("cannot listen on ", host, ":", port, errno ? str_cat(": ", std::strerror(errno)) : "",
         errno == EADDRINUSE ? " (another server is on that port)" : "");
  http.widen_backlog();
  return bound;
}

}  // namespace

ApiRequest api_request(const httplib::Request& req, std::string body) {
  // Runs on the thread that answers, where client_reset finds the request's connection.
  ApiRequest request{.method = req.method, .path = req.path, .headers = {}, .body = std::move(body), .client_left = client_reset};
  request.headers.assign(req.headers.begin(), req.headers.end());
  return request;
}

// The OpenAI API: the handler's routes one by one, so that httplib reads a body only for the
// routes that take one (and, as before, answers 404 itself for the others: see the error
// handler). httplib matches a route as a regular expression; these paths hold no character
// special in one.
void install_openai_routes(FrontServer& http, const ServedModel& served) {
  const OpenAIHandler& handler = served.handler;
  const size_t max_body = served.options.max_body_bytes;
  for (const OpenAIHandler::Route& route : OpenAIHandler::routes())
   // Each /v1 route also without its "/v1" (the handler maps it back: OpenAIHandler::api_path).
   for (const std::string_view prefix : {"", "/v1"}) {
    if (!prefix.empty() && !std::string_view(route.path).starts_with("/v1/")) continue;
    // A route that takes a name (DELETE /v1/adapters/NAME, GET /v1/models/ID, GET /web/NAME):
    // the rest of the path, which the handler checks or looks up (a model id may hold '/').
    const std::string pattern = std::string(route.path).substr(prefix.size()) + (route.takes_name ? ".+" : "");
    if (std::string_view(route.method) == "POST") {
      http.Post(pattern, [&handler, max_body](const httplib::Request& req, httplib::Response& res,
                                                 const httplib::ContentReader& reader) {
        std::string body;
        try {
          body = read_body(req, res, reader, max_body);
        } catch (const RequestError& e) {
          send(error_response(e), res);
          return;
        } catch (const std::exception& e) {
          send(error_response(500, std::string("internal error: ") + e.what()), res);
          return;
        }
        send(handler.handle(api_request(req, std::move(body))), res);
      });
    } else if (std::string_view(route.method) == "DELETE") {
      http.Delete(pattern, [&handler](const httplib::Request& req, httplib::Response& res) {
        send(handler.handle(api_request(req, "")), res);
      });
    } else {
      http.Get(pattern, [&handler](const httplib::Request& req, httplib::Response& res) {
        send(handler.handle(api_request(req, req.body)), res);
      });
    }
  }
  // CORS preflights, on any path: the handler answers them when --cors-origin is given, and 404s
  // them otherwise.
  http.Options(".*", [&handler](const httplib::Request& req, httplib::Response& res) {
    send(handler.handle(api_request(req, "")), res);
  });
  // An unknown route's 404 is the handler's.
  http.set_error_handler([&handler](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      send(handler.handle(api_request(req, "")), res);
      return;
    }
    const std::string message = res.status == 413 ? "the request body is too large" : "the request could not be processed";
    res.set_content(to_json_text(error_body(message, "invalid_request_error")), "application/json");
  });
}

namespace {

// The admin listener's routes: counts and liveness, nothing else.
void install_admin_routes(FrontServer& http, const OpenAIHandler& handler) {
  for (const char* path : {"/metrics", "/health"})
    http.Get(path, [&handler](const httplib::Request& req, httplib::Response& res) {
      ApiRequest request = api_request(req, "");
      request.admin = true;
      send(handler.handle(request), res);
    });
}

}  // namespace

void send(ApiResponse response, httplib::Response& res) {
  res.status = response.status;
  for (auto& [name, value] : response.headers) res.set_header(name, value);
  if (!response.write_body) {
    // Not set_content, which copies the body.
    res.body = std::move(response.body);
    res.set_header("Content-Type", response.content_type);
    return;
  }
  res.set_chunked_content_provider(response.content_type,
                                   [write_body = std::move(response.write_body)](size_t, httplib::DataSink& sink) {
                                     SinkConnection out(sink);
                                     if (!write_body(out)) return false;
                                     sink.done();
                                     return true;
                                   });
}

void serve(const std::string& model_path, const ServerOptions& options, const std::function<void(int, int)>& on_ready,
           const std::function<bool()>& should_stop, const RouteInstaller& public_routes) {
  const std::unique_ptr<FrontServer> server = FrontServer::create(options.max_body_bytes);
  FrontServer& http = *server;
  const int port = bind(http, options.host, options.port);
  std::unique_ptr<FrontServer> admin;
  int admin_port = -1;
  if (options.admin_port >= 0) {
    admin = FrontServer::create(0);
    admin_port = bind(*admin, "127.0.0.1", options.admin_port);
  }

  std::shared_ptr<const Model> model = Model::load(model_path, {.kernels = options.kernels,
                                                                   .memory_budget = options.memory_budget,
                                                                   .measure_activation_levels = options.measure_activation_levels});
  const std::string base_id = options.alias.empty() ? base_name(model_path) : options.alias;
  // --lora-merge: the adapters become part of the weights, and the server is a plain one.
  if (options.merge_adapters) {
    if (options.allow_adapter_updates) fail("--lora-merge and --allow-adapter-updates do not go together");
    std::vector<std::shared_ptr<const Adapter>> loaded;
    for (const AdapterSpec& spec : options.adapters) loaded.push_back(Adapter::load(*model, spec.path, spec.scale));
    model = merge_adapters(model, loaded, options.kernels);
  }
  const bool offers_adapters = !options.adapters.empty() && !options.merge_adapters;
  AdapterRegistry adapters(model, base_id, offers_adapters, options.allow_adapter_updates);
  if (!options.merge_adapters) {
    for (const AdapterSpec& spec : options.adapters) {
      try {
        adapters.add(spec, true);
      } catch (const RequestError& e) {
        fail("--lora ", spec.name, "=", spec.path, ": ", e.what());
      }
    }
  }
  auto tokenizer = load_model_tokenizer(*model, options.tokenizer_path);
  Metrics metrics;
  ChannelWaker waker;  // outlives the engine, which pushes tokens until it stops
  Engine engine(model, tokenizer,
                {.slots = options.parallel, .n_ctx = options.n_ctx, .kernels = options.kernels,
                 .n_threads = options.threads, .kv_cache = options.kv_cache, .observer = &metrics,
                 .share_prefix = options.share_prefix, .speculation = options.speculation});
  ChatService service(tokenizer, base_id, engine.n_ctx(), options.chat_template);
  const OpenAIHandler handler(service, engine, waker, metrics,
                              {.stream_interval = std::chrono::microseconds(options.stream_interval_us),
                               .api_keys = options.api_keys,
                               .cors_origins = options.cors_origins,
                               .pooling = options.pooling,
                               .kernels = options.kernels},
                              &adapters);

  http.set_payload_max_length(options.max_body_bytes);
  http.set_tcp_nodelay(true);  // streamed tokens are small writes: never wait on Nagle
  (public_routes ? public_routes : install_openai_routes)(http, {engine, service, handler, metrics, options, adapters});
  http.set_logger([&](const httplib::Request& req, const httplib::Response& res) { metrics.count_request(req.path, res.status); });
  std::thread admin_thread;
  std::atomic<bool> admin_ended{false};
  if (admin) {
    install_admin_routes(*admin, handler);
    admin_thread = std::thread([&] {
      admin->listen_after_bind();
      admin_ended = true;
    });
  }

  std::atomic<bool> stopped{false};
  std::thread watcher([&] {
    while (!stopped && !should_stop()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stopped) return;
    // A backstop: the stop below ends every connection within seconds (FrontServer::finish);
    // should a generation not end, the process still does.
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      std::fprintf(stderr, "orchard: still stopping after 10 s; exiting\n");
      std::_Exit(1);
    }).detach();
    // httplib ignores a stop() before its accept loop runs (a signal during the model's load).
    while (!stopped && !http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!stopped) http.stop();
  });
  if (on_ready) on_ready(port, admin_port);
  http.listen_after_bind();
  stopped = true;
  watcher.join();
  if (admin) {
    // As for the public port: a stop() before the accept loop runs is ignored.
    while (!admin_ended && !admin->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    admin->stop();
    admin_thread.join();
    admin->finish();
  }
  http.finish();
}

}  // namespace orchard::server
