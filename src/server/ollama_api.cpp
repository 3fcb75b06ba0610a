#include "server/ollama_api.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "orchard/engine.h"
#include "orchard/model.h"
#include "runtime/tool_calls.h"
#include "server/adapter_registry.h"
#include "server/chat_service.h"
#include "server/request_channel.h"

namespace orchard::server {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void bad(const std::string& message) { throw RequestError(400, message); }

const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(std::string("'") + name + "' must be a boolean");
  return v->get<bool>();
}

ApiResponse ollama_error(int status, const std::string& message) { return json_response(status, json{{"error", message}}); }

// Ollama's times: RFC 3339 in UTC with nanoseconds, as Go writes time.Time.
std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto since = t.time_since_epoch();
  const std::time_t seconds = std::chrono::duration_cast<std::chrono::seconds>(since).count();
  const long long nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since).count() % 1000000000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char date[32], out[48];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(out, sizeof out, "%s.%09lldZ", date, nanos < 0 ? 0 : nanos);
  return out;
}
std::string now_rfc3339() { return rfc3339(std::chrono::system_clock::now()); }

int64_t nanos(Clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

// A model name as Ollama's clients send it: the ":latest" tag they add to a bare name means the
// name itself (a tag that is an adapter's name chooses that adapter, as "BASE:NAME" does).
std::optional<std::string> model_name(const json& body) {
  const json* v = field(body, "model");
  if (!v) v = field(body, "name");  // older clients of /api/show
  if (!v) return std::nullopt;
  if (!v->is_string()) bad("'model' must be a string");
  std::string name = v->get<std::string>();
  if (constexpr std::string_view kLatest = ":latest"; name.ends_with(kLatest)) name.resize(name.size() - kLatest.size());
  return name;
}

// --- what /api/tags and /api/show say of the model --------------------------------------------

struct ModelFacts {
  std::string format, family, parameter_size, quantization_level, digest, modified_at;
  uint64_t size = 0;
};

// 123.45M / 7.6B, as Ollama writes parameter counts.
std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.1fB", n / 1e9);
  else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.2fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

ModelFacts facts_of(const Model& model) {
  ModelFacts f;
  const ModelConfig& config = model.config();
  f.format = config.source_format;
  f.family = config.architecture;
  f.parameter_size = human_count(model.parameter_count());
  f.size = model.file_bytes();
  // The quantization is the type most of the matrices have.
  std::map<std::string, int> types;
  // The digest identifies the weights as loaded (path, size, time and tensor table), by FNV-1a in
  // four lanes; hashing every byte of a file of gigabytes for a listing would take seconds.
  uint64_t lanes[4] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9e3779b97f4a7c15ull, 0x632be59bd9b4e019ull};
  auto mix = [&](std::string_view text) {
    for (int l = 0; l < 4; ++l)
      for (unsigned char c : text) lanes[l] = (lanes[l] ^ (c + l)) * 0x100000001b3ull;
  };
  mix(model.path());
  mix(std::to_string(f.size));
  for (const TensorSummary& t : model.tensors()) {
    mix(t.name);
    mix(t.type);
    for (int64_t d : t.shape) mix(std::to_string(d));
    if (t.shape.size() >= 2) ++types[t.type];
  }
  int most = 0;
  for (const auto& [type, count] : types)
    if (count > most) most = count, f.quantization_level = type;
  struct stat st{};
  std::chrono::system_clock::time_point modified{};
  if (::stat(model.path().c_str(), &st) == 0) {
    modified = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    mix(std::to_string(st.st_mtim.tv_sec));
  }
  f.modified_at = rfc3339(modified);
  char hex[80];
  std::snprintf(hex, sizeof hex, "%016llx%016llx%016llx%016llx", static_cast<unsigned long long>(lanes[0]),
                static_cast<unsigned long long>(lanes[1]), static_cast<unsigned long long>(lanes[2]),
                static_cast<unsigned long long>(lanes[3]));
  f.digest = hex;
  return f;
}

json details_json(const ModelFacts& f, const std::string& parent) {
  return json{{"parent_model", parent}, {"format", f.format}, {"family", f.family}, {"families", json::array({f.family})},
              {"parameter_size", f.parameter_size}, {"quantization_level", f.quantization_level}};
}

