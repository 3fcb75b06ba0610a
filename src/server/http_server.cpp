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
#include "orchard/engine.h"
#include "runtime/model_tokenizer.h"
#include "server/chat_service.h"
#include "server/chunk_template.h"
#include "server/front_stage.h"
#include "server/metrics.h"
#include "server/request_channel.h"

namespace orchard::server {
namespace {

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%llx%06llx", prefix, static_cast<unsigned long long>(unix_time()),
                static_cast<unsigned long long>(counter.fetch_add(1)));
  return buf;
}

// Generated text may end in the middle of nothing worse than a replaced character, but token
// strings in logprobs can be partial UTF-8: never let dump() throw on them.
std::string to_text(const json& j) { return to_json_text(j); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(to_text(body), "application/json");
}

// Writes the gathered server-sent events as one HTTP chunk (one send for every token the
// engine produced since the last write) and empties `events`; false once the client is gone.
// With nothing to write (text held back while it may be a tool call) the connection is looked at.
bool send_events(httplib::DataSink& sink, std::string& events, bool open) {
  const bool ok = open && (events.empty() ? client_present(sink, ":\n") : sink.write(events.data(), events.size()));
  events.clear();
  return ok;
}

void send_error(httplib::Response& res, const RequestError& e) {
  send_json(res, e.status, error_body(e.what(), e.status >= 500 ? "server_error" : "invalid_request_error", e.param, e.code));
}

json usage_json(const JobSummary& s) {
  return json{{"prompt_tokens", s.prompt_tokens},
              {"completion_tokens", s.completion_tokens},
              {"total_tokens", s.prompt_tokens + s.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", s.cached_prompt_tokens}}}};
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = {{"id", new_id("call")}, {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments_json}}}};
    if (with_index) call["index"] = i;
    out.push_back(std::move(call));
  }
  return out;
}

using Clock = std::chrono::steady_clock;


// Written while a client that finished sending waits (client_present): what each kind of answer
// ignores before or between its events.
constexpr std::string_view kJsonProbe = " ", kSseProbe = ":\n";

class Api {
 public:
  Api(ChatService& service, Engine& engine, ChannelWaker& waker, Clock::duration stream_interval)
      : service_(service), engine_(engine), waker_(waker), stream_interval_(stream_interval) {}

  void chat(const std::string& body, httplib::Response& res) {
    const ChatRequest request = parse_chat_request(parse_body(body));
    PreparedJob prepared = service_.prepare(request, client_reset);
    auto channel = submit(prepared, request.stream);
    if (request.stream) stream_chat(res, request, prepared, channel);
    else answer_chat(res, request, prepared, channel);
  }

  void completion(const std::string& body, httplib::Response& res) {
    const CompletionRequest request = parse_completion_request(parse_body(body));
    PreparedJob prepared = service_.prepare(request);
    auto channel = submit(prepared, request.stream);
    const std::string id = new_id("cmpl"), echo = request.echo ? request.prompt : "";
    const int64_t created = unix_time();  // one time for every chunk of the completion
    auto choice = [](const std::string& text, const json& finish) {
      return json{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
    };
    // By value: the stream's provider runs after this function has returned.
    auto envelope = [id, created, this](json choices) {
      return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", service_.model_name()}, {"choices", std::move(choices)}};
    };
    if (!request.stream) {
      answer_when_done(res, channel, [=](const std::vector<TokenStep>& steps, const JobSummary& summary) {
        std::string text = echo;
        for (const TokenStep& step : steps) text += step.text;
        json body = envelope(json::array({choice(text, finish_reason_name(finish_reason_of(summary.stop)))}));
        body["usage"] = usage_json(summary);
        return body;
      });
      return;
    }
    const bool usage = request.include_usage;
    const auto text_chunk = std::make_shared<const ChunkTemplate>(envelope(json::array({choice(ChunkTemplate::kSlot, nullptr)})));
    res.set_chunked_content_provider("text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
      std::string events;
      if (!echo.empty()) text_chunk->append_event(events, echo);  // goes out with the first token
      bool open = true;
      std::vector<TokenStep> steps;
      while (channel->take(steps, [&sink] { return client_present(sink, kSseProbe); })) {
        std::string text;
        for (const TokenStep& step : steps) text += step.text;
        if (!text.empty()) text_chunk->append_event(events, text);
        open = send_events(sink, events, open);
        if (!open) channel->cancel();
      }
      const JobSummary summary = channel->summary();
      // The status is out: a job that failed says so in an error event, as the chat stream does.
      if (!summary.error.empty()) append_event(events, to_text(error_body(summary.error, "server_error")));
      append_event(events, to_text(envelope(json::array({choice("", finish_reason_name(finish_reason_of(summary.stop)))}))));
      if (usage) {
        json last = envelope(json::array());
        last["usage"] = usage_json(summary);
        append_event(events, to_text(last));
      }
      append_event(events, "[DONE]");
      send_events(sink, events, open);
      sink.done();
      return true;
    });
  }

