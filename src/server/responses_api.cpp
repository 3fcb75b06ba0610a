#include "server/responses_api.h"

#include <cstring>
#include <map>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "orchard/engine.h"
#include "runtime/tool_calls.h"
#include "server/adapter_registry.h"
#include "server/chat_service.h"
#include "server/request_channel.h"

namespace orchard::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message, const char* code = "invalid_value") {
  throw RequestError(400, message, param, code);
}

const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// The item's "type" when it is a string; "" when absent (json::value would throw on a number).
std::string type_of(const json& obj) {
  auto it = obj.find("type");
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string string_field(const json& obj, const char* name, const std::string& where) {
  const json* v = field(obj, name);
  if (!v || !v->is_string()) bad(where + "." + name, where + "." + name + " must be a string");
  return v->get<std::string>();
}

// OpenAI's ids are PREFIX_<alphanumerics>; new_id writes PREFIX-<hex>.
std::string api_id(const char* prefix) {
  std::string id = new_id(prefix);
  id[std::strlen(prefix)] = '_';
  return id;
}

// A message's content: a string, or text parts ({type: input_text | output_text, text}) joined.
std::string content_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(where, where + " must be a string or an array of content parts");
  std::string text;
  for (size_t j = 0; j < content.size(); ++j) {
    const json& part = content[j];
    const std::string at = where + "[" + std::to_string(j) + "]";
    if (!part.is_object()) bad(at, at + " must be a content part object");
    const std::string type = type_of(part);
    if (type != "input_text" && type != "output_text")
      bad(at, at + " is a '" + type + "' part; only input_text and output_text parts are supported", "unsupported_value");
    text += string_field(part, "text", at);
  }
  return text;
}

// `input` (and `instructions`) as chat messages. Function calls join the assistant message before
// them (one message may carry text and several calls, as chat's does); their outputs become tool
// messages.
json input_messages(const json& body) {
  json messages = json::array();
  if (const json* instructions = field(body, "instructions")) {
    if (!instructions->is_string()) bad("instructions", "'instructions' must be a string");
    messages.push_back({{"role", "system"}, {"content", *instructions}});
  }
  const json* input = field(body, "input");
  if (!input) bad("input", "'input' is required");
  if (input->is_string()) {
    messages.push_back({{"role", "user"}, {"content", *input}});
    return messages;
  }
  if (!input->is_array() || input->empty()) bad("input", "'input' must be a string or a non-empty array of items");
  std::map<std::string, std::string> call_names;  // call_id -> function name, for the tool messages
  bool last_is_assistant = false;                 // the last message came from an assistant item
  for (size_t i = 0; i < input->size(); ++i) {
    const json& item = (*input)[i];
    const std::string where = "input[" + std::to_string(i) + "]";
    if (!item.is_object()) bad(where, where + " must be an item object");
    std::string type = type_of(item);
    if (type.empty() && item.contains("type")) bad(where + ".type", where + ".type must be a string");
    if (type.empty() && item.contains("role")) type = "message";  // EasyInputMessage: {role, content}
    if (type == "message") {
      const std::string role = string_field(item, "role", where);
      if (role != "user" && role != "assistant" && role != "system" && role != "developer")
        bad(where + ".role", where + ".role '" + role + "' is not one of user, assistant, system, developer");
      const json* content = field(item, "content");
      if (!content) bad(where + ".content", where + ".content is required");
      messages.push_back({{"role", role}, {"content", content_text(*content, where + ".content")}});
      last_is_assistant = role == "assistant";
    } else if (type == "function_call") {
      const std::string name = string_field(item, "name", where);
      const std::string arguments = string_field(item, "arguments", where);
      const std::string call_id = string_field(item, "call_id", where);
      call_names[call_id] = name;
      json call = {{"id", call_id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", arguments}}}};
      if (!last_is_assistant) messages.push_back({{"role", "assistant"}, {"content", ""}});
      json& message = messages.back();
      if (!message.contains("tool_calls")) message["tool_calls"] = json::array();
      message["tool_calls"].push_back(std::move(call));
      last_is_assistant = true;
    } else if (type == "function_call_output") {
      const json* output = field(item, "output");
      if (!output) bad(where + ".output", where + ".output is required");
      json message = {{"role", "tool"}, {"content", content_text(*output, where + ".output")}};
      if (const json* call_id = field(item, "call_id")) {
        if (!call_id->is_string()) bad(where + ".call_id", where + ".call_id must be a string");
        message["tool_call_id"] = *call_id;
        if (auto it = call_names.find(call_id->get<std::string>()); it != call_names.end()) message["name"] = it->second;
      }
      messages.push_back(std::move(message));
      last_is_assistant = false;
    } else if (type == "item_reference") {
      bad(where, where + " is an item reference; this server stores no items: send the item itself", "unsupported_value");
    } else {
      bad(where + ".type", where + " has type '" + type + "'; the supported input items are message, function_call and function_call_output",
          "unsupported_value");
    }
  }
  return messages;
}

// Responses tools ({type: "function", name, description, parameters, strict}) as chat's.
json chat_tools(const json& tools) {
  if (!tools.is_array()) bad("tools", "'tools' must be an array");
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) bad(where, where + " must be a tool object");
    if (const std::string type = type_of(t); type != "function")
      bad(where + ".type", where + " has type '" + type + "'; only function tools are supported", "unsupported_value");
    json function = {{"name", string_field(t, "name", where)}};
    if (const json* d = field(t, "description")) {
      if (!d->is_string()) bad(where + ".description", where + ".description must be a string");
      function["description"] = *d;
    }
    if (const json* p = field(t, "parameters")) {
      if (!p->is_object()) bad(where + ".parameters", where + ".parameters must be a JSON Schema object");
      function["parameters"] = *p;
    }
    if (const json* s = field(t, "strict"); s && !s->is_boolean()) bad(where + ".strict", where + ".strict must be a boolean");
    out.push_back({{"type", "function"}, {"function", std::move(function)}});
  }
  return out;
}

