#include "server/openai_handler.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <optional>
#include <exception>
#include <memory>
#include <string_view>

#include "base/error.h"
#include "orchard/engine.h"
#include "server/adapter_registry.h"
#include "server/chat_service.h"
#include "server/chunk_template.h"
#include "server/embeddings.h"
#include "server/handler_support.h"
#include "server/metrics.h"
#include "server/ollama_api.h"
#include "server/request_channel.h"
#include "kernels/cpu_features.h"
#include "server/responses_api.h"
#include "server/web_chat.h"

namespace orchard::server {
namespace {

using Clock = OpenAIHandler::Clock;

json adapter_model_json(const AdapterEntry& e, const std::string& parent) {
  return json{{"id", e.name}, {"object", "model"}, {"created", e.created}, {"owned_by", "orchard"}, {"parent", parent}};
}

// A header's value by its name in any case (HTTP names are case-insensitive); the first one.
std::optional<std::string_view> header_value(const ApiRequest& request, std::string_view name) {
  for (const auto& [key, value] : request.headers)
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b)); }))
      return std::string_view(value);
  return std::nullopt;
}

// Whether a request needs the API key: all but /health and GETs of paths that are no API call
// (the web page's static files, and unknown pages, which are 404s either way).
bool needs_key(std::string_view method, const std::string& path) {
  if (path == "/health") return false;
  const bool api = path.starts_with("/v1/") || path.starts_with("/api/") || path == "/metrics";
  return api || method != "GET";
}

bool allowed_origin(const std::vector<std::string>& allowed, std::string_view origin) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& o) { return o == "*" || o == origin; });
}

json chat_envelope(const std::string& model, const std::string& id, int64_t created, const char* object, json choice,
                   const std::string& fingerprint) {
  return json{{"id", id}, {"object", object}, {"created", created}, {"model", model},
              {"system_fingerprint", fingerprint}, {"choices", json::array({std::move(choice)})}};
}

// The library's version, as orchard_version() gives it (src/capi/orchard_c.cpp; the server may not
// include the C API's layer).
constexpr std::string_view kOrchardVersion = "0.1.0";

// What decides an answer's numbers besides the model, its adapter and the seed: the build and the
// kernels' path (the kernels are batch-invariant, so the load does not).
std::string fingerprint_of(KernelChoice kernels) {
  return str_cat("orchard-", kOrchardVersion, "-", kernels == KernelChoice::reference ? std::string_view("reference") : isa_name(selected_isa()));
}

}  // namespace

OpenAIHandler::OpenAIHandler(ChatService& service, Engine& engine, ChannelWaker& waker, const Metrics& metrics,
                             HandlerOptions options, AdapterRegistry* adapters)
    : service_(service),
      engine_(engine),
      waker_(waker),
      metrics_(metrics),
      options_(std::move(options)),
      keys_(options_.api_keys),
      fingerprint_(fingerprint_of(options_.kernels)),
      no_adapters_(adapters ? nullptr : std::make_unique<AdapterRegistry>(nullptr, service.model_name(), false, false)),
      adapters_(adapters ? *adapters : *no_adapters_) {}

OpenAIHandler::~OpenAIHandler() = default;

const std::vector<OpenAIHandler::Route>& OpenAIHandler::routes() {
  static const std::vector<Route> all = {{"POST", "/v1/chat/completions"}, {"POST", "/v1/completions"}, {"POST", "/v1/embeddings"},
                                         {"GET", "/v1/models"}, {"GET", "/v1/models/", true}, {"GET", "/health"}, {"GET", "/metrics"},
                                         {"POST", "/v1/adapters"}, {"DELETE", "/v1/adapters/", true},
                                         {"GET", "/"}, {"GET", "/web/", true},
                                         {"POST", "/v1/responses"}, {"POST", "/api/chat"}, {"POST", "/api/generate"}, {"GET", "/api/tags"},
                                         {"GET", "/api/ps"}, {"POST", "/api/show"}, {"GET", "/api/version"}};
  return all;
}

std::string OpenAIHandler::api_path(const std::string& path) {
  if (path.starts_with("/v1/") || path.size() < 2) return path;
  const std::string v1 = "/v1" + path;
  for (const Route& r : routes())
    if (r.takes_name ? v1.starts_with(r.path) && v1.size() > std::strlen(r.path) : v1 == r.path) return v1;
  return path;
}

