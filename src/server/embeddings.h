// POST /v1/embeddings (OpenAI's): each input, text or token ids, becomes one embedding job of the
// engine (GenerationJob::embedding), all of a request's inputs submitted together so that they
// share batched passes with each other and with the generations running. The vector is the
// pooled final hidden state after the output norm (`--pooling last|mean`), L2-normalised, then
// optionally truncated to `dimensions` and normalised again (Matryoshka-style).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "orchard/engine.h"
#include "server/api_message.h"
#include "server/openai_protocol.h"

namespace orchard::server {

class AdapterRegistry;

// Inputs in one request at most (OpenAI's bound).
constexpr size_t kMaxEmbeddingInputs = 2048;

struct EmbeddingRequest {
  std::vector<std::vector<int32_t>> inputs;  // token ids, each non-empty, in the vocabulary and within the context
  bool base64 = false;                       // encoding_format "base64": little-endian float32 bytes
  std::optional<int64_t> dimensions;         // 1 .. the model's hidden size
  std::optional<std::string> model;
  int64_t prompt_tokens = 0;                 // over every input
};

// What a request is checked against: the tokenizer for text inputs, the model's vocabulary, hidden
// size and the engine's context.
struct EmbeddingLimits {
  const Tokenizer& tokenizer;
  int64_t n_vocab, dim, n_ctx;
};

// `input`: a string, an array of strings, an array of token ids, or an array of arrays of token
// ids. Text is encoded as the completions API encodes a prompt (BOS when the tokenizer adds one).
// Throws RequestError (400, naming the field: "input", "encoding_format", "dimensions", "model";
// code context_length_exceeded for an input longer than the context).
EmbeddingRequest parse_embedding_request(const json& body, const EmbeddingLimits& limits);

// The first `dimensions` components, normalised again to unit length.
std::vector<float> truncate_embedding(std::vector<float> v, int64_t dimensions);

// Little-endian float32 bytes in standard base64 (OpenAI's encoding_format "base64").
std::string base64_floats(const std::vector<float>& v);

// {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}.
json embedding_response(const std::vector<std::vector<float>>& vectors, const EmbeddingRequest& request,
                        const std::string& model);

// The whole route: parses, resolves "model" through `adapters` like chat (an adapter's embedding
// runs the adapter's forward pass), runs the inputs through the engine and answers. Blocks until
// every input is embedded; a client that leaves while they are queued cancels them.
ApiResponse embeddings_response(const ApiRequest& http, Engine& engine, const Tokenizer& tokenizer,
                                const AdapterRegistry& adapters, Pooling pooling);

}  // namespace orchard::server
