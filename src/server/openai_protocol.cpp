#include "server/openai_protocol.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <string_view>

#include "base/json_depth.h"

namespace orchard::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw RequestError(400, message, param, "invalid_value");
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number_in(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) bad(name, std::string("'") + name + "' must be a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return x;
}

std::optional<int64_t> integer_in(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad(name, std::string("'") + name + "' must be an integer");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return x;
}

// Whether `obj` is an object whose "type" is the string `type`. (json::value("type", "") would
// throw a type_error, a 500, when a client sends a "type" that is not a string.)
bool has_type(const json& obj, std::string_view type) {
  if (!obj.is_object()) return false;
  auto it = obj.find("type");
  return it != obj.end() && it->is_string() && it->get_ref<const std::string&>() == type;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(name, std::string("'") + name + "' must be a boolean");
  return v->get<bool>();
}

std::vector<std::string> stop_strings(const json& body) {
  const json* v = field(body, "stop");
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array() || v->size() > 4) bad("stop", "'stop' must be a string or an array of at most 4 strings");
  std::vector<std::string> out;
  for (const json& s : *v) {
    if (!s.is_string()) bad("stop", "'stop' must contain only strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

// OpenAI defaults: temperature 1, top_p 1, no top-k, no min-p.
SamplingParams sampling_from(const json& body) {
  SamplingParams p;
  p.temperature = static_cast<float>(number_in(body, "temperature", 0.0, 2.0, 1.0));
  p.top_p = static_cast<float>(number_in(body, "top_p", 0.0, 1.0, 1.0));
  if (p.top_p <= 0.0f) p.top_p = 1e-6f;
  p.top_k = static_cast<int32_t>(integer_in(body, "top_k", 0, 1 << 20).value_or(0));
  p.min_p = static_cast<float>(number_in(body, "min_p", 0.0, 1.0, 0.0));
  p.presence_penalty = static_cast<float>(number_in(body, "presence_penalty", -2.0, 2.0, 0.0));
  p.frequency_penalty = static_cast<float>(number_in(body, "frequency_penalty", -2.0, 2.0, 0.0));
  p.repeat_penalty = static_cast<float>(number_in(body, "repetition_penalty", 0.01, 10.0, 1.0));
  // llama.cpp's and Ollama's: the recent tokens the repeat penalty looks at; 0 none, -1 all.
  const int64_t last_n = integer_in(body, "repeat_last_n", -1, 1 << 30).value_or(p.repeat_last_n);
  p.repeat_last_n = last_n < 0 ? std::numeric_limits<int32_t>::max() : static_cast<int32_t>(last_n);
  const std::optional<int64_t> seed = integer_in(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  // Unseeded requests still differ from each other.
  static std::atomic<uint64_t> unseeded{0x9e3779b97f4a7c15ull};
  p.seed = seed ? static_cast<uint64_t>(*seed) : unseeded.fetch_add(0x632be59bd9b4e019ull);
  return p;
}

// The model a request names (AdapterRegistry::resolve decides what it chooses); absent or null:
// none named.
std::optional<std::string> model_from(const json& body) {
  const json* v = field(body, "model");
  if (!v) return std::nullopt;
  if (!v->is_string()) bad("model", "'model' must be a string");
  return v->get<std::string>();
}

std::optional<int64_t> max_tokens_from(const json& body) {
  std::optional<int64_t> a = integer_in(body, "max_completion_tokens", 1, int64_t{1} << 30);
  std::optional<int64_t> b = integer_in(body, "max_tokens", 1, int64_t{1} << 30);
  return a ? a : b;
}

void check_n(const json& body) {
  if (std::optional<int64_t> n = integer_in(body, "n", 1, 128); n && *n != 1)
    throw RequestError(400, "only n = 1 is supported", "n", "unsupported_value");
}

void check_message(const json& m, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  if (!m.is_object()) bad(where, where + " must be an object");
  const json* role = field(m, "role");
  if (!role || !role->is_string()) bad(where + ".role", where + ".role must be a string");
  const std::string r = role->get<std::string>();
  if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool")
    bad(where + ".role", where + ".role '" + r + "' is not one of system, developer, user, assistant, tool");
  const json* content = field(m, "content");
  if (content && !content->is_string() && !content->is_array())
    bad(where + ".content", where + ".content must be a string or an array of content parts");
  if (content && content->is_array()) {
    for (const json& part : *content)
      if (!has_type(part, "text") || !part.contains("text") || !part["text"].is_string())
        bad(where + ".content", where + ".content parts must be {\"type\": \"text\", \"text\": ...} (only text is supported)");
  }
  if (!content && r != "assistant") bad(where + ".content", where + ".content is required");
  if (const json* calls = field(m, "tool_calls")) {
    if (!calls->is_array()) bad(where + ".tool_calls", where + ".tool_calls must be an array");
    for (const json& c : *calls)
      if (!c.is_object() || !c.contains("function") || !c["function"].is_object() ||
          !c["function"].contains("name") || !c["function"]["name"].is_string())
        bad(where + ".tool_calls", where + ".tool_calls entries need function.name");
  }
}

// Content parts become one string: templates expect text.
json normalized_messages(const json& messages) {
  json out = json::array();
  for (const json& m : messages) {
    json copy = m;
    if (copy.contains("content") && copy["content"].is_array()) {
      std::string text;
      for (const json& part : copy["content"]) text += part["text"].get<std::string>();
      copy["content"] = text;
    }
    if (copy.contains("content") && copy["content"].is_null()) copy["content"] = "";
    // Templates index arguments as a mapping; the API sends them as a JSON string.
    if (copy.contains("tool_calls")) {
      for (json& call : copy["tool_calls"]) {
        json& fn = call["function"];
        if (fn.contains("arguments") && fn["arguments"].is_string()) {
          const std::string& text = fn["arguments"].get_ref<const std::string&>();
          if (json_too_deep_at(text)) bad("messages", "a tool call's arguments nest JSON more than " + std::to_string(kMaxJsonDepth) + " levels deep");
          json parsed = json::parse(text, nullptr, false);
          if (!parsed.is_discarded()) fn["arguments"] = std::move(parsed);
        }
      }
    }
    out.push_back(std::move(copy));
  }
  return out;
}

// A token id as the API sends it: an integer that fits int32 (whether the vocabulary holds it is
// the tokenizer's to say: ChatService).
int32_t token_id(const json& v, const std::string& where) {
  if (!v.is_number_integer()) bad("prompt", where + " must be a token id (an integer)");
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id > std::numeric_limits<int32_t>::max())
    bad("prompt", where + " holds token id " + std::to_string(id) + ", which is outside the vocabulary");
  return static_cast<int32_t>(id);
}

// "prompt": a string, an array of strings, an array of token ids, or an array of arrays of
// token ids; at most kMaxPrompts prompts.
constexpr size_t kMaxPrompts = 128;
std::vector<CompletionPrompt> completion_prompts(const json& prompt) {
  const char* shape = "'prompt' must be a string, an array of strings, an array of token ids or an array of arrays of token ids";
  if (prompt.is_string()) return {CompletionPrompt{.text = prompt.get<std::string>()}};
  if (!prompt.is_array() || prompt.empty()) bad("prompt", shape);
  std::vector<CompletionPrompt> out;
  if (prompt[0].is_number()) {  // one prompt of token ids
    CompletionPrompt p{.is_tokens = true};
    for (size_t i = 0; i < prompt.size(); ++i) p.tokens.push_back(token_id(prompt[i], "prompt[" + std::to_string(i) + "]"));
    out.push_back(std::move(p));
    return out;
  }
  if (prompt.size() > kMaxPrompts) bad("prompt", "'prompt' holds more than " + std::to_string(kMaxPrompts) + " prompts");
  for (size_t i = 0; i < prompt.size(); ++i) {
    const json& p = prompt[i];
    const std::string where = "prompt[" + std::to_string(i) + "]";
    if (p.is_string()) {
      out.push_back(CompletionPrompt{.text = p.get<std::string>()});
    } else if (p.is_array()) {
      CompletionPrompt tokens{.is_tokens = true};
      for (size_t j = 0; j < p.size(); ++j) tokens.tokens.push_back(token_id(p[j], where + "[" + std::to_string(j) + "]"));
      out.push_back(std::move(tokens));
    } else {
      bad("prompt", shape + std::string(" (") + where + " is neither)");
    }
  }
  return out;
}

}  // namespace

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) error["param"] = param;
  if (!code.empty()) error["code"] = code;
  return json{{"error", error}};
}

