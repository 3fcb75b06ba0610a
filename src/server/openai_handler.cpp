#include "server/openai_handler.h"

#include <cmath>
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
#include "server/responses_api.h"
#include "server/web_chat.h"

namespace orchard::server {
namespace {

using Clock = OpenAIHandler::Clock;

json adapter_model_json(const AdapterEntry& e, const std::string& parent) {
  return json{{"id", e.name}, {"object", "model"}, {"created", e.created}, {"owned_by", "orchard"}, {"parent", parent}};
}

json chat_envelope(const std::string& model, const std::string& id, int64_t created, const char* object, json choice) {
  return json{{"id", id}, {"object", object}, {"created", created}, {"model", model},
              {"system_fingerprint", "orchard"}, {"choices", json::array({std::move(choice)})}};
}

}  // namespace

ApiResponse error_response(int status, const std::string& message, const std::string& param, const std::string& code) {
  return json_response(status, error_body(message, status >= 500 ? "server_error" : "invalid_request_error", param, code));
}

ApiResponse error_response(const RequestError& e) { return error_response(e.status, e.what(), e.param, e.code); }

OpenAIHandler::OpenAIHandler(ChatService& service, Engine& engine, ChannelWaker& waker, const Metrics& metrics,
                             HandlerOptions options, AdapterRegistry* adapters)
    : service_(service),
      engine_(engine),
      waker_(waker),
      metrics_(metrics),
      options_(std::move(options)),
      no_adapters_(adapters ? nullptr : std::make_unique<AdapterRegistry>(nullptr, service.model_name(), false, false)),
      adapters_(adapters ? *adapters : *no_adapters_) {}

OpenAIHandler::~OpenAIHandler() = default;

const std::vector<OpenAIHandler::Route>& OpenAIHandler::routes() {
  static const std::vector<Route> all = {{"POST", "/v1/chat/completions"}, {"POST", "/v1/completions"}, {"POST", "/v1/embeddings"},
                                         {"GET", "/v1/models"}, {"GET", "/health"}, {"GET", "/metrics"},
                                         {"POST", "/v1/adapters"}, {"DELETE", "/v1/adapters/", true},
                                         {"GET", "/"}, {"GET", "/web/", true},
                                         {"POST", "/v1/responses"}, {"POST", "/api/chat"}, {"POST", "/api/generate"}, {"GET", "/api/tags"},
                                         {"GET", "/api/ps"}, {"POST", "/api/show"}, {"GET", "/api/version"}};
  return all;
}

ApiResponse OpenAIHandler::handle(const ApiRequest& request) const {
  const std::string_view method = request.method == "HEAD" ? std::string_view("GET") : std::string_view(request.method);
  const std::string& path = request.path;
  try {
    if (method == "POST" && path == "/v1/chat/completions") return chat(request);
    if (method == "POST" && path == "/v1/completions") return completion(request);
    if (method == "POST" && path == "/v1/embeddings")
      return embeddings_response(request, engine_, service_.tokenizer(), adapters_, options_.pooling);
    if (method == "POST" && path == "/v1/responses") return create_response(request, {service_, engine_, waker_, adapters_, options_});
    if (is_ollama_path(path)) return ollama_api(request, {service_, engine_, waker_, adapters_, options_});  // errors in Ollama's shape
    if (method == "GET" && path == "/v1/models") return models();
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
        ParsedReply reply = parse_tool_calls(text);
        if (!reply.tool_calls.empty()) {
          message["content"] = reply.content.empty() ? json(nullptr) : json(reply.content);
          message["tool_calls"] = tool_calls_json(reply.tool_calls, false);
          finish = FinishReason::tool_calls;
        }
      }
      json choice = {{"index", 0}, {"message", message}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(finish)}};
      if (logprobs) choice["logprobs"] = {{"content", token_logprobs}};
      json body = chat_envelope(*model, id, created, "chat.completion", choice);
      body["usage"] = usage_json(summary);
      return body;
    });
  }

  const bool usage = request.include_usage;
  auto chunk_json = [id, created, model](json delta, json finish, json lp = nullptr) {
    json choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(lp)}, {"finish_reason", std::move(finish)}};
    return chat_envelope(*model, id, created, "chat.completion.chunk", std::move(choice));
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
      json last = chat_envelope(*model, id, created, "chat.completion.chunk", nullptr);
      last["choices"] = json::array();
      last["usage"] = usage_json(summary);
      append_event(events, to_text(last));
    }
    append_event(events, "[DONE]");
    send_events(out, events, open);
    return true;
  });
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
  const PreparedJob prepared = service_.prepare(request);
  auto channel = submit(engine_, waker_, prepared, chosen.adapter, request.stream ? options_.stream_interval : Clock::duration{});
  const std::string id = new_id("cmpl"), echo = request.echo ? request.prompt : "";
  const int64_t created = unix_time();  // one time for every chunk of the completion
  const auto model = std::make_shared<const std::string>(chosen.id);  // the base's id or the adapter's name
  const ChatService* service = &service_;
  const bool logprobs = request.logprobs >= 0;
  // Where the logprobs start: with echo, the prompt's own tokens (the first one's logprob null),
  // then the generated ones after the echoed text.
  ChatService::LogprobCursor start;
  start.generated_offset = static_cast<int64_t>(echo.size());
  if (request.echo) start.first_prompt_token = prepared.prompt.front();
  auto choice = [](const std::string& text, const json& finish, json lp = nullptr) {
    return json{{"text", text}, {"index", 0}, {"logprobs", std::move(lp)}, {"finish_reason", finish}};
  };
  // By value: a deferred body is written after this function has returned.
  auto envelope = [id, created, model](json choices) {
    return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", *model}, {"choices", std::move(choices)}};
  };
  if (!request.stream) {
    return answer_when_done(channel, [=](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      std::string text = echo;
      for (const TokenStep& step : steps) text += step.text;
      json lp = nullptr;
      if (logprobs) {
        ChatService::LogprobCursor cursor = start;
        lp = service->completion_logprobs_json(steps, cursor);
      }
      json body = envelope(json::array({choice(text, finish_reason_name(finish_reason_of(summary.stop)), std::move(lp))}));
      body["usage"] = usage_json(summary);
      return body;
    });
  }
  const bool usage = request.include_usage;
  const auto text_chunk = std::make_shared<const ChunkTemplate>(envelope(json::array({choice(ChunkTemplate::kSlot, nullptr)})));
  return event_stream([=](ClientConnection& out) {
    std::string events;
    // Goes out with the first token; with logprobs, in the chunk of the prompt's logprobs.
    std::string pending_echo = echo;
    if (!logprobs && !echo.empty()) text_chunk->append_event(events, echo), pending_echo.clear();
    bool open = true;
    std::vector<TokenStep> steps;
    ChatService::LogprobCursor cursor = start;
    while (channel->take(steps, [&out] { return out.client_present(kSseProbe); })) {
      std::string text = std::move(pending_echo);
      pending_echo.clear();
      for (const TokenStep& step : steps) text += step.text;
      // With logprobs, a chunk carries the tokens taken together, even those whose text is held
      // back (a partial character, a possible stop string).
      json lp = logprobs ? service->completion_logprobs_json(steps, cursor) : json(nullptr);
      if (logprobs && !lp["tokens"].empty())
        append_event(events, to_text(envelope(json::array({choice(text, nullptr, std::move(lp))}))));
      else if (!text.empty())
        text_chunk->append_event(events, text);
      open = send_events(out, events, open);
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
    send_events(out, events, open);
    return true;
  });
}

}  // namespace orchard::server
