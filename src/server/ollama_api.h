// Ollama's HTTP API on the same server, for the local apps that speak it rather than OpenAI's:
// `POST /api/chat` and `POST /api/generate` (streamed by default, as newline-delimited JSON, with
// Ollama's field names and final statistics), `GET /api/tags` and `GET /api/ps` (the model and its
// adapters), `POST /api/show`, `GET /api/version`. Requests run as chat's do (ChatService, the
// engine, the adapter "model" picks); errors are Ollama's `{"error": "..."}` with a 4xx status.
// docs/server.md, "Ollama API", lists what is supported and what is refused.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "server/handler_support.h"

namespace orchard::server {

// The Ollama API version the answers follow (GET /api/version).
inline constexpr std::string_view kOllamaApiVersion = "0.12.0";

// Whether `path` belongs to the Ollama API (everything under /api/).
bool is_ollama_path(std::string_view path);

// What a POST to /api/chat or /api/generate asks for, in the requests the OpenAI routes parse:
// a chat request, or with /api/generate's "raw" a completion request; neither when there is
// nothing to generate (Ollama's "load the model" request: no messages, an empty prompt).
struct OllamaRequest {
  std::optional<std::string> model;  // ":latest" taken off
  bool stream = true;
  std::optional<ChatRequest> chat;
  std::optional<CompletionRequest> completion;
};

// `body`: an object, as parse_body returns it. Throws RequestError (400) naming the field in
// Ollama's terms ("options.num_predict", "format", "messages[2].images").
OllamaRequest parse_ollama_chat(const json& body);
OllamaRequest parse_ollama_generate(const json& body);

// Answers any request under /api/ (an unknown one with a 404 in Ollama's shape).
ApiResponse ollama_api(const ApiRequest& request, const HandlerContext& context);

}  // namespace orchard::server