json chat_tool_choice(const json& choice) {
  if (choice.is_string()) {
    const std::string c = choice.get<std::string>();
    if (c != "auto" && c != "none" && c != "required") bad("tool_choice", "'tool_choice' must be auto, none, required or {\"type\": \"function\", \"name\": ...}");
    return choice;
  }
  if (!choice.is_object() || type_of(choice) != "function" || !field(choice, "name") || !choice["name"].is_string())
    bad("tool_choice", "'tool_choice' must be auto, none, required or {\"type\": \"function\", \"name\": ...}");
  return {{"type", "function"}, {"function", {{"name", choice["name"]}}}};
}

// text.format as chat's response_format.
json chat_response_format(const json& format) {
  if (!format.is_object()) bad("text.format", "'text.format' must be an object with a 'type'");
  const std::string type = type_of(format);
  if (type == "text" || type == "json_object") return {{"type", type}};
  if (type != "json_schema") bad("text.format.type", "'text.format.type' must be text, json_object or json_schema");
  const json* schema = field(format, "schema");
  if (!schema || !schema->is_object()) bad("text.format.schema", "'text.format.schema' must be a JSON Schema object");
  json js = {{"name", "response"}, {"schema", *schema}};
  if (const json* name = field(format, "name")) {
    if (!name->is_string()) bad("text.format.name", "'text.format.name' must be a string");
    js["name"] = *name;
  }
  if (const json* strict = field(format, "strict"); strict && !strict->is_boolean())
    bad("text.format.strict", "'text.format.strict' must be a boolean");
  return {{"type", "json_schema"}, {"json_schema", std::move(js)}};
}

// Errors of the chat path named as the Responses API names the fields.
RequestError renamed(const RequestError& e) {
  static const std::pair<std::string_view, std::string_view> kNames[] = {
      {"messages", "input"}, {"response_format", "text.format"}, {"max_tokens", "max_output_tokens"}};
  std::string param = e.param;
  for (const auto& [chat, responses] : kNames)
    if (param.starts_with(chat) && (param.size() == chat.size() || param[chat.size()] == '.' || param[chat.size()] == '['))
      param = std::string(responses) + param.substr(chat.size());
  return RequestError(e.status, e.what(), param, e.code);
}