 private:
  std::shared_ptr<RequestChannel> submit(const PreparedJob& prepared, bool stream) {
    auto channel = std::make_shared<RequestChannel>(waker_, stream ? stream_interval_ : Clock::duration{});
    auto job = std::make_shared<GenerationJob>();
    job->prompt = prepared.prompt;
    job->options = prepared.options;
    job->on_step = [channel](const TokenStep& step) { return channel->push(step); };
    job->abandoned = [channel] { return channel->cancelled(); };
    job->on_done = [channel](const JobSummary& summary) { channel->close(summary); };
    engine_.submit(job);
    return channel;
  }

  json chat_envelope(const std::string& id, int64_t created, const char* object, json choice) const {
    return json{{"id", id}, {"object", object}, {"created", created}, {"model", service_.model_name()},
                {"system_fingerprint", "orchard"}, {"choices", json::array({std::move(choice)})}};
  }

  // A response that is not streamed. Its status is known once the job has started: a job the
  // engine refuses ends before its first token, with its error. A job still running then
  // finishes in a content provider, the one place where httplib 0.11 shows the connection: a
  // client that leaves before the end cancels its generation.
  using Answer = std::function<json(const std::vector<TokenStep>&, const JobSummary&)>;
  void answer_when_done(httplib::Response& res, std::shared_ptr<RequestChannel> channel, Answer answer) {
    channel->wait_started();
    std::vector<TokenStep> steps;
    if (channel->take_all(steps, Clock::duration::zero())) {
      const JobSummary summary = channel->summary();
      if (!summary.error.empty()) throw RequestError(500, summary.error);
      send_json(res, 200, answer(steps, summary));
      return;
    }
    res.set_chunked_content_provider("application/json", [channel, answer](size_t, httplib::DataSink& sink) {
      std::vector<TokenStep> steps;
      while (!channel->take_all(steps, std::chrono::milliseconds(10)))
        if (!client_present(sink, kJsonProbe)) {
          channel->cancel();
          return false;
        }
      const JobSummary summary = channel->summary();
      if (!summary.error.empty()) return false;  // the status is out: only a cut connection tells
      const std::string body = to_text(answer(steps, summary));
      sink.write(body.data(), body.size());
      sink.done();
      return true;
    });
  }

  void answer_chat(httplib::Response& res, const ChatRequest& request, const PreparedJob& prepared,
                   std::shared_ptr<RequestChannel> channel) {
    const bool logprobs = request.logprobs, tools = prepared.tools_enabled;
    answer_when_done(res, channel, [=, this](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      std::string text;
      json token_logprobs = json::array();
      for (const TokenStep& step : steps) {
        text += step.text;
        if (logprobs && step.token >= 0) token_logprobs.push_back(service_.token_logprob_json(step));
      }
      json message = {{"role", "assistant"}, {"content", text}};
      FinishReason finish = finish_reason_of(summary.stop);
      if (tools) {
        ParsedReply reply = parse_tool_calls(text);
        if (!reply.tool_calls.empty()) {
          message["content"] = reply.content.empty() ? json(nullptr) : json(reply.content);
          message["tool_calls"] = tool_calls_json(reply.tool_calls, false);
          finish = FinishReason::tool_calls;
        }
      }
      json choice = {{"index", 0}, {"message", message}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(finish)}};
      if (logprobs) choice["logprobs"] = {{"content", token_logprobs}};
      json body = chat_envelope(new_id("chatcmpl"), unix_time(), "chat.completion", choice);
      body["usage"] = usage_json(summary);
      return body;
    });
  }

  void stream_chat(httplib::Response& res, const ChatRequest& request, const PreparedJob& prepared,
                   std::shared_ptr<RequestChannel> channel) {
    const std::string id = new_id("chatcmpl");
    const int64_t created = unix_time();  // one time for every chunk of the completion
    const bool tools = prepared.tools_enabled, logprobs = request.logprobs, usage = request.include_usage;
    auto chunk_json = [id, created, this](json delta, json finish, json lp = nullptr) {
      json choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(lp)}, {"finish_reason", std::move(finish)}};
      return chat_envelope(id, created, "chat.completion.chunk", std::move(choice));
    };
    const auto content_chunk = std::make_shared<const ChunkTemplate>(chunk_json({{"content", ChunkTemplate::kSlot}}, nullptr));
    res.set_chunked_content_provider("text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
      std::string events;
      auto chunk = [&](json delta, json finish, json lp = nullptr) {
        append_event(events, to_text(chunk_json(std::move(delta), std::move(finish), std::move(lp))));
      };
      chunk({{"role", "assistant"}, {"content", ""}}, nullptr);  // goes out with the first token
      bool open = true;
      // With tools, text that may be the start of a tool call is held until that is decided.
      std::string held, full;
      bool holding = tools;
      std::vector<TokenStep> steps;
      while (channel->take(steps, [&sink] { return client_present(sink, kSseProbe); })) {
        // The tokens taken together go out as one chunk (their logprobs in its list).
        std::string text;
        json token_logprobs = json::array();
        for (const TokenStep& step : steps) {
          full += step.text;
          std::string out = step.text;
          if (holding) {
            held += step.text;
            if (may_start_tool_call(held)) out.clear();
            else out = std::move(held), holding = false;
          }
          text += out;
          if (logprobs && step.token >= 0) token_logprobs.push_back(service_.token_logprob_json(step));
        }
        if (!token_logprobs.empty())
          chunk({{"content", text}}, nullptr, json{{"content", std::move(token_logprobs)}});
        else if (!text.empty())
          content_chunk->append_event(events, text);
        open = send_events(sink, events, open);
        if (!open) channel->cancel();
      }
      const JobSummary summary = channel->summary();
      FinishReason finish = finish_reason_of(summary.stop);
      if (holding && !held.empty()) {
        ParsedReply reply = parse_tool_calls(full);
        if (!reply.tool_calls.empty()) {
          if (!reply.content.empty()) chunk({{"content", reply.content}}, nullptr);
          chunk({{"tool_calls", tool_calls_json(reply.tool_calls, true)}}, nullptr);
          finish = FinishReason::tool_calls;
        } else {
          chunk({{"content", held}}, nullptr);
        }
      }
      if (!summary.error.empty()) append_event(events, to_text(error_body(summary.error, "server_error")));
      chunk(json::object(), finish_reason_name(finish));
      if (usage) {
        json last = chat_envelope(id, created, "chat.completion.chunk", nullptr);
        last["choices"] = json::array();
        last["usage"] = usage_json(summary);
        append_event(events, to_text(last));
      }
      append_event(events, "[DONE]");
      send_events(sink, events, open);
      sink.done();
      return true;
    });
  }

  ChatService& service_;
  Engine& engine_;
  ChannelWaker& waker_;
  const Clock::duration stream_interval_;  // the least time between two writes of one stream
};

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

