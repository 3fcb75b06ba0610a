// Ollama's HTTP API on the same server, for the local apps that speak it rather than OpenAI's:
// `POST /api/chat` and `POST /api/generate` (streamed by default, as newline-delimited JSON, with
// Ollama's field names and final statistics), `GET /api/tags` and `GET /api/ps` (the model and its
// adapters), `POST /api/show`, `GET /api/version`. Requests run as chat's do (ChatService, the
// engine, the adapter "model" picks); errors are Ollama's `{"error": "..."}` with a 4xx status.
// docs/server.md, "Ollama API", lists what is supported and what is refused.
#pragma once
#include <string_view>

#include "server/handler_support.h"

namespace orchard::server {

// The Ollama API version the answers follow (GET /api/version).
inline constexpr std::string_view kOllamaApiVersion = "0.12.0";

// Whether `path` belongs to the Ollama API (everything under /api/).
bool is_ollama_path(std::string_view path);

// Answers any request under /api/ (an unknown one with a 404 in Ollama's shape).
ApiResponse ollama_api(const ApiRequest& request, const HandlerContext& context);

}  // namespace orchard::server
