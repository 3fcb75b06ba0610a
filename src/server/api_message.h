// What goes between a transport and an API handler (OpenAIHandler, and the handlers it routes to:
// the Responses and Ollama APIs, embeddings, the web page): a request in, a response out, the
// connection a body is written to over time, and how the handlers answer. openai_handler.h says
// what a transport does with them.
#pragma once
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orchard/engine.h"
#include "server/openai_protocol.h"

namespace orchard::server {

struct ApiRequest {
  std::string method;  // "GET", "POST", ...; "HEAD" is answered as "GET" (the transport drops the body)
  std::string path;    // decoded, without the query string
  std::vector<std::pair<std::string, std::string>> headers;  // no route reads one today
  std::string body;    // decoded (after any Content-Encoding); the transport bounds its size
  // Asked while the answer is prepared, before any byte of it is out (a JSON schema compiles):
  // true once the client has certainly gone, which stops the work. Nothing can be written to
  // probe the client yet, so a transport answers from what it already knows (httplib's: a reset
  // connection, `client_reset`). May be empty: the client is taken to be there.
  std::function<bool()> client_left;
  // Came through the admin listener (loopback only, for the operator: --admin-port), which no
  // API key guards.
  bool admin = false;
};

// The connection an answer is written to over time.
class ClientConnection {
 public:
  virtual ~ClientConnection() = default;
  // Sends `bytes` (part of the body); false once the client is gone.
  virtual bool write(std::string_view bytes) = 0;
  // Asked while there is nothing to write (the job is queued, prefills a long prompt, or its text
  // is held back as a possible tool call): whether the client is still there. A transport that
  // can only tell by writing may send `probe`, bytes that change nothing for the client (a space
  // before a JSON body, an SSE comment line), and should do so rarely (httplib's: once a second).
  virtual bool client_present(std::string_view probe) = 0;
};

struct ApiResponse {
  int status = 200;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // beyond the content type; none today
  std::string body;  // the whole body, when `write_body` is empty
  // A body written over time: the transport sends the status and headers, then calls this once
  // on the thread that answers the request. It writes the whole body and returns true, and the
  // transport then ends the body properly (httplib: the last chunk). False: the answer failed
  // after its status went out (or the client left), and the transport cuts the connection
  // instead, the only way left to tell the client. The handler must outlive the call.
  std::function<bool(ClientConnection&)> write_body;
};

// How the handler answers (ServerOptions fills it for `orchard serve`).
struct HandlerOptions {
  // The least time between two writes of one stream (ServerOptions::stream_interval_us).
  std::chrono::steady_clock::duration stream_interval = std::chrono::milliseconds(10);
  // --api-key, --api-key-file: when any, every request but GET /health, a CORS preflight and a GET
  // of a path that is no API call (the web page's files) needs "Authorization: Bearer KEY" with
  // one of them, else 401 (invalid_api_key, WWW-Authenticate: Bearer). Compared in constant time
  // (api_keys.h).
  std::vector<std::string> api_keys;
  // --cors-origin: the origins ("*": any) whose pages may call the API from a browser. Answers to
  // a request whose Origin is one carry Access-Control-Allow-Origin, and OPTIONS (a preflight) is
  // answered 204 on any path. Empty: no CORS headers, and OPTIONS is a 404.
  std::vector<std::string> cors_origins;
  // --pooling: how POST /v1/embeddings pools an input's final hidden states (server/embeddings.h).
  Pooling pooling = Pooling::last;
  // The kernels the engine runs: part of system_fingerprint ("orchard-VERSION-ISA", or
  // "-reference"), which says what decides an answer's numbers besides the model and the seed.
  KernelChoice kernels = KernelChoice::fast;
};

// A JSON body as a whole response.
ApiResponse json_response(int status, const json& body);
// An OpenAI error object as a whole response: type "invalid_request_error" below 500,
// "server_error" from 500.
ApiResponse error_response(int status, const std::string& message, const std::string& param = "",
                           const std::string& code = "");
ApiResponse error_response(const RequestError& e);

}  // namespace orchard::server