void serve(const std::string& model_path, const ServerOptions& options, const std::function<void(int)>& on_ready,
           const std::function<bool()>& should_stop) {
  const std::unique_ptr<FrontServer> server = FrontServer::create(options.max_body_bytes);
  FrontServer& http = *server;
  // httplib's default options set SO_REUSEPORT, with which a second server on the same port
  // binds too and the kernel splits the connections between the two. SO_REUSEADDR only lets a
  // restarted server bind while old connections linger in TIME_WAIT.
  http.set_socket_options([](socket_t sock) {
    int one = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  // Bound before the model loads: a port in use fails at once.
  int port = options.port;
  errno = 0;
  if (port == 0) port = http.bind_to_any_port(options.host);
  else if (!http.bind_to_port(options.host, port)) port = -1;
  if (port < 0)
    fail("cannot listen on ", options.host, ":", options.port, errno ? str_cat(": ", std::strerror(errno)) : "",
         errno == EADDRINUSE ? " (another server is on that port)" : "");
  http.widen_backlog();

  auto model = Model::load(model_path, {.kernels = options.kernels, .memory_budget = options.memory_budget});
  auto tokenizer = load_model_tokenizer(*model, options.tokenizer_path);
  Metrics metrics;
  ChannelWaker waker;  // outlives the engine, which pushes tokens until it stops
  Engine engine(model, tokenizer,
                {.slots = options.parallel, .n_ctx = options.n_ctx, .kernels = options.kernels,
                 .n_threads = options.threads, .kv_cache = options.kv_cache, .observer = &metrics});
  ChatService service(model, tokenizer, base_name(model_path), engine.n_ctx());
  Api api(service, engine, waker, std::chrono::microseconds(options.stream_interval_us));

  http.set_payload_max_length(options.max_body_bytes);
  http.set_tcp_nodelay(true);  // streamed tokens are small writes: never wait on Nagle
  auto guarded = [&](void (Api::*handler)(const std::string&, httplib::Response&)) {
    return [&, handler](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      try {
        (api.*handler)(read_body(req, res, reader, options.max_body_bytes), res);
      } catch (const RequestError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_json(res, 500, error_body(std::string("internal error: ") + e.what(), "server_error"));
      }
    };
  };
  http.Post("/v1/chat/completions", guarded(&Api::chat));
  http.Post("/v1/completions", guarded(&Api::completion));
  http.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, json{{"object", "list"},
                             {"data", json::array({{{"id", service.model_name()}, {"object", "model"},
                                                    {"created", unix_time()}, {"owned_by", "orchard"}}})}});
  });
  http.Get("/health", [&](const httplib::Request&, httplib::Response& res) { send_json(res, 200, json{{"status", "ok"}}); });
  http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4");
  });
  // Statuses httplib sets itself (unknown route, body too large, bad request line) get an
  // OpenAI-style error body too.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 404 ? str_cat("no route ", req.method, " ", req.path)
                                : res.status == 413 ? "the request body is too large"
                                                    : "the request could not be processed";
    send_json(res, res.status, error_body(message, "invalid_request_error"));
  });
  http.set_logger([&](const httplib::Request& req, const httplib::Response& res) { metrics.count_request(req.path, res.status); });

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
  if (on_ready) on_ready(port);
  http.listen_after_bind();
  stopped = true;
  watcher.join();
  http.finish();
}

}  // namespace orchard::server