// The base, then each adapter (its parent_model the base), as Ollama lists models.
json model_list(const HandlerContext& c, bool running) {
  const ModelFacts f = facts_of(c.engine.model());
  const std::string& base = c.adapters.base_id();
  auto entry = [&](const std::string& name, const std::string& parent) {
    json e = {{"name", name}, {"model", name}};
    if (!running) e["modified_at"] = f.modified_at;
    e["size"] = f.size;
    e["digest"] = f.digest;
    e["details"] = details_json(f, parent);
    if (running) e["expires_at"] = "2318-01-01T00:00:00Z", e["size_vram"] = 0;  // loaded for the server's lifetime, on the CPU
    return e;
  };
  json models = json::array({entry(base, "")});
  for (const AdapterEntry& a : c.adapters.list()) models.push_back(entry(a.name, base));
  return json{{"models", std::move(models)}};
}

ApiResponse show(const ApiRequest& http, const HandlerContext& c) {
  const json body = parse_body(http.body);
  const std::optional<std::string> name = model_name(body);
  if (!name) bad("'model' is required");
  const ModelChoice choice = c.adapters.resolve(name);
  const Model& model = c.engine.model();
  const ModelConfig& config = model.config();
  const ModelFacts f = facts_of(model);
  const Tokenizer& tokenizer = c.service.tokenizer();
  const std::string& chat_template = tokenizer.chat_template();
  std::string parameters;
  for (int32_t id : tokenizer.eos_ids()) parameters += "stop \"" + tokenizer.token_text(id) + "\"\n";
  std::string modelfile = "# Modelfile generated by orchard\nFROM " + model.path() + "\n";
  if (choice.adapter) modelfile += "ADAPTER " + choice.id + "\n";
  if (!chat_template.empty()) modelfile += "TEMPLATE \"\"\"" + chat_template + "\"\"\"\n";
  modelfile += parameters;
  const std::string& a = config.architecture;
  json info = {{"general.architecture", a},
               {"general.parameter_count", model.parameter_count()},
               {a + ".context_length", config.context_length},
               {a + ".embedding_length", config.dim},
               {a + ".block_count", config.n_layers},
               {a + ".feed_forward_length", config.ffn_dim},
               {a + ".attention.head_count", config.n_heads},
               {a + ".attention.head_count_kv", config.n_kv_heads},
               {a + ".attention.layer_norm_rms_epsilon", config.rms_norm_eps},
               {a + ".rope.freq_base", config.rope_theta},
               {a + ".vocab_size", config.n_vocab}};
  json capabilities = json::array({"completion"});
  if (chat_template.find("tools") != std::string::npos) capabilities.push_back("tools");
  return json_response(200, json{{"license", ""},
                                 {"modelfile", modelfile},
                                 {"parameters", parameters},
                                 {"template", chat_template},
                                 {"details", details_json(f, choice.adapter ? c.adapters.base_id() : "")},
                                 {"model_info", std::move(info)},
                                 {"capabilities", std::move(capabilities)},
                                 {"modified_at", f.modified_at}});
}

// --- requests into jobs -----------------------------------------------------------------------

// Ollama's option names beside chat's. Ollama's documented defaults apply when they are not
// given: temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1 over the last 64 tokens
// (repeat_last_n, the engine's default too), min_p 0 (chat's too).
constexpr std::pair<const char*, const char*> kOptions[] = {
    {"temperature", "temperature"}, {"top_p", "top_p"}, {"top_k", "top_k"}, {"min_p", "min_p"},
    {"seed", "seed"}, {"presence_penalty", "presence_penalty"}, {"frequency_penalty", "frequency_penalty"},
    {"repeat_penalty", "repetition_penalty"}, {"repeat_last_n", "repeat_last_n"}, {"stop", "stop"}};

void add_options(const json& body, json& chat) {
  chat["temperature"] = 0.8;
  chat["top_k"] = 40;
  chat["top_p"] = 0.9;
  chat["repetition_penalty"] = 1.1;
  const json* options = field(body, "options");
  if (!options) return;
  if (!options->is_object()) bad("'options' must be an object");
  for (const auto& [ollama, name] : kOptions)
    if (const json* v = field(*options, ollama)) chat[name] = *v;
  if (const json* n = field(*options, "num_predict")) {
    // -1: until the end of the text, -2: until the context is full; both are the context's room here.
    if (!n->is_number_integer() || (n->get<int64_t>() < 1 && n->get<int64_t>() != -1 && n->get<int64_t>() != -2))
      bad("'options.num_predict' must be a positive integer, -1 or -2");
    if (n->get<int64_t>() > 0) chat["max_tokens"] = std::min<int64_t>(n->get<int64_t>(), int64_t{1} << 30);
  }
}