// What every snapshot of one response repeats.
struct ResponseShape {
  std::string id, model;
  int64_t created_at = 0;
  ResponsesRequest request;
};

json response_json(const ResponseShape& s, const char* status, json output, json usage, json incomplete = nullptr,
                   json error = nullptr) {
  const ResponsesRequest& r = s.request;
  return json{{"id", s.id},
              {"object", "response"},
              {"created_at", s.created_at},
              {"status", status},
              {"background", false},
              {"error", std::move(error)},
              {"incomplete_details", std::move(incomplete)},
              {"instructions", r.instructions},
              {"max_output_tokens", r.max_output_tokens},
              {"metadata", r.metadata.is_null() ? json::object() : r.metadata},
              {"model", s.model},
              {"output", std::move(output)},
              {"parallel_tool_calls", true},
              {"previous_response_id", nullptr},
              {"store", false},
              {"temperature", r.temperature.is_null() ? json(1.0) : r.temperature},
              {"text", {{"format", r.text_format}}},
              {"tool_choice", r.tool_choice},
              {"tools", r.tools},
              {"top_p", r.top_p.is_null() ? json(1.0) : r.top_p},
              {"truncation", "disabled"},
              {"usage", std::move(usage)}};
}

json usage_of(const JobSummary& s) {
  return json{{"input_tokens", s.prompt_tokens},
              {"input_tokens_details", {{"cached_tokens", s.cached_prompt_tokens}}},
              {"output_tokens", s.completion_tokens},
              {"output_tokens_details", {{"reasoning_tokens", 0}}},
              {"total_tokens", s.prompt_tokens + s.completion_tokens}};
}

json text_part(const std::string& text) { return json{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}}; }

json message_item(const std::string& id, const char* status, json content) {
  return json{{"type", "message"}, {"id", id}, {"status", status}, {"role", "assistant"}, {"content", std::move(content)}};
}

json function_call_item(const std::string& id, const std::string& call_id, const ToolCall& call, const char* status,
                        const std::string& arguments) {
  return json{{"type", "function_call"}, {"id", id}, {"call_id", call_id}, {"name", call.name}, {"arguments", arguments},
              {"status", status}};
}

// The reply split into its text and its tool calls. A reply cut by the token limit in the middle of
// a call keeps none of its markup: the unfinished call is dropped (the response is incomplete).
struct Reply {
  std::string text;
  std::vector<ToolCall> calls;
};
Reply reply_of(const std::string& full, bool tools, bool cut) {
  if (!tools) return {full, {}};
  ParsedReply parsed = parse_tool_calls(full);
  Reply reply{std::move(parsed.content), std::move(parsed.tool_calls)};
  if (!cut) return reply;
  // Cut inside a call's block, or inside its opening tag itself ("<tool_ca").
  if (size_t open = reply.text.rfind(kToolCallOpen); open != std::string::npos && reply.text.find(kToolCallClose, open) == std::string::npos)
    reply.text.erase(open);
  else if (size_t lt = reply.text.rfind('<'); lt != std::string::npos && kToolCallOpen.starts_with(std::string_view(reply.text).substr(lt)))
    reply.text.erase(lt);
  return reply;
}

// The Responses API's server-sent events: "event: TYPE" and data that repeats the type with the
// event's number in the stream.
class EventWriter {
 public:
  void emit(const char* type, json fields) {
    json data = {{"type", type}};
    for (auto& [key, value] : fields.items()) data[key] = std::move(value);
    data["sequence_number"] = sequence_++;
    events_ += "event: ";
    events_ += type;
    events_ += "\ndata: ";
    events_ += to_text(data);
    events_ += "\n\n";
  }
  std::string& events() { return events_; }

 private:
  std::string events_;
  int64_t sequence_ = 0;
};

}  // namespace

