#include "server/api_message.h"

#include "server/chunk_template.h"

namespace orchard::server {

ApiResponse json_response(int status, const json& body) {
  ApiResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = to_json_text(body);
  return response;
}

ApiResponse error_response(int status, const std::string& message, const std::string& param, const std::string& code) {
  return json_response(status, error_body(message, status >= 500 ? "server_error" : "invalid_request_error", param, code));
}

ApiResponse error_response(const RequestError& e) { return error_response(e.status, e.what(), e.param, e.code); }

}  // namespace orchard::server