// `format`: "json" or a JSON schema, as chat's response_format.
void add_format(const json& body, json& chat) {
  const json* format = field(body, "format");
  if (!format || (format->is_string() && format->get<std::string>().empty())) return;
  if (format->is_string() && format->get<std::string>() == "json") chat["response_format"] = {{"type", "json_object"}};
  else if (format->is_object()) chat["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "format"}, {"schema", *format}}}};
  else bad("'format' must be \"json\" or a JSON schema object");
}

// The chat path's errors told with Ollama's field names (its error objects have only a message).
RequestError ollama_names(const RequestError& e) {
  std::string message = e.what();
  std::string param = e.param;
  for (const auto& [ollama, name] : kOptions)
    if (param == name) param = std::string("options.") + ollama;
  if (param == "response_format" || param.starts_with("response_format.")) param = "format";
  if (param == "max_tokens") param = "options.num_predict";
  if (!param.empty() && message.find(param) == std::string::npos) message = param + ": " + message;
  return RequestError(e.status, message, param, e.code);
}

// Ollama's messages as chat's: tool calls gain chat's "type", a tool result's "tool_name" becomes
// the message's "name"; images are refused (the models served read text).
json chat_messages(const json& messages) {
  json out = json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(where + " must be an object");
    json copy = json::object();
    if (const json* role = field(m, "role")) copy["role"] = *role;
    copy["content"] = field(m, "content") ? m["content"] : json("");
    if (const json* images = field(m, "images"); images && !(images->is_array() && images->empty()))
      bad(where + ".images: this server's model reads no images");
    if (const json* name = field(m, "tool_name")) copy["name"] = *name;
    if (const json* calls = field(m, "tool_calls")) {
      if (!calls->is_array()) bad(where + ".tool_calls must be an array");
      copy["tool_calls"] = json::array();
      for (const json& call : *calls) {
        if (!call.is_object() || !field(call, "function")) bad(where + ".tool_calls entries need a 'function'");
        copy["tool_calls"].push_back({{"type", "function"}, {"function", call["function"]}});
      }
    }
    out.push_back(std::move(copy));
  }
  return out;
}

template <class Request>
Request parsed(const json& chat, Request (*parse)(const json&)) {
  try {
    return parse(chat);
  } catch (const RequestError& e) {
    throw ollama_names(e);
  }
}

}  // namespace

OllamaRequest parse_ollama_chat(const json& body) {
  OllamaRequest r;
  r.stream = boolean(body, "stream", true);  // Ollama streams unless told not to
  r.model = model_name(body);
  const json* messages = field(body, "messages");
  if (messages && !messages->is_array()) bad("'messages' must be an array");
  json chat = {{"messages", messages ? chat_messages(*messages) : json::array()}};
  if (const json* tools = field(body, "tools")) chat["tools"] = *tools;
  add_format(body, chat);
  add_options(body, chat);
  if (!chat["messages"].empty()) r.chat = parsed<ChatRequest>(chat, parse_chat_request);
  return r;
}

OllamaRequest parse_ollama_generate(const json& body) {
  OllamaRequest r;
  r.stream = boolean(body, "stream", true);
  r.model = model_name(body);
  auto text = [&](const char* name) {
    const json* v = field(body, name);
    if (v && !v->is_string()) bad(std::string("'") + name + "' must be a string");
    return v ? v->get<std::string>() : std::string();
  };
  const std::string prompt = text("prompt"), system = text("system");
  if (!text("suffix").empty()) bad("'suffix' is not supported: the model is not prompted to fill in the middle");
  if (!text("template").empty()) bad("'template' is not supported: the model's own chat template renders the prompt (or use 'raw')");
  if (const json* context = field(body, "context"); context && !(context->is_array() && context->empty()))
    bad("'context' is not supported: this server keeps no conversation state; send the conversation to /api/chat");
  if (const json* images = field(body, "images"); images && !(images->is_array() && images->empty()))
    bad("'images': this server's model reads no images");
  const bool raw = boolean(body, "raw", false);
  json request = json::object();
  add_options(body, request);
  if (prompt.empty()) return r;
  if (raw) {
    if (field(body, "format")) bad("'format' is not supported with 'raw': the constraint needs the chat template");
    request["prompt"] = prompt;
    // Until the context is full unless num_predict says otherwise (the completions API's default is 16).
    if (!request.contains("max_tokens")) request["max_tokens"] = int64_t{1} << 30;
    r.completion = parsed<CompletionRequest>(request, parse_completion_request);
    return r;
  }
  json messages = json::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  request["messages"] = std::move(messages);
  add_format(body, request);
  r.chat = parsed<ChatRequest>(request, parse_chat_request);
  return r;
}