ResponsesRequest parse_responses_request(const json& body) {
  // Refused before anything else: they ask the server to keep or recall state.
  if (field(body, "previous_response_id"))
    bad("previous_response_id", "'previous_response_id' is not supported: this server stores no responses; send the whole conversation in 'input'",
        "unsupported_parameter");
  if (field(body, "conversation"))
    bad("conversation", "'conversation' is not supported: this server stores no conversations; send the whole conversation in 'input'",
        "unsupported_parameter");
  if (const json* store = field(body, "store"); store && !(store->is_boolean() && !store->get<bool>()))
    bad("store", "'store' must be false: this server stores no responses", "unsupported_parameter");
  if (const json* background = field(body, "background"); background && !(background->is_boolean() && !background->get<bool>()))
    bad("background", "'background' must be false: this server stores no responses to fetch later", "unsupported_parameter");

  ResponsesRequest r;
  json chat = {{"messages", input_messages(body)}};
  // Passed as chat's fields of the same name (seed is Orchard's, as in chat).
  for (const char* name : {"model", "temperature", "top_p", "seed", "stream"})
    if (const json* v = field(body, name)) chat[name] = *v;
  if (const json* v = field(body, "max_output_tokens")) {
    if (!v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > (int64_t{1} << 30))
      bad("max_output_tokens", "'max_output_tokens' must be an integer between 1 and 1073741824");
    chat["max_tokens"] = *v;
    r.max_output_tokens = *v;
  }
  r.tools = json::array();
  if (const json* tools = field(body, "tools")) {
    chat["tools"] = chat_tools(*tools);
    r.tools = *tools;
  }
  r.tool_choice = "auto";
  if (const json* choice = field(body, "tool_choice")) {
    chat["tool_choice"] = chat_tool_choice(*choice);
    r.tool_choice = *choice;
  }
  r.text_format = {{"type", "text"}};
  if (const json* text = field(body, "text")) {
    if (!text->is_object()) bad("text", "'text' must be an object");
    if (const json* format = field(*text, "format")) {
      chat["response_format"] = chat_response_format(*format);
      r.text_format = *format;
    }
  }
  if (const json* metadata = field(body, "metadata")) {
    if (!metadata->is_object()) bad("metadata", "'metadata' must be an object");
    r.metadata = *metadata;
  }
  if (const json* v = field(body, "instructions")) r.instructions = *v;
  if (const json* v = field(body, "temperature")) r.temperature = *v;
  if (const json* v = field(body, "top_p")) r.top_p = *v;
  try {
    r.chat = parse_chat_request(chat);
  } catch (const RequestError& e) {
    throw renamed(e);
  }
  return r;
}