ApiResponse OpenAIHandler::handle(const ApiRequest& request) const {
  const std::string_view method = request.method == "HEAD" ? std::string_view("GET") : std::string_view(request.method);
  const std::string path = api_path(request.path);
  const std::optional<std::string_view> origin = header_value(request, "Origin");
  const bool cors = !options_.cors_origins.empty();
  ApiResponse response;
  if (cors && method == "OPTIONS") {
    response = preflight(request);
  } else if (keys_.enabled() && !request.admin && needs_key(method, path) &&
             !keys_.accepts(header_value(request, "Authorization"))) {
    response = error_response(401,
                              header_value(request, "Authorization")
                                  ? "the API key is not valid"
                                  : "this server needs an API key: send the header 'Authorization: Bearer KEY'",
                              "", "invalid_api_key");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
  } else {
    response = route(request, method, path);
  }
  if (cors) {
    if (origin && allowed_origin(options_.cors_origins, *origin))
      response.headers.emplace_back("Access-Control-Allow-Origin", std::string(*origin));
    response.headers.emplace_back("Vary", "Origin");
  }
  return response;
}

// A browser asks before a cross-origin request with a body or an Authorization header; the
// preflight carries no credentials, so it is answered without the key.
ApiResponse OpenAIHandler::preflight(const ApiRequest& request) const {
  ApiResponse response;
  response.status = 204;
  response.content_type = "text/plain";
  std::string headers = "authorization, content-type";
  // The official clients send headers of their own (x-stainless-*): what the browser asks for is
  // allowed when it is a plain list of header names.
  if (const std::optional<std::string_view> asked = header_value(request, "Access-Control-Request-Headers");
      asked && !asked->empty() && asked->size() <= 2048 &&
      std::all_of(asked->begin(), asked->end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ',' || c == ' '; }))
    headers = std::string(*asked);
  response.headers = {{"Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"},
                      {"Access-Control-Allow-Headers", headers},
                      {"Access-Control-Max-Age", "600"}};
  return response;
}

ApiResponse OpenAIHandler::route(const ApiRequest& request, std::string_view method, const std::string& path) const {
  try {
    if (method == "POST" && path == "/v1/chat/completions") return chat(request);
    if (method == "POST" && path == "/v1/completions") return completion(request);
    if (method == "POST" && path == "/v1/responses") return create_response(request, {service_, engine_, waker_, adapters_, options_});
    if (is_ollama_path(path)) return ollama_api(request, {service_, engine_, waker_, adapters_, options_});  // errors in Ollama's shape
    if (method == "POST" && path == "/v1/embeddings")
      return embeddings_response(request, engine_, service_.tokenizer(), adapters_, options_.pooling);
    if (method == "GET" && path == "/v1/models") return models();
    if (constexpr std::string_view kModels = "/v1/models/"; method == "GET" && path.starts_with(kModels))
      return model(path.substr(kModels.size()));
    if (method == "POST" && path == "/v1/adapters") return load_adapter(request);
    if (constexpr std::string_view kAdapters = "/v1/adapters/"; method == "DELETE" && path.starts_with(kAdapters))
      return unload_adapter(path.substr(kAdapters.size()));
    if (method == "GET" && path == "/health") return json_response(200, json{{"status", "ok"}});
    if (method == "GET" && path == "/metrics") {
      ApiResponse response;
      response.content_type = "text/plain; version=0.0.4";
      response.body = metrics_.render();
      return response;
    }
    if (method == "GET" && is_web_chat_path(path)) return web_chat_response(path);  // the web chat page
    return error_response(404, str_cat("no route ", request.method, " ", request.path));
  } catch (const RequestError& e) {
    return error_response(e);
  } catch (const std::exception& e) {
    return error_response(500, std::string("internal error: ") + e.what());
  }
}

