#include "router/endpoint.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "base/error.h"
#include "orchard/engine.h"
#include "router/decision.h"
#include "router/signals.h"
#include "server/chat_service.h"
#include "server/front_stage.h"
#include "server/metrics.h"
#include "server/openai_handler.h"

namespace orchard::router {
namespace {

using server::ApiRequest;
using server::ApiResponse;
using server::json;
using Clock = std::chrono::steady_clock;

// The request's strings that would leave the device, where they sit in its body: each is read
// into RouteRequest::texts and, when the request goes to the cloud, overwritten with its
// outgoing (redacted) form.
std::vector<json*> outgoing_strings(json& body, bool chat) {
  std::vector<json*> out;
  if (!chat) {
    json& prompt = body["prompt"];
    if (prompt.is_string()) out.push_back(&prompt);
    if (prompt.is_array())
      for (json& p : prompt)
        if (p.is_string()) out.push_back(&p);
    return out;
  }
  for (json& m : body["messages"]) {
    json& content = m["content"];
    if (content.is_string()) out.push_back(&content);
    if (content.is_array())
      for (json& part : content)
        if (part.is_object() && part.contains("text") && part["text"].is_string()) out.push_back(&part["text"]);
    if (m.contains("tool_calls") && m["tool_calls"].is_array())
      for (json& call : m["tool_calls"])
        if (call.is_object() && call.contains("function") && call["function"].is_object() &&
            call["function"].contains("arguments") && call["function"]["arguments"].is_string())
          out.push_back(&call["function"]["arguments"]);
  }
  return out;
}

// The answer's text fields that placeholders are restored in: content, reasoning and tool-call
// arguments of a chat message or delta, a completion's text. Token lists of logprobs stay as the
// node gave them (a placeholder spans several tokens; no token is the original value).
template <class F>
void for_each_answer_text(json& body, F&& f) {
  if (!body.is_object() || !body.contains("choices") || !body["choices"].is_array()) return;
  for (json& choice : body["choices"]) {
    if (!choice.is_object()) continue;
    const size_t index = choice.value("index", 0);
    if (choice.contains("text") && choice["text"].is_string()) f(index, "text", choice["text"]);
    for (const char* part : {"message", "delta"}) {
      if (!choice.contains(part) || !choice[part].is_object()) continue;
      json& m = choice[part];
      for (const char* field : {"content", "reasoning_content"})
        if (m.contains(field) && m[field].is_string()) f(index, field, m[field]);
      if (m.contains("tool_calls") && m["tool_calls"].is_array())
        for (json& call : m["tool_calls"])
          if (call.is_object() && call.contains("function") && call["function"].is_object() &&
              call["function"].contains("arguments") && call["function"]["arguments"].is_string())
            f(index, "arguments:" + std::to_string(call.value("index", 0)), call["function"]["arguments"]);
    }
  }
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// An answer written over time into a string (the cascade's local answer, read whole).
class StringConnection final : public server::ClientConnection {
 public:
  bool write(std::string_view bytes) override {
    text.append(bytes);
    return true;
  }
  bool client_present(std::string_view) override { return !server::client_reset(); }
  std::string text;
};

// A whole answer as an event stream of one delta: the cascade's accepted local answer to a
// client that asked for a stream.
std::string as_event_stream(const json& whole, bool chat, bool include_usage) {
  std::string out;
  auto event = [&](const json& chunk) { out += "data: " + chunk.dump() + "\n\n"; };
  json head = {{"id", whole.value("id", "")}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", whole.value("created", 0)}, {"model", whole.value("model", "")}};
  json deltas = json::array(), ends = json::array();
  for (const json& c : whole["choices"]) {
    json d = {{"index", c.value("index", 0)}};
    if (chat) {
      json delta = c["message"];
      if (delta.contains("tool_calls") && delta["tool_calls"].is_array())
        for (size_t i = 0; i < delta["tool_calls"].size(); ++i) delta["tool_calls"][i]["index"] = i;
      d["delta"] = delta;
    } else {
      d["text"] = c["text"];
    }
    d["logprobs"] = c.contains("logprobs") ? c["logprobs"] : json(nullptr);
    d["finish_reason"] = nullptr;
    deltas.push_back(d);
    json e = {{"index", c.value("index", 0)}};
    if (chat) e["delta"] = json::object();
    else e["text"] = "";
    e["logprobs"] = nullptr;
    e["finish_reason"] = c.contains("finish_reason") ? c["finish_reason"] : json("stop");
    ends.push_back(e);
  }
  json chunk = head;
  chunk["choices"] = deltas;
  event(chunk);
  chunk["choices"] = ends;
  event(chunk);
  if (include_usage && whole.contains("usage")) {
    chunk["choices"] = json::array();
    chunk["usage"] = whole["usage"];
    event(chunk);
  }
  out += "data: [DONE]\n\n";
  return out;
}

// The answer's steps as the cascade judges them, from the logprobs of a whole answer.
std::vector<TokenStep> steps_of(const json& choice, bool chat) {
  std::vector<TokenStep> steps;
  if (!choice.contains("logprobs") || !choice["logprobs"].is_object()) return steps;
  const json& lp = choice["logprobs"];
  if (chat) {
    if (!lp.contains("content") || !lp["content"].is_array()) return steps;
    for (const json& t : lp["content"]) {
      TokenStep s;
      s.token = 0;
      s.chosen = {0, t.value("logprob", 0.0f)};
      if (t.contains("top_logprobs"))
        for (const json& top : t["top_logprobs"]) s.top.push_back({0, top.value("logprob", 0.0f)});
      steps.push_back(std::move(s));
    }
    return steps;
  }
  if (!lp.contains("token_logprobs") || !lp["token_logprobs"].is_array()) return steps;
  const json& chosen = lp["token_logprobs"];
  const json tops = lp.contains("top_logprobs") && lp["top_logprobs"].is_array() ? lp["top_logprobs"] : json::array();
  for (size_t i = 0; i < chosen.size(); ++i) {
    if (!chosen[i].is_number()) continue;  // an echoed first token has none
    TokenStep s;
    s.token = 0;
    s.chosen = {0, chosen[i].get<float>()};
    if (i < tops.size() && tops[i].is_object()) {
      for (const auto& [token, value] : tops[i].items()) s.top.push_back({0, value.get<float>()});
      std::sort(s.top.begin(), s.top.end(), [](const TokenLogprob& a, const TokenLogprob& b) { return a.logprob > b.logprob; });
      if (s.top.size() > size_t(kCascadeTopLogprobs)) s.top.resize(size_t(kCascadeTopLogprobs));
    }
    steps.push_back(std::move(s));
  }
  return steps;
}

// One request's call to the cloud, run on its own thread so that the answering thread can give
// up on it at the deadline: what arrived, guarded by `mutex`. Shared between the two threads; the
// caller sets `abandoned` when it stops listening, and the cloud thread then cancels at the next
// piece (or ends with its timeouts: a dead relay cannot hold it longer than the client's).
struct CloudCall {
  std::mutex mutex;
  std::condition_variable changed;
  bool head = false, done = false;
  int status = 0;
  std::string content_type = "application/json";
  std::deque<std::string> pieces;
  std::string error;  // the CloudError, when done without an answer
  std::atomic<bool> abandoned{false};
};

}  // namespace

struct DeviceRouter::Impl : std::enable_shared_from_this<DeviceRouter::Impl> {
  explicit Impl(EndpointOptions o) : options(std::move(o)) {
    if (!options.cloud.relay.empty()) cloud = std::make_shared<cloud::CloudClient>(options.cloud);
    if (!options.audit_log.empty()) {
      audit = std::fopen(options.audit_log.c_str(), "a");
      if (!audit) fail("router: cannot open the audit log ", options.audit_log);
    }
  }
  ~Impl() {
    if (audit) std::fclose(audit);
  }

  EndpointOptions options;
  std::shared_ptr<cloud::CloudClient> cloud;
  std::FILE* audit = nullptr;
  std::mutex audit_mutex;
  std::optional<server::ServedModel> served;
  // Prompts are counted against no context (the device's is checked by decide()), so that a
  // prompt too long for the device still gets its token count.
  std::unique_ptr<server::ChatService> counter;

  // The circuit breaker.
  std::mutex breaker_mutex;
  int64_t failures_in_a_row = 0;
  Clock::time_point paused_until{};

  bool cloud_paused() {
    std::lock_guard<std::mutex> lock(breaker_mutex);
    return Clock::now() < paused_until;
  }
  void cloud_result(bool ok) {
    std::lock_guard<std::mutex> lock(breaker_mutex);
    if (ok) {
      failures_in_a_row = 0;
      return;
    }
    if (++failures_in_a_row >= options.config.cloud_failures_to_pause) {
      paused_until = Clock::now() + std::chrono::seconds(options.config.cloud_pause_s);
      failures_in_a_row = 0;
    }
  }

  void record(const std::string& route, const Decision& d, const std::vector<std::string>& reasons, int status) {
    for (const std::string& r : reasons)
      served->metrics.count("orchard_router_requests_total", "Requests by where they were answered and why.",
                            {{"route", route}, {"reason", r}});
    if (!audit) return;
    json pii = json::array();
    for (const RoutedPii& p : d.pii) {
      json e = {{"type", pii_type_name(p.match.type)}, {"action", pii_action_name(p.action)}};
      if (p.match.type == PiiType::custom) e["name"] = p.match.name;
      pii.push_back(std::move(e));
    }
    const json line = {{"time", utc_now()}, {"route", route},     {"reasons", reasons},
                       {"privacy_class", privacy_class_name(d.privacy)},  {"status", status},
                       {"pii", pii},        {"redacted", d.redaction.placeholders.size()}};
    std::lock_guard<std::mutex> lock(audit_mutex);
    std::fputs((line.dump() + "\n").c_str(), audit);
    std::fflush(audit);
  }

  static void mark(ApiResponse& r, const std::string& route, const std::vector<std::string>& reasons) {
    r.headers.emplace_back("x-orchard-route", route);
    r.headers.emplace_back("x-orchard-route-reason", join(reasons));
  }

  // The device's answer through the server's handler.
  ApiResponse local(const httplib::Request& req, const std::string& body) {
    return served->handler.handle(server::api_request(req, body));
  }

  // Starts the cloud call; returns once its head arrived, it failed, or the deadline passed
  // (nullptr then: the caller falls back to the device).
  std::shared_ptr<CloudCall> call_cloud(const std::string& path, const std::string& body, std::string& why) {
    if (!cloud) {
      why = "no-cloud-relay";
      return nullptr;
    }
    if (cloud_paused()) {
      why = "cloud-paused";
      return nullptr;
    }
    auto call = std::make_shared<CloudCall>();
    std::thread([self = shared_from_this(), call, path, body] {
      try {
        self->cloud->send(
            path, body,
            [&](int status, const std::vector<cloud::HttpField>& headers) {
              std::lock_guard<std::mutex> lock(call->mutex);
              call->head = true;
              call->status = status;
              for (const cloud::HttpField& f : headers)
                if (f.name == "content-type") call->content_type = f.value;
              call->changed.notify_all();
            },
            [&](std::string_view piece) {
              if (call->abandoned) return false;
              std::lock_guard<std::mutex> lock(call->mutex);
              call->pieces.emplace_back(piece);
              call->changed.notify_all();
              return true;
            });
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(call->mutex);
        call->error = e.what();
      }
      std::lock_guard<std::mutex> lock(call->mutex);
      call->done = true;
      call->changed.notify_all();
    }).detach();
    std::unique_lock<std::mutex> lock(call->mutex);
    const auto deadline = Clock::now() + std::chrono::milliseconds(options.config.cloud_deadline_ms);
    if (!call->changed.wait_until(lock, deadline, [&] { return call->head || call->done; })) {
      call->abandoned = true;
      why = "cloud-deadline";
      lock.unlock();
      cloud_result(false);
      return nullptr;
    }
    if (!call->head || call->status >= 500) {
      call->abandoned = true;
      why = call->head ? "cloud-error" : "cloud-unreachable";
      lock.unlock();
      cloud_result(false);
      return nullptr;
    }
    lock.unlock();
    cloud_result(true);
    return call;
  }

  // A cloud answer's whole body once the call is done; nullopt when it broke off.
  static std::optional<std::string> whole_answer(CloudCall& call) {
    std::unique_lock<std::mutex> lock(call.mutex);
    call.changed.wait(lock, [&] { return call.done; });
    if (!call.error.empty()) return std::nullopt;
    std::string body;
    for (const std::string& p : call.pieces) body += p;
    return body;
  }

  ApiResponse streamed_cloud_answer(std::shared_ptr<CloudCall> call, std::shared_ptr<Decision> d,
                                    std::vector<std::string> reasons) {
    ApiResponse r;
    r.status = call->status;
    r.content_type = call->content_type;
    mark(r, "cloud", reasons);
    r.write_body = [call, d](server::ClientConnection& connection) {
      std::map<std::string, std::unique_ptr<RestoreStream>> streams;  // per choice and field
      std::string pending;  // bytes of an event not yet complete
      auto restore_event = [&](const std::string& event) -> std::string {
        const std::string prefix = "data: ";
        // The node's keep-alive comments (its transport's probes) mean nothing past this hop.
        if (event.find_first_not_of(" \r\n") == std::string::npos || event.starts_with(":")) return "";
        if (!event.starts_with(prefix) || event.substr(prefix.size()).starts_with("[DONE]")) return event + "\n\n";
        json chunk;
        try {
          chunk = json::parse(event.substr(prefix.size()));
        } catch (const std::exception&) {
          return event + "\n\n";
        }
        std::vector<size_t> finished;
        if (chunk.contains("choices") && chunk["choices"].is_array())
          for (const json& c : chunk["choices"])
            if (c.is_object() && c.contains("finish_reason") && !c["finish_reason"].is_null())
              finished.push_back(c.value("index", 0));
        for_each_answer_text(chunk, [&](size_t index, const std::string& field, json& text) {
          auto& s = streams[std::to_string(index) + "/" + field];
          if (!s) s = std::make_unique<RestoreStream>(d->redaction);
          std::string restored = s->feed(text.get<std::string>());
          if (std::find(finished.begin(), finished.end(), index) != finished.end()) restored += s->finish();
          text = restored;
        });
        return prefix + chunk.dump() + "\n\n";
      };
      while (true) {
        std::string piece;
        bool done;
        {
          std::unique_lock<std::mutex> lock(call->mutex);
          call->changed.wait(lock, [&] { return call->done || !call->pieces.empty(); });
          if (!call->pieces.empty()) {
            piece = std::move(call->pieces.front());
            call->pieces.pop_front();
          }
          done = call->done && call->pieces.empty();
        }
        pending += piece;
        std::string out;
        for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
          out += restore_event(pending.substr(0, end));
          pending.erase(0, end + 2);
        }
        if (done && !pending.empty()) out += restore_event(pending);  // a last event without its blank line
        if (!out.empty() && !connection.write(out)) {
          call->abandoned = true;
          return false;
        }
        if (done) break;
      }
      // A stream cut by the cloud is cut for the client too: the only way left to tell it.
      std::lock_guard<std::mutex> lock(call->mutex);
      return call->error.empty();
    };
    return r;
  }

  // The answer from the cloud, or, when the cloud cannot give one, the device's: `local_answer`
  // when the cascade has it already, else a new local answer to `device_body`.
  ApiResponse to_cloud(const httplib::Request& req, const std::string& path, const std::string& cloud_body,
                       const std::string& device_body, std::shared_ptr<Decision> d, std::vector<std::string> reasons,
                       bool stream, const std::function<ApiResponse()>& local_answer) {
    std::string why;
    if (std::shared_ptr<CloudCall> call = call_cloud(path, cloud_body, why)) {
      if (stream) {
        ApiResponse r = streamed_cloud_answer(call, d, reasons);
        record("cloud", *d, reasons, r.status);
        return r;
      }
      if (std::optional<std::string> whole = whole_answer(*call)) {
        ApiResponse r;
        r.status = call->status;
        r.content_type = call->content_type;
        try {
          json answer = json::parse(*whole);
          for_each_answer_text(answer, [&](size_t, const std::string&, json& t) { t = restore(t.get<std::string>(), d->redaction); });
          r.body = answer.dump();
        } catch (const json::exception&) {
          r.body = restore(*whole, d->redaction);
        }
        mark(r, "cloud", reasons);
        record("cloud", *d, reasons, r.status);
        return r;
      }
      why = "cloud-broke-off";
      cloud_result(false);
    }
    reasons.push_back("cloud-unavailable");
    reasons.push_back(why);
    ApiResponse r = local_answer ? local_answer() : local(req, device_body);
    mark(r, "device", reasons);
    record("device", *d, reasons, r.status);
    return r;
  }

  ApiResponse answer(const httplib::Request& req, const std::string& text, bool chat) {
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    auto d = std::make_shared<Decision>();
    // A body the server's handler would refuse is refused by it, on the device.
    auto refused_by_device = [&](const std::string& body) {
      ApiResponse r = local(req, body);
      mark(r, "device", {"invalid-request"});
      record("device", *d, {"invalid-request"}, r.status);
      return r;
    };
    json body;
    try {
      body = server::parse_body(text);
    } catch (const server::RequestError&) {
      return refused_by_device(text);
    }
    if (!body.is_object()) return refused_by_device(text);

    std::optional<std::string> privacy;
    if (body.contains("privacy_class")) {
      if (!body["privacy_class"].is_string())
        return server::error_response(400, "privacy_class must be a string", "privacy_class");
      privacy = body["privacy_class"].get<std::string>();
      body.erase("privacy_class");  // the server does not know it, and the cloud need not
    }
    if (req.has_header(kPrivacyHeader)) privacy = req.get_header_value(kPrivacyHeader);
    if (privacy) {
      try {
        parse_privacy_class(*privacy);
      } catch (const Error& e) {
        return server::error_response(400, e.what(), "privacy_class", "unknown_privacy_class");
      }
    }

    RouteRequest request;
    request.privacy_class = privacy;
    bool stream = false, include_usage = false;
    int client_logprobs = -1;  // what the client asked for (top count), for the cascade's answer
    server::PreparedJob prompt;
    try {
      if (chat) {
        server::ChatRequest c = server::parse_chat_request(body);
        request.tools = !c.tools.is_null() && !c.tools.empty();
        request.json_schema = c.response_format != "text";
        request.max_tokens = c.max_tokens.value_or(-1);
        stream = c.stream;
        include_usage = c.include_usage;
        client_logprobs = c.logprobs ? c.top_logprobs : -1;
        // The prompt's tokens only: no schema compiled here (a forced tool call's or a response
        // format's constrains the answer, not the prompt).
        c.response_format = "text";
        c.response_schema = nullptr;
        if (c.tool_choice != server::ToolChoiceMode::none) c.tool_choice = server::ToolChoiceMode::auto_;
        prompt = counter->prepare(c);
      } else {
        server::CompletionRequest c = server::parse_completion_request(body);
        request.max_tokens = c.max_tokens.value_or(-1);
        stream = c.stream;
        include_usage = c.include_usage;
        client_logprobs = c.logprobs;
        prompt = counter->prepare(c);
      }
    } catch (const server::RequestError&) {
      return refused_by_device(body.dump());
    }
    std::vector<json*> strings = outgoing_strings(body, chat);
    for (json* s : strings) request.texts.push_back(s->get<std::string>());
    request.model = body.value("model", "");
    request.prompt_tokens = int64_t(prompt.prompt.size());
    request.device_context = served->engine.n_ctx();

    const RouterConfig& config = options.config;
    const bool pinned_by_class = (privacy ? parse_privacy_class(*privacy) : config.default_class) == PrivacyClass::device_only;
    std::optional<PreSignals> signals;
    if (config.mode == RouterMode::pre && !pinned_by_class && request.prompt_tokens + 1 <= served->engine.n_ctx())
      signals = compute_pre_signals(served->engine, prompt.prompt);
    try {
      *d = decide(request, config, signals ? &*signals : nullptr);
    } catch (const Error&) {
      // The custom patterns could not scan the text (too long for them): it cannot be cleared,
      // so it stays on the device.
      d->privacy = PrivacyClass::device_only;
      ApiResponse r = local(req, body.dump());
      mark(r, "device", {"pii-scan-failed"});
      record("device", *d, {"pii-scan-failed"}, r.status);
      return r;
    }
    const std::string device_body = body.dump();

    if (d->route == Route::refuse) {
      ApiResponse r = server::error_response(400, d->message, "", "device_cannot_answer");
      mark(r, "device", d->reasons);
      record("device", *d, d->reasons, r.status);
      return r;
    }
    for (size_t i = 0; i < strings.size() && i < d->outgoing_texts.size(); ++i) *strings[i] = d->outgoing_texts[i];
    if (d->outgoing_model) body["model"] = *d->outgoing_model;
    else body.erase("model");
    const std::string cloud_body = body.dump();
    if (d->route == Route::cloud) return to_cloud(req, path, cloud_body, device_body, d, d->reasons, stream, {});
    if (!d->cascade_pending) {
      ApiResponse r = local(req, device_body);
      mark(r, "device", d->reasons);
      record("device", *d, d->reasons, r.status);
      return r;
    }

    // Cascade: the device's whole answer with its tokens' log-probabilities, then the judgement.
    json local_body = json::parse(device_body);
    local_body["stream"] = false;
    local_body.erase("stream_options");
    if (chat) {
      local_body["logprobs"] = true;
      local_body["top_logprobs"] = std::max(client_logprobs, kCascadeTopLogprobs);
    } else {
      local_body["logprobs"] = std::max(client_logprobs, kCascadeTopLogprobs);
    }
    ApiResponse first = local(req, local_body.dump());
    std::string whole = first.body;
    if (first.write_body) {
      StringConnection capture;
      if (!first.write_body(capture)) return server::error_response(500, "the device's answer failed");
      whole = std::move(capture.text);
    }
    std::vector<std::string> reasons = d->reasons;
    std::erase(reasons, std::string("cascade-pending"));
    json answer;
    try {
      answer = json::parse(whole);
    } catch (const json::exception&) {
      answer = nullptr;
    }
    if (first.status != 200 || !answer.is_object() || !answer.contains("choices") || answer["choices"].empty()) {
      first.body = whole;
      first.write_body = nullptr;
      mark(first, "device", reasons);
      record("device", *d, reasons, first.status);
      return first;
    }
    const AnswerSignals judged = answer_signals(steps_of(answer["choices"][0], chat));
    const bool accepted = accept_local_answer(judged, config);
    // The local answer as the client asked for it: its logprobs as asked (none, or its count).
    auto local_answer = [this, answer, chat, stream, include_usage, client_logprobs]() mutable {
      for (json& c : answer["choices"]) {
        if (client_logprobs < 0) {
          c["logprobs"] = nullptr;
        } else if (chat && c["logprobs"].is_object() && c["logprobs"].contains("content")) {
          for (json& t : c["logprobs"]["content"])
            if (t.contains("top_logprobs") && t["top_logprobs"].size() > size_t(client_logprobs))
              t["top_logprobs"].erase(t["top_logprobs"].begin() + client_logprobs, t["top_logprobs"].end());
        }
      }
      ApiResponse r;
      r.status = 200;
      if (stream) {
        r.content_type = "text/event-stream";
        r.body = as_event_stream(answer, chat, include_usage);
      } else {
        r.content_type = "application/json";
        r.body = answer.dump();
      }
      return r;
    };
    if (accepted) {
      reasons.push_back("cascade-accepted");
      ApiResponse r = local_answer();
      mark(r, "device", reasons);
      record("device", *d, reasons, r.status);
      return r;
    }
    reasons.push_back("low-confidence-cascade");
    return to_cloud(req, path, cloud_body, device_body, d, reasons, stream, local_answer);
  }
};

DeviceRouter::DeviceRouter(EndpointOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

DeviceRouter::~DeviceRouter() = default;

void DeviceRouter::install(server::FrontServer& http, const server::ServedModel& served) {
  impl_->served.emplace(served);
  impl_->counter = std::make_unique<server::ChatService>(served.engine.shared_tokenizer(), served.service.model_name(),
                                                         int64_t{1} << 40);
  const size_t max_body = served.options.max_body_bytes;
  for (const bool chat : {true, false}) {
    http.Post(chat ? "/v1/chat/completions" : "/v1/completions",
              [impl = impl_, chat, max_body](const httplib::Request& req, httplib::Response& res,
                                             const httplib::ContentReader& reader) {
                ApiResponse response;
                try {
                  response = impl->answer(req, server::read_body(req, res, reader, max_body), chat);
                } catch (const server::RequestError& e) {
                  response = server::error_response(e);
                } catch (const std::exception& e) {
                  response = server::error_response(500, std::string("internal error: ") + e.what());
                }
                server::send(std::move(response), res);
              });
  }
  server::install_openai_routes(http, served);
}

}  // namespace orchard::router