ApiResponse create_response(const ApiRequest& http, const HandlerContext& context) {
  auto shape = std::make_shared<ResponseShape>();
  shape->request = parse_responses_request(parse_body(http.body));
  const ChatRequest& request = shape->request.chat;
  const ModelChoice choice = context.adapters.resolve(request.model);
  PreparedJob prepared;
  try {
    prepared = context.service.prepare(request, http.client_left);
  } catch (const RequestError& e) {
    throw renamed(e);
  }
  auto channel = submit(context.engine, context.waker, prepared, choice.adapter,
                        request.stream ? context.options.stream_interval : std::chrono::steady_clock::duration{});
  shape->id = api_id("resp");
  shape->model = choice.id;
  shape->created_at = unix_time();
  const bool tools = prepared.tools_enabled;

  if (!request.stream) {
    return answer_when_done(channel, [shape, tools](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      std::string full;
      for (const TokenStep& step : steps) full += step.text;
      const bool cut = finish_reason_of(summary.stop) == FinishReason::length;
      const char* status = cut ? "incomplete" : "completed";
      const Reply reply = reply_of(full, tools, cut);
      json output = json::array();
      if (!reply.text.empty() || reply.calls.empty())
        output.push_back(message_item(api_id("msg"), status, json::array({text_part(reply.text)})));
      for (const ToolCall& call : reply.calls)
        output.push_back(function_call_item(api_id("fc"), api_id("call"), call, "completed", call.arguments_json));
      return response_json(*shape, status, std::move(output), usage_of(summary),
                           cut ? json{{"reason", "max_output_tokens"}} : json(nullptr));
    });
  }

  return event_stream([shape, channel, tools](ClientConnection& out) {
    EventWriter w;
    const json started = response_json(*shape, "in_progress", json::array(), nullptr);
    w.emit("response.created", {{"response", started}});
    w.emit("response.in_progress", {{"response", started}});
    bool open = send_events(out, w.events(), true);
    if (!open) channel->cancel();

    int output_index = 0;
    int message_index = -1;  // the message item's, once opened
    std::string message_id, message_text;
    auto open_message = [&] {
      message_index = output_index++;
      message_id = api_id("msg");
      w.emit("response.output_item.added", {{"output_index", message_index}, {"item", message_item(message_id, "in_progress", json::array())}});
      w.emit("response.content_part.added",
             {{"item_id", message_id}, {"output_index", message_index}, {"content_index", 0}, {"part", text_part("")}});
    };
    auto text_delta = [&](const std::string& delta) {
      if (delta.empty()) return;
      if (message_index < 0) open_message();
      message_text += delta;
      w.emit("response.output_text.delta", {{"item_id", message_id}, {"output_index", message_index}, {"content_index", 0},
                                             {"delta", delta}, {"logprobs", json::array()}});
    };

    ToolCallHold hold(tools);
    std::vector<TokenStep> steps;
    while (channel->take(steps, [&out] { return out.client_present(kSseProbe); })) {
      const std::string text = hold.release(steps);
      text_delta(text);
      open = send_events(out, w.events(), open);
      if (!open) channel->cancel();
    }
    const JobSummary summary = channel->summary();
    const bool cut = finish_reason_of(summary.stop) == FinishReason::length;
    const char* status = cut ? "incomplete" : "completed";
    // Text released as it came stays text; a reply held from its start is parsed for calls.
    const Reply reply = hold.holding ? reply_of(hold.full, tools, cut) : Reply{message_text, {}};
    json output = json::array();
    if (hold.holding) text_delta(reply.text);
    if (message_index >= 0 || reply.calls.empty()) {
      if (message_index < 0) open_message();
      w.emit("response.output_text.done", {{"item_id", message_id}, {"output_index", message_index}, {"content_index", 0},
                                           {"text", message_text}, {"logprobs", json::array()}});
      w.emit("response.content_part.done",
             {{"item_id", message_id}, {"output_index", message_index}, {"content_index", 0}, {"part", text_part(message_text)}});
      json item = message_item(message_id, status, json::array({text_part(message_text)}));
      w.emit("response.output_item.done", {{"output_index", message_index}, {"item", item}});
      output.push_back(std::move(item));
    }
    for (const ToolCall& call : reply.calls) {
      const int index = output_index++;
      const std::string id = api_id("fc"), call_id = api_id("call");
      w.emit("response.output_item.added", {{"output_index", index}, {"item", function_call_item(id, call_id, call, "in_progress", "")}});
      w.emit("response.function_call_arguments.delta", {{"item_id", id}, {"output_index", index}, {"delta", call.arguments_json}});
      w.emit("response.function_call_arguments.done", {{"item_id", id}, {"output_index", index}, {"arguments", call.arguments_json}});
      json item = function_call_item(id, call_id, call, "completed", call.arguments_json);
      w.emit("response.output_item.done", {{"output_index", index}, {"item", item}});
      output.push_back(std::move(item));
    }
    if (!summary.error.empty()) {
      // The status is out: the failure is told in the stream, as OpenAI's.
      const json error = {{"code", "server_error"}, {"message", summary.error}};
      w.emit("error", {{"code", "server_error"}, {"message", summary.error}, {"param", nullptr}});
      w.emit("response.failed", {{"response", response_json(*shape, "failed", std::move(output), usage_of(summary), nullptr, error)}});
    } else if (cut) {
      w.emit("response.incomplete", {{"response", response_json(*shape, status, std::move(output), usage_of(summary),
                                                                json{{"reason", "max_output_tokens"}})}});
    } else {
      w.emit("response.completed", {{"response", response_json(*shape, status, std::move(output), usage_of(summary))}});
    }
    send_events(out, w.events(), open);
    return true;
  });
}

}  // namespace orchard::server
