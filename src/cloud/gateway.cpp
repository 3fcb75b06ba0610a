#include "cloud/gateway.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <memory>
#include <optional>
#include <utility>

#include "cloud/response_binding.h"

namespace orchard::cloud {
namespace {

using server::ApiRequest;
using server::ApiResponse;
using server::ClientConnection;
using Clock = std::chrono::system_clock;

constexpr const char* kKeyProblem = "https://iana.org/assignments/http-problem-types#ohttp-key";
constexpr const char* kDateProblem = "https://iana.org/assignments/http-problem-types#date";

// RFC 9457 problem details: what went wrong, never anything of the request's content.
ApiResponse problem(int status, const std::string& title, const std::string& type = "about:blank") {
  ApiResponse r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = nlohmann::json{{"type", type}, {"title", title}, {"status", status}}.dump();
  return r;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string field(const std::vector<std::pair<std::string, std::string>>& fields, std::string_view name) {
  for (const auto& [n, value] : fields)
    if (lower(n) == name) return value;
  return "";
}

std::string bhttp_field(const std::vector<HttpField>& fields, std::string_view name) {
  for (const HttpField& f : fields)
    if (lower(f.name) == name) return f.value;
  return "";
}

bool inner_route(std::string_view method, std::string_view path) {
  if (path == "/metrics") return false;  // counts belong to the admin port
  for (const server::OpenAIHandler::Route& r : server::OpenAIHandler::routes())
    if (path == r.path && (method == r.method || (method == "HEAD" && std::string_view(r.method) == "GET"))) return true;
  return false;
}

std::vector<HttpField> response_fields(const ApiResponse& r) {
  std::vector<HttpField> fields;
  if (!r.content_type.empty()) fields.push_back({"content-type", r.content_type});
  for (const auto& [name, value] : r.headers) fields.push_back({lower(name), value});
  return fields;
}

// The head of a streamed answer, padded with a field to a multiple of `bucket` bytes.
Bytes padded_head(int status, std::vector<HttpField> fields, size_t bucket) {
  Bytes head = encode_response_head(status, fields);
  if (bucket == 0 || head.size() % bucket == 0) return head;
  fields.push_back({"padding", ""});
  for (size_t n = 0; n < 2 * bucket; ++n) {
    fields.back().value.assign(n, '0');
    head = encode_response_head(status, fields);
    if (head.size() % bucket == 0) break;
  }
  return head;
}

// The client side of a plain (not chunked) answer: the whole body, gathered.
class GatheringConnection final : public ClientConnection {
 public:
  explicit GatheringConnection(const std::function<bool()>& client_left) : client_left_(client_left) {}
  bool write(std::string_view bytes) override {
    body_.append(bytes);
    return true;
  }
  bool client_present(std::string_view) override { return !(client_left_ && client_left_()); }
  std::string body_;

 private:
  const std::function<bool()>& client_left_;
};

// A chunked answer: the response nonce with the padded head, each write of the handler as a
// chunk, and the end of the Binary HTTP message as the final chunk; each piece signed when the
// client asked for the response binding.
struct StreamedAnswer {
  GatewayResponse response;
  ApiResponse inner;
  std::optional<ResponseSigner> binding;

  Bytes chunk(ByteView piece) { return response.chunk(binding ? binding->sign(piece, false) : Bytes(piece.begin(), piece.end())); }
  Bytes final_chunk(ByteView piece) {
    return response.final_chunk(binding ? binding->sign(piece, true) : Bytes(piece.begin(), piece.end()));
  }
};

// Each write of the answer as one encrypted chunk of the outer body.
class EncryptingConnection final : public ClientConnection {
 public:
  EncryptingConnection(ClientConnection& out, StreamedAnswer& response, bool event_stream, size_t bucket,
                       std::function<bool()> client_left)
      : out_(out), response_(response), event_stream_(event_stream), bucket_(bucket), client_left_(std::move(client_left)) {}

  bool write(std::string_view bytes) override {
    if (bytes.empty()) return true;  // an empty chunk would read as the end
    last_write_ = std::chrono::steady_clock::now();
    const std::string padded = pad_content(bytes, event_stream_, bucket_);
    const Bytes chunk = response_.chunk(encode_content_chunk(as_bytes(padded)));
    return out_.write(as_text(chunk));
  }
  // A probe is one more encrypted chunk (its bytes change nothing for the client), so it is
  // written here, at most once a second; in between only a reset connection tells.
  bool client_present(std::string_view probe) override {
    if (client_left_ && client_left_()) return false;
    if (std::chrono::steady_clock::now() - last_write_ < std::chrono::seconds(1)) return true;
    return write(probe);
  }

 private:
  ClientConnection& out_;
  StreamedAnswer& response_;
  bool event_stream_;
  size_t bucket_;
  std::function<bool()> client_left_;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
};

bool write_chunked(StreamedAnswer& answer, size_t bucket, const std::function<bool()>& client_left,
                   ClientConnection& connection) {
  const ApiResponse& inner = answer.inner;
  Bytes first = answer.response.start();
  put_bytes(first, answer.chunk(padded_head(inner.status, response_fields(inner), bucket)));
  if (!connection.write(as_text(first))) return false;
  EncryptingConnection encrypted(connection, answer, inner.content_type.starts_with("text/event-stream"), bucket,
                                 client_left);
  if (inner.write_body) {
    if (!inner.write_body(encrypted)) return false;
  } else if (!encrypted.write(inner.body)) {
    return false;
  }
  return connection.write(as_text(answer.final_chunk(encode_response_end())));
}

}  // namespace

std::string pad_content(std::string_view bytes, bool event_stream, size_t bucket) {
  std::string out(bytes);
  if (bucket == 0) return out;
  size_t fill = (bucket - out.size() % bucket) % bucket;
  if (fill == 0) return out;
  if (!event_stream) return out.append(fill, ' ');
  // ":" + spaces + "\n": a comment line, which SSE parsers skip. It must start a line.
  if (out.empty() || out.back() != '\n') return out;
  if (fill < 2) fill += bucket;
  out += ':';
  out.append(fill - 2, ' ');
  out += '\n';
  return out;
}

Gateway::Gateway(const server::OpenAIHandler& handler, KeyRing& keys, const GatewayOptions& options,
                 const NoteSigner* signing_key, const privacy_pass::TokenRedeemer* tokens)
    : handler_(handler), keys_(keys), options_(options), signing_key_(signing_key), tokens_(tokens),
      replays_(options.replay_window) {}

ApiResponse Gateway::keys() const {
  ApiResponse r;
  r.content_type = "application/ohttp-keys";
  const Bytes configs = keys_.encoded_configs();
  r.body.assign(configs.begin(), configs.end());
  r.headers.push_back({"Cache-Control", "public, max-age=" + std::to_string(keys_.max_age().count())});
  return r;
}

ApiResponse Gateway::handle(const ApiRequest& outer) const {
  try {
    return answer(outer);
  } catch (const std::exception&) {  // OpenSSL failing, memory: nothing of the request in the message
    return problem(500, "the gateway failed to answer");
  }
}

ApiResponse Gateway::answer(const ApiRequest& outer) const {
  std::string type = lower(field(outer.headers, "content-type"));
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  OhttpMode mode;
  if (type == request_media_type(OhttpMode::plain)) mode = OhttpMode::plain;
  else if (type == request_media_type(OhttpMode::chunked)) mode = OhttpMode::chunked;
  else return problem(415, "the body must be message/ohttp-req or message/ohttp-chunked-req");
  if (tokens_) {  // spent here, whatever happens to the request after: a token buys one attempt
    try {
      tokens_->redeem(field(outer.headers, "authorization"));
    } catch (const privacy_pass::TokenError& e) {
      const bool ours = e.reason() == privacy_pass::TokenError::Reason::unavailable;
      ApiResponse r = problem(ours ? 503 : 401, std::string("Privacy Pass token refused: ") + e.what());
      if (!ours) r.headers.push_back({"WWW-Authenticate", tokens_->www_authenticate()});
      return r;
    }
  }

  std::shared_ptr<const NodeKey> key;  // held while the request decrypts: a rotation may drop it
  const KeyLookup lookup = [&](const RequestHeader& header) -> const X25519KeyPair* {
    key = keys_.find(header.key_id);
    return key ? &key->pair : nullptr;
  };
  std::optional<DecapsulatedRequest> request;
  try {
    request.emplace(decapsulate_request(as_bytes(outer.body), mode, lookup));
  } catch (const OhttpError& e) {
    if (e.kind() == OhttpError::Kind::unknown_key) return problem(422, e.what(), kKeyProblem);
    return problem(400, e.what());
  }
  const Clock::time_point now = Clock::now();
  if (!replays_.first_use(request->enc, now))
    return problem(400, "oblivious HTTP: the request was replayed (its encapsulated key was seen within the replay window)");

  // From here on every answer, errors included, is encrypted to the client.
  bool bind = false;
  ApiResponse inner = [&]() -> ApiResponse {
    BinaryRequest r;
    try {
      r = decode_request(request->bhttp_request, options_.limits);
    } catch (const BinaryHttpError& e) {
      return server::error_response(400, e.what());
    }
    bind = signing_key_ && bhttp_field(r.headers, kBindingField) == kBindingEd25519;
    const std::string date = bhttp_field(r.headers, "date");
    if (!replays_.date_acceptable(date, now)) {
      ApiResponse e = problem(400,
                              date.empty() ? "the request has no Date field (the gateway needs it against replays)"
                                           : "the request's Date is not within " +
                                                 std::to_string(options_.replay_window.count()) +
                                                 " s of the gateway's clock",
                              kDateProblem);
      e.headers.push_back({"Date", format_http_date(now)});
      return e;
    }
    std::string path = r.path.substr(0, r.path.find('?'));
    if (!inner_route(r.method, path)) return server::error_response(404, "this node answers the OpenAI API's routes only");
    ApiRequest api{.method = r.method, .path = std::move(path), .headers = {}, .body = std::move(r.content),
                   .client_left = outer.client_left};
    for (HttpField& f : r.headers) api.headers.emplace_back(std::move(f.name), std::move(f.value));
    return handler_.handle(api);
  }();

  const size_t bucket = options_.response_padding;
  ApiResponse out;
  out.content_type = response_media_type(mode);
  if (mode == OhttpMode::plain) {
    std::string body = std::move(inner.body);
    if (inner.write_body) {
      GatheringConnection gathered(outer.client_left);
      if (!inner.write_body(gathered)) return problem(500, "the answer failed");
      body = std::move(gathered.body_);
    }
    BinaryResponse message{.informational = {}, .status = inner.status, .headers = response_fields(inner),
                           .content = std::move(body), .trailers = {}};
    Bytes encoded = encode_response(message);
    pad_to_multiple(encoded, bucket);
    if (bind) encoded = ResponseSigner(*signing_key_, as_bytes(outer.body)).sign(encoded, true);
    const Bytes sealed = request->response.seal(encoded);
    out.body.assign(sealed.begin(), sealed.end());
    return out;
  }

  auto streamed = std::make_shared<StreamedAnswer>(StreamedAnswer{std::move(request->response), std::move(inner), {}});
  if (bind) streamed->binding.emplace(*signing_key_, as_bytes(outer.body));
  out.write_body = [streamed, bucket, client_left = outer.client_left](ClientConnection& connection) {
    try {
      return write_chunked(*streamed, bucket, client_left, connection);
    } catch (const std::exception&) {
      return false;  // the transport cuts the connection: the client sees no final chunk
    }
  };
  return out;
}

}  // namespace orchard::cloud
