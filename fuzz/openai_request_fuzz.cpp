// The request parsers of the server's routes: the input is the body of a POST to
// /v1/chat/completions, /v1/completions, /v1/responses (translated into a chat request),
// /v1/embeddings (against stories260K's tokenizer and shape), and Ollama's /api/chat and
// /api/generate (translated into chat and completion requests). Every refusal must be a
// RequestError (it becomes a 4xx error object) or an orchard::Error.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "server/embeddings.h"
#include "server/ollama_api.h"
#include "server/openai_protocol.h"
#include "server/responses_api.h"

using namespace orchard;

namespace {

// Calls parse(body), accepting the refusals the server turns into 4xx answers.
template <typename Parse>
void refused_or_parsed(Parse&& parse) {
  try {
    parse();
  } catch (const server::RequestError&) {
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Outside the accepted refusals: a tokenizer that fails to load stops the target.
  static const std::shared_ptr<const Tokenizer> tokenizer = Tokenizer::load(ORCHARD_FUZZ_TOKENIZER);
  const std::string body(fuzz::as_text(data, size));
  server::json parsed;
  try {
    parsed = server::parse_body(body);
  } catch (const server::RequestError&) {
    return 0;
  } catch (const Error&) {
    return 0;
  }
  refused_or_parsed([&] {
    const server::ChatRequest chat = server::parse_chat_request(parsed);
    // What the server then hands to the chat template and the schema compiler.
    (void)chat.messages.dump();
    (void)chat.tools.dump();
    (void)chat.response_schema.dump();
    (void)chat.template_kwargs.dump();
  });
  refused_or_parsed([&] { (void)server::parse_completion_request(parsed); });
  refused_or_parsed([&] {
    const server::ResponsesRequest r = server::parse_responses_request(parsed);
    (void)r.chat.messages.dump();
    (void)r.chat.tools.dump();
    (void)r.chat.response_schema.dump();
    (void)r.tools.dump();
  });
  const server::EmbeddingLimits limits{*tokenizer, tokenizer->vocab_size(), 64, 512};
  refused_or_parsed([&] { (void)server::parse_embedding_request(parsed, limits); });
  for (auto parse : {server::parse_ollama_chat, server::parse_ollama_generate})
    refused_or_parsed([&] {
      const server::OllamaRequest r = parse(parsed);
      if (r.chat) (void)r.chat->messages.dump();
    });
  return 0;
}