ApiResponse OpenAIHandler::chat(const ApiRequest& http) const {
  const ChatRequest request = parse_chat_request(parse_body(http.body));
  // The model before the prompt: a request for a model this server does not have is a 404 whatever
  // its messages (a template that cannot render them, a schema that does not compile).
  const ModelChoice choice = adapters_.resolve(request.model);
  const PreparedJob prepared = service_.prepare(request, http.client_left);
  auto channel = submit(engine_, waker_, prepared, choice.adapter, request.stream ? options_.stream_interval : Clock::duration{});
  const std::string id = new_id("chatcmpl");
  const int64_t created = unix_time();  // one time for every chunk of the completion
  const bool tools = prepared.tools_enabled, logprobs = request.logprobs;
  // The service outlives every answer, also one written after this function has returned.
  const ChatService* service = &service_;
  const auto model = std::make_shared<const std::string>(choice.id);  // the base's id or the adapter's name
  const std::string* fingerprint = &fingerprint_;  // the handler outlives every answer

  if (!request.stream) {
    return answer_when_done(channel, [=](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      std::string text;
      json token_logprobs = json::array();
      for (const TokenStep& step : steps) {
        text += step.text;
        if (logprobs && step.token >= 0) token_logprobs.push_back(service->token_logprob_json(step));
      }
      json message = {{"role", "assistant"}, {"content", text}};
      FinishReason finish = finish_reason_of(summary.stop);
      if (tools) {
        // A call cut off by max_tokens is dropped with its markup (docs/server.md, "Tool calls
        // cut off"); the answer then says "length".
        ToolReply reply = parse_tool_reply(text, finish == FinishReason::length);
        if (!reply.calls.empty() || reply.dropped) {
          message["content"] = reply.content.empty() ? json(nullptr) : json(reply.content);
          if (!reply.calls.empty()) message["tool_calls"] = tool_calls_json(reply.calls, false);
          if (!reply.dropped) finish = FinishReason::tool_calls;
        }
      }
      json choice = {{"index", 0}, {"message", message}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(finish)}};
      if (logprobs) choice["logprobs"] = {{"content", token_logprobs}};
      json body = chat_envelope(*model, id, created, "chat.completion", choice, *fingerprint);
      body["usage"] = usage_json(summary);
      return body;
    });
  }

  const bool usage = request.include_usage;
  auto chunk_json = [id, created, model, fingerprint](json delta, json finish, json lp = nullptr) {
    json choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(lp)}, {"finish_reason", std::move(finish)}};
    return chat_envelope(*model, id, created, "chat.completion.chunk", std::move(choice), *fingerprint);
  };
  const auto content_chunk = std::make_shared<const ChunkTemplate>(chunk_json({{"content", ChunkTemplate::kSlot}}, nullptr));
  return event_stream([=](ClientConnection& out) {
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
    while (channel->take(steps, [&out] { return out.client_present(kSseProbe); })) {
      // The tokens taken together go out as one chunk (their logprobs in its list).
      std::string text;
      json token_logprobs = json::array();
      for (const TokenStep& step : steps) {
        full += step.text;
        std::string piece = step.text;
        if (holding) {
          held += step.text;
          if (may_start_tool_call(held)) piece.clear();
          else piece = std::move(held), holding = false;
        }
        text += piece;
        if (logprobs && step.token >= 0) token_logprobs.push_back(service->token_logprob_json(step));
      }
      if (!token_logprobs.empty())
        chunk({{"content", text}}, nullptr, json{{"content", std::move(token_logprobs)}});
      else if (!text.empty())
        content_chunk->append_event(events, text);
      open = send_events(out, events, open);
      if (!open) channel->cancel();
    }
    const JobSummary summary = channel->summary();
    FinishReason finish = finish_reason_of(summary.stop);
    if (holding && !held.empty()) {
      ToolReply reply = parse_tool_reply(full, finish == FinishReason::length);
      if (!reply.calls.empty() || reply.dropped) {
        if (!reply.content.empty()) chunk({{"content", reply.content}}, nullptr);
        if (!reply.calls.empty()) chunk({{"tool_calls", tool_calls_json(reply.calls, true)}}, nullptr);
        if (!reply.dropped) finish = FinishReason::tool_calls;
      } else {
        chunk({{"content", held}}, nullptr);
      }
    }
    if (!summary.error.empty()) append_event(events, to_text(error_body(summary.error, "server_error")));
    chunk(json::object(), finish_reason_name(finish));
    if (usage) {
      json last = chat_envelope(*model, id, created, "chat.completion.chunk", nullptr, *fingerprint);
      last["choices"] = json::array();
      last["usage"] = usage_json(summary);
      append_event(events, to_text(last));
    }
    append_event(events, "[DONE]");
    send_events(out, events, open);
    return true;
  });
}

ApiResponse OpenAIHandler::model(const std::string& id) const {
  if (id == adapters_.base_id())
    return json_response(200, json{{"id", id}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "orchard"}});
  for (const AdapterEntry& e : adapters_.list())
    if (e.name == id) return json_response(200, adapter_model_json(e, adapters_.base_id()));
  throw RequestError(404, "the model '" + id + "' does not exist (GET /v1/models lists them)", "model", "model_not_found");
}

