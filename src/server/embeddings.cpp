#include "server/embeddings.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "server/adapter_registry.h"
#include "server/handler_support.h"

namespace orchard::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw RequestError(400, message, param, code);
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// A token id of the model's vocabulary; `where` says which input, for the message.
int32_t token_id(const json& v, int64_t n_vocab, const std::string& where) {
  if (!v.is_number_integer()) bad("input", str_cat("'input'", where, ": token ids must be integers"));
  const bool inside = v.is_number_unsigned() ? v.get<uint64_t>() < static_cast<uint64_t>(n_vocab)
                                             : v.get<int64_t>() >= 0 && v.get<int64_t>() < n_vocab;
  if (!inside) bad("input", str_cat("'input'", where, ": token id ", v.dump(), " is outside the vocabulary (0 to ", n_vocab - 1, ")"));
  return static_cast<int32_t>(v.get<int64_t>());
}

std::vector<int32_t> token_ids(const json& array, int64_t n_vocab, const std::string& where) {
  if (array.empty()) bad("input", str_cat("'input'", where, " is an empty array of token ids"));
  std::vector<int32_t> ids;
  ids.reserve(array.size());
  for (const json& v : array) ids.push_back(token_id(v, n_vocab, where));
  return ids;
}

std::vector<int32_t> text_ids(const json& v, const EmbeddingLimits& limits, const std::string& where) {
  const std::string& text = v.get_ref<const std::string&>();
  if (text.empty()) bad("input", str_cat("'input'", where, " is an empty string"));
  std::vector<int32_t> ids = limits.tokenizer.encode(text, limits.tokenizer.adds_bos());
  if (ids.empty()) bad("input", str_cat("'input'", where, " has no tokens"));
  return ids;
}

const char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

EmbeddingRequest parse_embedding_request(const json& body, const EmbeddingLimits& limits) {
  if (!body.is_object()) throw RequestError(400, "the body must be a JSON object with 'input'");
  EmbeddingRequest r;
  if (const json* v = field(body, "model")) {
    if (!v->is_string()) bad("model", "'model' must be a string");
    r.model = v->get<std::string>();
  }
  if (const json* v = field(body, "encoding_format")) {
    if (!v->is_string() || (*v != "float" && *v != "base64"))
      bad("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    r.base64 = *v == "base64";
  }
  if (const json* v = field(body, "dimensions")) {
    if (!v->is_number_integer()) bad("dimensions", "'dimensions' must be an integer");
    // A non-negative number parses as unsigned (0 too), a negative one as signed.
    const bool inside = v->is_number_unsigned() ? v->get<uint64_t>() >= 1 && v->get<uint64_t>() <= static_cast<uint64_t>(limits.dim)
                                                : v->get<int64_t>() >= 1 && v->get<int64_t>() <= limits.dim;
    if (!inside) bad("dimensions", str_cat("'dimensions' must be between 1 and ", limits.dim, " (the model's hidden size)"));
    r.dimensions = v->get<int64_t>();
  }
  if (const json* v = field(body, "user"); v && !v->is_string()) bad("user", "'user' must be a string");

  const json* input = field(body, "input");
  if (!input) throw RequestError(400, "'input' is required", "input", "missing_required_parameter");
  if (input->is_string()) {
    r.inputs.push_back(text_ids(*input, limits, ""));
  } else if (input->is_array()) {
    if (input->empty()) bad("input", "'input' is an empty array");
    if (input->size() > kMaxEmbeddingInputs)
      bad("input", str_cat("'input' has ", input->size(), " items; at most ", kMaxEmbeddingInputs, " per request"));
    const json& first = input->front();
    if (first.is_number()) {  // one input as token ids
      r.inputs.push_back(token_ids(*input, limits.n_vocab, ""));
    } else if (first.is_string() || first.is_array()) {
      for (size_t i = 0; i < input->size(); ++i) {
        const json& item = (*input)[i];
        const std::string where = str_cat("[", i, "]");
        if (first.is_string() && item.is_string()) r.inputs.push_back(text_ids(item, limits, where));
        else if (first.is_array() && item.is_array()) r.inputs.push_back(token_ids(item, limits.n_vocab, where));
        else bad("input", str_cat("'input'", where, ": every item must be ", first.is_string() ? "a string" : "an array of token ids",
                                  " like the first"));
      }
    } else {
      bad("input", "'input' must be a string, an array of strings, an array of token ids or an array of arrays of token ids");
    }
  } else {
    bad("input", "'input' must be a string, an array of strings, an array of token ids or an array of arrays of token ids");
  }
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    const int64_t n = static_cast<int64_t>(r.inputs[i].size());
    if (n > limits.n_ctx)
      bad("input", str_cat("'input'", r.inputs.size() > 1 ? str_cat("[", i, "]") : std::string(), " has ", n,
                           " tokens; the context holds ", limits.n_ctx),
          "context_length_exceeded");
    r.prompt_tokens += n;
  }
  return r;
}

std::vector<float> truncate_embedding(std::vector<float> v, int64_t dimensions) {
  v.resize(static_cast<size_t>(dimensions));
  double norm2 = 0;
  for (float x : v) norm2 += static_cast<double>(x) * x;
  if (norm2 > 0) {
    const double scale = 1.0 / std::sqrt(norm2);
    for (float& x : v) x = static_cast<float>(x * scale);
  }
  return v;
}

std::string base64_floats(const std::vector<float>& v) {
  std::string bytes(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((bits >> (8 * b)) & 0xff);  // little-endian
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = 0;
    for (size_t k = 0; k < 3; ++k)
      group = group << 8 | (k < n ? static_cast<uint8_t>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? kBase64[(group >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

json embedding_response(const std::vector<std::vector<float>>& vectors, const EmbeddingRequest& request,
                        const std::string& model) {
  json data = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    std::vector<float> v = request.dimensions ? truncate_embedding(vectors[i], *request.dimensions) : vectors[i];
    json item = {{"object", "embedding"}, {"index", i}};
    if (request.base64) item["embedding"] = base64_floats(v);
    else item["embedding"] = std::move(v);
    data.push_back(std::move(item));
  }
  return json{{"object", "list"},
              {"data", std::move(data)},
              {"model", model},
              {"usage", {{"prompt_tokens", request.prompt_tokens}, {"total_tokens", request.prompt_tokens}}}};
}

ApiResponse embeddings_response(const ApiRequest& http, Engine& engine, const Tokenizer& tokenizer,
                                const AdapterRegistry& adapters, Pooling pooling) {
  const ModelConfig& config = engine.model().config();
  const EmbeddingRequest request =
      parse_embedding_request(parse_body(http.body), {tokenizer, config.n_vocab, config.dim, engine.n_ctx()});
  const ModelChoice choice = adapters.resolve(request.model);
  const auto vectors = engine.embed(request.inputs, pooling, choice.adapter, http.client_left);
  return json_response(200, embedding_response(vectors, request, choice.id));
}

}  // namespace orchard::server