namespace {

struct Prepared {
  PreparedJob job;
  ModelChoice choice;
  bool stream = true;
  bool load_only = false;  // nothing to generate: Ollama's "load the model" request
};

// The job of a parsed request, for the model (or adapter) it names.
Prepared prepare(const OllamaRequest& r, const ApiRequest& http, const HandlerContext& c) {
  Prepared p;
  p.stream = r.stream;
  p.choice = c.adapters.resolve(r.model);
  p.load_only = !r.chat && !r.completion;
  try {
    if (r.chat) p.job = c.service.prepare(*r.chat, http.client_left);
    else if (r.completion) p.job = c.service.prepare(*r.completion);
  } catch (const RequestError& e) {
    throw ollama_names(e);
  }
  return p;
}

// --- answers ----------------------------------------------------------------------------------

enum class Api { chat, generate };

// When the request came, its job was submitted, and its first token came.
struct Times {
  Clock::time_point received, submitted, first;
};

// One line of the stream (or the whole answer): the text in chat's message or generate's response.
json chunk(Api api, const std::string& model, const std::string& text) {
  json out = {{"model", model}, {"created_at", now_rfc3339()}};
  if (api == Api::chat) out["message"] = {{"role", "assistant"}, {"content", text}};
  else out["response"] = text;
  out["done"] = false;
  return out;
}

// The last line: done, why, and the statistics in nanoseconds.
json final_chunk(Api api, const std::string& model, const std::string& text, const char* reason, const JobSummary& s,
                 const Times& t) {
  const Clock::time_point end = Clock::now();
  json out = chunk(api, model, text);
  out["done"] = true;
  out["done_reason"] = reason;
  out["total_duration"] = nanos(end - t.received);
  out["load_duration"] = nanos(t.submitted - t.received);  // the template, tokens and any schema: no model loads here
  out["prompt_eval_count"] = s.prompt_tokens;
  out["prompt_eval_duration"] = nanos(t.first - t.submitted);
  out["eval_count"] = s.completion_tokens;
  out["eval_duration"] = nanos(end - t.first);
  return out;
}

// Ollama's tool calls: the arguments as an object.
json tool_calls_ollama(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const ToolCall& call : calls) {
    json arguments = json::parse(call.arguments_json, nullptr, false);
    if (arguments.is_discarded() || !arguments.is_object()) arguments = json::object();
    out.push_back({{"function", {{"name", call.name}, {"arguments", std::move(arguments)}}}});
  }
  return out;
}

const char* done_reason(StopReason stop) { return finish_reason_of(stop) == FinishReason::length ? "length" : "stop"; }

// A reply with tools, split into its text and calls. Cut by the token limit inside a call's block
// (or its opening tag, "<tool_ca"), the unfinished call is dropped: none of its markup is content.
ParsedReply reply_with_tools(const std::string& full, StopReason stop) {
  ParsedReply reply = parse_tool_calls(full);
  if (finish_reason_of(stop) != FinishReason::length) return reply;
  std::string& text = reply.content;
  if (size_t open = text.rfind(kToolCallOpen); open != std::string::npos && text.find(kToolCallClose, open) == std::string::npos)
    text.erase(open);
  else if (size_t lt = text.rfind('<'); lt != std::string::npos && kToolCallOpen.starts_with(std::string_view(text).substr(lt)))
    text.erase(lt);
  return reply;
}

// Writes the gathered lines in one write and empties them; false once the client is gone. With
// nothing to write the connection is looked at (a space: JSON ignores it before the next line).
bool send_lines(ClientConnection& out, std::string& lines, bool open) {
  const bool ok = open && (lines.empty() ? out.client_present(kJsonProbe) : out.write(lines));
  lines.clear();
  return ok;
}

void append_line(std::string& lines, const json& j) {
  lines += to_text(j);
  lines += '\n';
}

ApiResponse ndjson(std::function<bool(ClientConnection&)> write_body) {
  ApiResponse response;
  response.content_type = "application/x-ndjson";
  response.write_body = std::move(write_body);
  return response;
}

