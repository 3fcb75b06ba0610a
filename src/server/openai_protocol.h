// The OpenAI HTTP API's request and response shapes: validation of incoming JSON into typed
// requests (every problem is a RequestError naming the field), and the JSON of responses,
// stream chunks and errors.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.h"

namespace orchard::server {

using json = nlohmann::ordered_json;

// A client mistake: becomes an OpenAI error object with a 4xx status.
class RequestError : public std::runtime_error {
 public:
  RequestError(int status, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(std::move(message)), status(status), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string param;
  std::string code;
};

json error_body(const std::string& message, const std::string& type, const std::string& param = "",
                const std::string& code = "");

enum class ToolChoiceMode { none, auto_, required, function };

struct ChatRequest {
  std::optional<std::string> model;  // as sent; AdapterRegistry::resolve says what it chooses
  json messages;  // validated; passed to the chat template as is
  json tools;     // null when absent
  ToolChoiceMode tool_choice = ToolChoiceMode::auto_;
  std::string forced_function;  // for ToolChoiceMode::function
  SamplingParams sampling;
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;
  std::string response_format = "text";  // text | json_object | json_schema
  json response_schema;                  // for json_schema
  json template_kwargs;                  // chat_template_kwargs passed through
};

// One prompt of /v1/completions: text, or token ids (`is_tokens`).
struct CompletionPrompt {
  std::string text;
  std::vector<int32_t> tokens;
  bool is_tokens = false;
};

struct CompletionRequest {
  std::optional<std::string> model;
  // The prompt when it is one text (what other APIs that build a CompletionRequest set); `prompts`
  // holds what /v1/completions was sent: a string, an array of strings, an array of token ids or
  // an array of such arrays, one choice per prompt, in order. ChatService::prepare_all reads
  // `prompts` when it is not empty, else `prompt`.
  std::string prompt;
  std::vector<CompletionPrompt> prompts;
  SamplingParams sampling;
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  int logprobs = -1;  // legacy completions: number of top logprobs, -1 off
};

// Throws RequestError for anything malformed or unsupported (n > 1, unknown roles, ...).
ChatRequest parse_chat_request(const json& body);
CompletionRequest parse_completion_request(const json& body);
// Parses a request body; malformed JSON is a RequestError.
json parse_body(const std::string& body);

}  // namespace orchard::server