// The base, then each adapter with its parent (the base's id), as OpenAI's model objects.
ApiResponse OpenAIHandler::models() const {
  json data = json::array();
  data.push_back({{"id", adapters_.base_id()}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "orchard"}});
  for (const AdapterEntry& e : adapters_.list())
    data.push_back(adapter_model_json(e, adapters_.base_id()));
  return json_response(200, json{{"object", "list"}, {"data", std::move(data)}});
}

ApiResponse OpenAIHandler::load_adapter(const ApiRequest& http) const {
  // Refused before the body is looked at: on a server without the option nothing here is asked.
  adapters_.require_updates();
  const json body = parse_body(http.body);
  if (!body.is_object()) throw RequestError(400, "the body must be a JSON object {\"name\", \"path\", \"scale\"}");
  auto text = [&](const char* name) {
    auto it = body.find(name);
    if (it == body.end() || !it->is_string())
      throw RequestError(400, str_cat("'", name, "' must be a string"), name, "invalid_value");
    return it->get<std::string>();
  };
  AdapterSpec spec{.name = text("name"), .path = text("path"), .scale = 1.0f};
  if (auto it = body.find("scale"); it != body.end() && !it->is_null()) {
    if (!it->is_number()) throw RequestError(400, "'scale' must be a number", "scale", "invalid_value");
    const double scale = it->get<double>();
    if (!(std::fabs(scale) <= AdapterRegistry::kMaxScale))
      throw RequestError(400, str_cat("'scale' must be between -", AdapterRegistry::kMaxScale, " and ", AdapterRegistry::kMaxScale),
                         "scale", "invalid_value");
    spec.scale = static_cast<float>(scale);
  }
  return json_response(200, adapter_model_json(adapters_.add(spec), adapters_.base_id()));
}

ApiResponse OpenAIHandler::unload_adapter(const std::string& name) const {
  adapters_.remove(name);
  return json_response(200, json{{"id", name}, {"object", "model"}, {"deleted", true}});
}

