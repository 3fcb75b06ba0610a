// The OpenAI request parsers: the input is the body of a POST to /v1/chat/completions, to
// /v1/completions and to /v1/responses (translated into a chat request). Every refusal must be a RequestError (it becomes a 4xx OpenAI error object)
// or an orchard::Error.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "server/openai_protocol.h"
#include "server/responses_api.h"

using namespace orchard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(fuzz::as_text(data, size));
  try {
    const server::json parsed = server::parse_body(body);
    try {
      const server::ChatRequest chat = server::parse_chat_request(parsed);
      // What the server then hands to the chat template and the schema compiler.
      (void)chat.messages.dump();
      (void)chat.tools.dump();
      (void)chat.response_schema.dump();
      (void)chat.template_kwargs.dump();
    } catch (const server::RequestError&) {
    } catch (const Error&) {
    }
    try {
      (void)server::parse_completion_request(parsed);
    } catch (const server::RequestError&) {
    } catch (const Error&) {
    }
    try {
      const server::ResponsesRequest r = server::parse_responses_request(parsed);
      (void)r.chat.messages.dump();
      (void)r.chat.tools.dump();
      (void)r.chat.response_schema.dump();
      (void)r.tools.dump();
    } catch (const server::RequestError&) {
    } catch (const Error&) {
    }
  } catch (const server::RequestError&) {
  } catch (const Error&) {
  }
  return 0;
}