ApiResponse generate(const Prepared& p, const HandlerContext& c, Api api, Times t) {
  const auto model = std::make_shared<const std::string>(p.choice.id);
  if (p.load_only) {
    json done = chunk(api, *model, "");
    done["done"] = true;
    done["done_reason"] = "load";
    if (!p.stream) return json_response(200, done);
    return ndjson([done](ClientConnection& out) {
      std::string line;
      append_line(line, done);
      return out.write(line);
    });
  }
  auto channel = submit(c.engine, c.waker, p.job, p.choice.adapter, p.stream ? c.options.stream_interval : Clock::duration{});
  t.submitted = Clock::now();
  const bool tools = p.job.tools_enabled;

  if (!p.stream) {
    channel->wait_started();
    t.first = Clock::now();
    return answer_when_done(channel, [=](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      std::string text;
      for (const TokenStep& step : steps) text += step.text;
      std::vector<ToolCall> calls;
      if (tools) {
        ParsedReply reply = reply_with_tools(text, summary.stop);
        text = std::move(reply.content), calls = std::move(reply.tool_calls);
      }
      json body = final_chunk(api, *model, text, calls.empty() ? done_reason(summary.stop) : "stop", summary, t);
      if (!calls.empty()) body["message"]["tool_calls"] = tool_calls_ollama(calls);
      return body;
    });
  }

  return ndjson([=](ClientConnection& out) mutable {
    std::string lines;
    bool open = true, started = false;
    ToolCallHold hold(tools);
    std::vector<TokenStep> steps;
    while (channel->take(steps, [&out] { return out.client_present(kJsonProbe); })) {
      if (!started) started = true, t.first = Clock::now();
      const std::string text = hold.release(steps);
      if (!text.empty()) append_line(lines, chunk(api, *model, text));
      open = send_lines(out, lines, open);
      if (!open) channel->cancel();
    }
    if (!started) t.first = Clock::now();
    const JobSummary summary = channel->summary();
    const char* reason = done_reason(summary.stop);
    if (hold.holding && !hold.held.empty()) {
      ParsedReply reply = reply_with_tools(hold.full, summary.stop);
      if (!reply.tool_calls.empty()) {
        json calls = chunk(api, *model, reply.content);
        calls["message"]["tool_calls"] = tool_calls_ollama(reply.tool_calls);
        append_line(lines, calls);
        reason = "stop";
      } else if (!reply.content.empty()) {
        append_line(lines, chunk(api, *model, reply.content));
      }
    }
    // The status is out: a failed job is told in the stream, as Ollama does.
    if (!summary.error.empty()) append_line(lines, json{{"error", summary.error}});
    else append_line(lines, final_chunk(api, *model, "", reason, summary, t));
    send_lines(out, lines, open);
    return true;
  });
}

}  // namespace

bool is_ollama_path(std::string_view path) { return path.starts_with("/api/"); }

ApiResponse ollama_api(const ApiRequest& request, const HandlerContext& c) {
  const std::string_view method = request.method == "HEAD" ? std::string_view("GET") : std::string_view(request.method);
  const std::string& path = request.path;
  try {
    Times t{.received = Clock::now()};
    if (method == "POST" && (path == "/api/chat" || path == "/api/generate")) {
      const json body = parse_body(request.body);
      const Api api = path == "/api/chat" ? Api::chat : Api::generate;
      const OllamaRequest parsed = api == Api::chat ? parse_ollama_chat(body) : parse_ollama_generate(body);
      return generate(prepare(parsed, request, c), c, api, t);
    }
    if (method == "GET" && path == "/api/tags") return json_response(200, model_list(c, false));
    if (method == "GET" && path == "/api/ps") return json_response(200, model_list(c, true));
    if (method == "POST" && path == "/api/show") return show(request, c);
    if (method == "GET" && path == "/api/version") return json_response(200, json{{"version", kOllamaApiVersion}});
    return ollama_error(404, "no route " + request.method + " " + path +
                                 " (this server answers /api/chat, /api/generate, /api/tags, /api/ps, /api/show and /api/version; it serves one model and pulls, pushes, creates and deletes none)");
  } catch (const RequestError& e) {
    return ollama_error(e.status, e.what());
  } catch (const std::exception& e) {
    return ollama_error(500, std::string("internal error: ") + e.what());
  }
}

}  // namespace orchard::server
