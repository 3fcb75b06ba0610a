// OpenAI's Responses API (`POST /v1/responses`), stateless: a request's `input` items,
// `instructions`, tools and `text.format` become a ChatRequest, which runs as chat's does
// (ChatService::prepare, the engine, the adapter its "model" picks), and the answer is a Response
// object, or with `stream: true` the Responses API's named server-sent events. Nothing is stored:
// `previous_response_id`, `store: true`, `conversation` and item references are refused with a
// 400 (docs/server.md, "Responses API", says why).
#pragma once
#include "server/handler_support.h"
#include "server/openai_protocol.h"

namespace orchard::server {

// The request translated (exposed for the tests). Every problem is a RequestError whose param
// names the Responses field (`input[2].content[0]`, `text.format.schema`, `max_output_tokens`).
struct ResponsesRequest {
  ChatRequest chat;
  // Echoed in the Response object as the client gave them.
  json instructions;   // string or null
  json tools;          // the Responses shape; [] when absent
  json tool_choice;    // "auto" when absent
  json text_format;    // {"type": "text"} when absent
  json metadata;       // object or null
  json temperature, top_p, max_output_tokens;  // numbers or null
};
ResponsesRequest parse_responses_request(const json& body);

// POST /v1/responses.
ApiResponse create_response(const ApiRequest& request, const HandlerContext& context);

}  // namespace orchard::server
