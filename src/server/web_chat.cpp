#include "server/web_chat.h"

#include <string>

#include "base/error.h"

namespace orchard::server {
namespace {

// Everything from this origin, nothing inline: model output that were ever to reach the DOM as
// markup still could not run a script or send data elsewhere.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

std::string_view content_type_of(std::string_view name) {
  auto ends_with = [&](std::string_view ext) { return name.ends_with(ext); };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  if (ends_with(".svg")) return "image/svg+xml";
  if (ends_with(".png")) return "image/png";
  if (ends_with(".ico")) return "image/x-icon";
  return "application/octet-stream";
}

}  // namespace

bool is_web_chat_path(std::string_view path) { return path == "/" || path.starts_with(kWebChatPrefix); }

ApiResponse web_chat_response(std::string_view path) {
  const std::string_view name = path == "/" ? std::string_view("index.html") : path.substr(kWebChatPrefix.size());
  for (const WebFile& file : web_chat_files()) {
    if (file.name != name) continue;
    ApiResponse response;
    response.content_type = std::string(content_type_of(name));
    response.body = std::string(file.bytes);
    response.headers = {{"Content-Security-Policy", kContentSecurityPolicy},
                        {"X-Content-Type-Options", "nosniff"},
                        {"Cache-Control", "no-cache"},
                        {"Referrer-Policy", "no-referrer"}};
    return response;
  }
  return error_response(404, str_cat("no file ", path));
}

}  // namespace orchard::server