ApiResponse OpenAIHandler::completion(const ApiRequest& http) const {
  const CompletionRequest request = parse_completion_request(parse_body(http.body));
  const ModelChoice chosen = adapters_.resolve(request.model);
  // Every prompt is checked before any is submitted; then all go at once, so that the engine
  // decodes them in the same passes. One choice per prompt, index i for prompts[i].
  const std::vector<PreparedJob> prepared = service_.prepare_all(request);
  const size_t n = prepared.size();
  std::vector<std::shared_ptr<RequestChannel>> channels;
  for (const PreparedJob& job : prepared)
    channels.push_back(submit(engine_, waker_, job, chosen.adapter, request.stream ? options_.stream_interval : Clock::duration{}));
  const std::string id = new_id("cmpl");
  const int64_t created = unix_time();  // one time for every chunk of the completion
  const auto model = std::make_shared<const std::string>(chosen.id);  // the base's id or the adapter's name
  const std::string* fingerprint = &fingerprint_;  // the handler outlives every answer
  const ChatService* service = &service_;
  const bool logprobs = request.logprobs >= 0;
  // Per choice: the echoed prompt, and where its logprobs start: with echo, the prompt's own tokens
  // (the first one's logprob null), then the generated ones after the echoed text.
  std::vector<std::string> echoes(n);
  std::vector<ChatService::LogprobCursor> starts(n);
  for (size_t i = 0; i < n; ++i) {
    if (request.echo) echoes[i] = prepared[i].prompt_text;
    starts[i].generated_offset = static_cast<int64_t>(echoes[i].size());
    if (request.echo) starts[i].first_prompt_token = prepared[i].prompt.front();
  }
  auto choice = [](size_t index, const std::string& text, const json& finish, json lp = nullptr) {
    return json{{"text", text}, {"index", index}, {"logprobs", std::move(lp)}, {"finish_reason", finish}};
  };
  // By value: a deferred body is written after this function has returned.
  auto envelope = [id, created, model, fingerprint](json choices) {
    return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", *model},
                {"system_fingerprint", *fingerprint}, {"choices", std::move(choices)}};
  };
  auto finished_choice = [=](size_t i, const std::vector<TokenStep>& steps, const JobSummary& summary) {
    std::string text = echoes[i];
    for (const TokenStep& step : steps) text += step.text;
    json lp = nullptr;
    if (logprobs) {
      ChatService::LogprobCursor cursor = starts[i];
      lp = service->completion_logprobs_json(steps, cursor);
    }
    return choice(i, text, finish_reason_name(finish_reason_of(summary.stop)), std::move(lp));
  };
  // The usage of several prompts is their sum.
  auto add_usage = [](JobSummary& total, const JobSummary& s) {
    total.prompt_tokens += s.prompt_tokens;
    total.completion_tokens += s.completion_tokens;
    total.cached_prompt_tokens += s.cached_prompt_tokens;
  };
  auto cancel_all = [channels] {
    for (const auto& c : channels) c->cancel();
  };
  if (!request.stream && n == 1) {
    return answer_when_done(channels[0], [=](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      json body = envelope(json::array({finished_choice(0, steps, summary)}));
      body["usage"] = usage_json(summary);
      return body;
    });
  }
  if (!request.stream) {
    // Several prompts: the answer waits for all of them while it watches the client.
    ApiResponse response;
    response.content_type = "application/json";
    response.write_body = [=](ClientConnection& out) {
      json choices = json::array();
      JobSummary total;
      for (size_t i = 0; i < n; ++i) {
        std::vector<TokenStep> steps;
        while (!channels[i]->take_all(steps, std::chrono::milliseconds(10)))
          if (!out.client_present(kJsonProbe)) {
            cancel_all();
            return false;
          }
        const JobSummary summary = channels[i]->summary();
        if (!summary.error.empty()) {  // the status is out: only a cut connection tells
          cancel_all();
          return false;
        }
        choices.push_back(finished_choice(i, steps, summary));
        add_usage(total, summary);
      }
      json body = envelope(std::move(choices));
      body["usage"] = usage_json(total);
      return out.write(to_text(body));
    };
    return response;
  }
  const bool usage = request.include_usage;
  std::vector<std::shared_ptr<const ChunkTemplate>> text_chunks;
  for (size_t i = 0; i < n; ++i)
    text_chunks.push_back(std::make_shared<const ChunkTemplate>(envelope(json::array({choice(i, ChunkTemplate::kSlot, nullptr)}))));
  // Streamed: the choices go out one after the other, each chunk with its index. Their jobs run
  // together in the engine; a later choice's tokens wait in its channel until its turn.
  return event_stream([=](ClientConnection& out) {
    std::string events;
    bool open = true;
    JobSummary total;
    for (size_t i = 0; i < n; ++i) {
      const std::shared_ptr<RequestChannel>& channel = channels[i];
      const ChunkTemplate& text_chunk = *text_chunks[i];
      // Goes out with the first token; with logprobs, in the chunk of the prompt's logprobs.
      std::string pending_echo = echoes[i];
      if (!logprobs && !pending_echo.empty()) text_chunk.append_event(events, pending_echo), pending_echo.clear();
      std::vector<TokenStep> steps;
      ChatService::LogprobCursor cursor = starts[i];
      while (channel->take(steps, [&out] { return out.client_present(kSseProbe); })) {
        std::string text = std::move(pending_echo);
        pending_echo.clear();
        for (const TokenStep& step : steps) text += step.text;
        // With logprobs, a chunk carries the tokens taken together, even those whose text is held
        // back (a partial character, a possible stop string).
        json lp = logprobs ? service->completion_logprobs_json(steps, cursor) : json(nullptr);
        if (logprobs && !lp["tokens"].empty())
          append_event(events, to_text(envelope(json::array({choice(i, text, nullptr, std::move(lp))}))));
        else if (!text.empty())
          text_chunk.append_event(events, text);
        open = send_events(out, events, open);
        if (!open) cancel_all();
      }
      const JobSummary summary = channel->summary();
      add_usage(total, summary);
      // The status is out: a job that failed says so in an error event, as the chat stream does.
      if (!summary.error.empty()) append_event(events, to_text(error_body(summary.error, "server_error")));
      append_event(events, to_text(envelope(json::array({choice(i, "", finish_reason_name(finish_reason_of(summary.stop)))}))));
      if (i + 1 < n) {  // the last one's goes out with the end
        open = send_events(out, events, open);
        if (!open) cancel_all();
      }
    }
    if (usage) {
      json last = envelope(json::array());
      last["usage"] = usage_json(total);
      append_event(events, to_text(last));
    }
    append_event(events, "[DONE]");
    send_events(out, events, open);
    return true;
  });
}

}  // namespace orchard::server