json parse_body(const std::string& body) {
  if (std::optional<size_t> at = json_too_deep_at(body))
    throw RequestError(400, "the request body nests JSON more than " + std::to_string(kMaxJsonDepth) +
                                " levels deep (at byte " + std::to_string(*at) + ")", "", "invalid_json");
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) throw RequestError(400, "the request body is not valid JSON", "", "invalid_json");
  if (!parsed.is_object()) throw RequestError(400, "the request body must be a JSON object", "", "invalid_json");
  return parsed;
}

ChatRequest parse_chat_request(const json& body) {
  ChatRequest r;
  const json* messages = field(body, "messages");
  if (!messages || !messages->is_array() || messages->empty())
    bad("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < messages->size(); ++i) check_message((*messages)[i], i);
  r.messages = normalized_messages(*messages);
  r.model = model_from(body);
  check_n(body);
  r.sampling = sampling_from(body);
  r.max_tokens = max_tokens_from(body);
  r.stop = stop_strings(body);
  r.stream = boolean(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  r.logprobs = boolean(body, "logprobs", false);
  r.top_logprobs = static_cast<int>(integer_in(body, "top_logprobs", 0, 20).value_or(0));
  if (r.top_logprobs > 0 && !r.logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");

  if (const json* tools = field(body, "tools")) {
    if (!tools->is_array()) bad("tools", "'tools' must be an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      const std::string where = "tools[" + std::to_string(i) + "]";
      if (!has_type(t, "function") || !t.contains("function") ||
          !t["function"].is_object() || !t["function"].contains("name") || !t["function"]["name"].is_string())
        bad(where, where + " must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
      if (t["function"].contains("parameters") && !t["function"]["parameters"].is_object())
        bad(where + ".function.parameters", where + ".function.parameters must be a JSON Schema object");
    }
    if (!tools->empty()) r.tools = *tools;
  }
  if (const json* choice = field(body, "tool_choice")) {
    if (choice->is_string()) {
      const std::string c = choice->get<std::string>();
      if (c == "none") r.tool_choice = ToolChoiceMode::none;
      else if (c == "auto") r.tool_choice = ToolChoiceMode::auto_;
      else if (c == "required") r.tool_choice = ToolChoiceMode::required;
      else bad("tool_choice", "'tool_choice' must be none, auto, required or a function");
    } else if (has_type(*choice, "function") && choice->contains("function") &&
               (*choice)["function"].is_object() && (*choice)["function"].contains("name") &&
               (*choice)["function"]["name"].is_string()) {
      r.tool_choice = ToolChoiceMode::function;
      r.forced_function = (*choice)["function"]["name"].get<std::string>();
    } else {
      bad("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if ((r.tool_choice == ToolChoiceMode::required || r.tool_choice == ToolChoiceMode::function) && r.tools.is_null())
      bad("tool_choice", "'tool_choice' forces a tool call but no 'tools' are given");
    if (r.tool_choice == ToolChoiceMode::function) {
      bool found = false;
      for (const json& t : r.tools) found |= t["function"]["name"] == r.forced_function;
      if (!found) bad("tool_choice", "'tool_choice' names function '" + r.forced_function + "', which is not in 'tools'");
    }
  }
  if (const json* format = field(body, "response_format")) {
    if (!format->is_object() || !format->contains("type") || !(*format)["type"].is_string())
      bad("response_format", "'response_format' must be an object with a 'type'");
    r.response_format = (*format)["type"].get<std::string>();
    if (r.response_format == "json_schema") {
      const json* js = field(*format, "json_schema");
      if (!js || !js->is_object() || !js->contains("schema") || !(*js)["schema"].is_object())
        bad("response_format.json_schema", "'response_format.json_schema.schema' must be a JSON Schema object");
      r.response_schema = (*js)["schema"];
    } else if (r.response_format != "text" && r.response_format != "json_object") {
      bad("response_format.type", "'response_format.type' must be text, json_object or json_schema");
    }
  }
  if (const json* kwargs = field(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.template_kwargs = *kwargs;
  }
  return r;
}

CompletionRequest parse_completion_request(const json& body) {
  CompletionRequest r;
  const json* prompt = field(body, "prompt");
  if (!prompt) bad("prompt", "'prompt' is required");
  r.prompts = completion_prompts(*prompt);
  if (!r.prompts[0].is_tokens) r.prompt = r.prompts[0].text;
  r.model = model_from(body);
  check_n(body);
  r.sampling = sampling_from(body);
  // 0 scores the echoed prompt without generating (checked with echo below).
  const json* max_tokens = field(body, "max_tokens");
  const bool score_only = max_tokens && max_tokens->is_number_integer() && max_tokens->get<int64_t>() == 0;
  r.max_tokens = score_only ? std::optional<int64_t>(0) : max_tokens_from(body);
  if (!r.max_tokens) r.max_tokens = 16;  // the completions API's default
  r.stop = stop_strings(body);
  r.stream = boolean(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  r.echo = boolean(body, "echo", false);
  if (score_only && !r.echo)
    bad("max_tokens", "'max_tokens': 0 needs 'echo': true (it scores the prompt without generating)");
  // Up to 20, as chat's top_logprobs: what a distillation teacher gives per token.
  if (std::optional<int64_t> lp = integer_in(body, "logprobs", 0, 20)) r.logprobs = static_cast<int>(*lp);
  return r;
}

}  // namespace orchard::server
