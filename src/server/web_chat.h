// The web chat page at `/` (docs/server.md, "Web chat"): static files embedded in the binary
// from web/chat/ at build time (cmake/embed_files.cmake writes web_chat_files()), answered by
// OpenAIHandler for GET / (index.html) and GET /web/NAME. The page talks to /v1/chat/completions
// from the browser and keeps its conversation in the browser's localStorage: the server holds
// nothing of it.
#pragma once
#include <span>
#include <string_view>

#include "server/api_message.h"

namespace orchard::server {

struct WebFile {
  std::string_view name;   // relative to web/chat/, e.g. "app.js"
  std::string_view bytes;
};

// Generated (cmake/embed_files.cmake); sorted by name.
std::span<const WebFile> web_chat_files();

// The URL prefix of the page's files other than index.html.
inline constexpr std::string_view kWebChatPrefix = "/web/";

// Whether `path` is the page's: "/" or under kWebChatPrefix.
bool is_web_chat_path(std::string_view path);

// The file at `path` with its content type and the headers that keep the page to itself: a
// Content-Security-Policy allowing only this origin's scripts, styles and connections (no inline
// script, no plugin, no framing), nosniff, and no-cache (a new build's files are fetched at once).
// An unknown file: 404.
ApiResponse web_chat_response(std::string_view path);

}  // namespace orchard::server
