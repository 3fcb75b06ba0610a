// Oblivious HTTP: the RFC 9458 example and the chunked draft's example byte for byte in both
// directions, and the gateway in front of a real OpenAI handler (the tiny chat model): hostile
// messages (every byte flipped, every truncation), replays, unknown and expired keys, the Date
// window, and a streamed answer that arrives chunk by chunk, padded.
#include "cloud/ohttp.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>

#include "cloud/binary_http.h"
#include "cloud/gateway.h"
#include "cloud/key_ring.h"
#include "cloud/replay_window.h"
#include "test_paths.h"
#include "tiny_handler.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;

json load(const std::string& name) {
  std::ifstream in(test::shared_path("pcc/" + name));
  EXPECT_TRUE(in.good()) << name;
  return json::parse(in);
}
Bytes hex(const json& j) { return from_hex(j.get<std::string>()); }
Bytes concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const Bytes& p : parts) put_bytes(out, p);
  return out;
}

TEST(Ohttp, Rfc9458ExampleByteForByte) {
  const json v = load("rfc9458-example.json");
  const KeyConfig config = parse_key_config(hex(v["key_config"]));
  EXPECT_EQ(encode_key_config(config), hex(v["key_config"]));
  const X25519KeyPair gateway = x25519_from_secret(hex(v["gateway_x25519_secret_key"]));
  EXPECT_EQ(gateway.public_key, config.public_key);
  const X25519KeyPair ephemeral = x25519_from_secret(hex(v["client_ephemeral_secret_key"]));
  EXPECT_EQ(ephemeral.public_key, hex(v["client_ephemeral_public_key"]));

  // Client to gateway.
  const ClientRequest request = ClientRequest::encapsulate(config, config.suites.front(), OhttpMode::plain,
                                                           hex(v["binary_http_request"]), &ephemeral);
  EXPECT_EQ(request.encapsulated(), hex(v["encapsulated_request"]));
  DecapsulatedRequest opened = decapsulate_request(hex(v["encapsulated_request"]), OhttpMode::plain,
                                                   [&](const RequestHeader& h) { return h.key_id == config.key_id ? &gateway : nullptr; });
  EXPECT_EQ(opened.bhttp_request, hex(v["binary_http_request"]));
  EXPECT_EQ(opened.enc, hex(v["client_ephemeral_public_key"]));

  // Gateway to client, with the example's response nonce (the first bytes of its response).
  const Bytes response = hex(v["encapsulated_response"]);
  const Bytes nonce(response.begin(), response.begin() + 16);
  EXPECT_EQ(opened.response.seal(hex(v["binary_http_response"]), &nonce), response);
  EXPECT_EQ(request.open_response(response), hex(v["binary_http_response"]));
  Bytes tampered = response;
  tampered.back() ^= 1;
  EXPECT_THROW(request.open_response(tampered), OhttpError);
}

TEST(Ohttp, ChunkedExampleChunkByChunk) {
  const json v = load("chunked-ohttp-example.json");
  const KeyConfig config = parse_key_config(hex(v["key_config"]));
  const X25519KeyPair gateway = x25519_from_secret(hex(v["gateway_x25519_secret_key"]));
  const X25519KeyPair ephemeral = x25519_from_secret(hex(v["client_ephemeral_secret_key"]));
  const SymmetricSuite suite{static_cast<uint16_t>(v["suite"]["kdf_id"].get<int>()),
                             static_cast<uint16_t>(v["suite"]["aead_id"].get<int>())};

  ClientRequest request = ClientRequest::begin_chunked(config, suite, &ephemeral);
  EXPECT_EQ(request.encapsulated(), concat({hex(v["request_header"]), hex(v["request_enc"])}));
  const auto& plain_chunks = v["request_plaintext_chunks"];
  const auto& sealed_chunks = v["request_chunks_encoded"];
  ASSERT_EQ(plain_chunks.size(), 3u);
  Bytes whole = request.encapsulated();
  for (size_t i = 0; i < plain_chunks.size(); ++i) {
    const Bytes chunk = i + 1 < plain_chunks.size() ? request.seal_chunk(hex(plain_chunks[i])) : request.seal_final_chunk(hex(plain_chunks[i]));
    EXPECT_EQ(chunk, hex(sealed_chunks[i])) << "request chunk " << i;
    put_bytes(whole, chunk);
  }
  EXPECT_EQ(whole, hex(v["encapsulated_request"]));

  DecapsulatedRequest opened = decapsulate_request(whole, OhttpMode::chunked, [&](const RequestHeader&) { return &gateway; });
  EXPECT_EQ(opened.bhttp_request, hex(v["binary_http_request"]));

  const Bytes nonce = hex(v["response_nonce"]);
  Bytes response = opened.response.start(&nonce);
  const auto& response_plain = v["response_plaintext_chunks"];
  const auto& response_sealed = v["response_chunks_encoded"];
  ASSERT_EQ(response_plain.size(), 3u);
  for (size_t i = 0; i < response_plain.size(); ++i) {
    const Bytes chunk = i + 1 < response_plain.size() ? opened.response.chunk(hex(response_plain[i]))
                                                      : opened.response.final_chunk(hex(response_plain[i]));
    EXPECT_EQ(chunk, hex(response_sealed[i])) << "response chunk " << i;
    put_bytes(response, chunk);
  }
  EXPECT_EQ(response, hex(v["encapsulated_response"]));

  // The client reads it whole, and one byte at a time.
  for (size_t step : {response.size(), size_t{1}}) {
    ChunkedResponseReader reader = request.response_reader();
    Bytes plain;
    for (size_t at = 0; at < response.size(); at += step)
      put_bytes(plain, reader.feed(ByteView(response).subspan(at, std::min(step, response.size() - at))));
    put_bytes(plain, reader.finish());
    EXPECT_EQ(plain, hex(v["binary_http_response"])) << "step " << step;
  }
  // Cut before the end of the final chunk: it does not open.
  ChunkedResponseReader cut = request.response_reader();
  cut.feed(ByteView(response).first(response.size() - 1));
  EXPECT_THROW(cut.finish(), OhttpError);
}

TEST(Ohttp, AnEarlierChunkMarkedFinalIsRefused) {
  const json v = load("chunked-ohttp-example.json");
  const KeyConfig config = parse_key_config(hex(v["key_config"]));
  const X25519KeyPair gateway = x25519_from_secret(hex(v["gateway_x25519_secret_key"]));
  ClientRequest request = ClientRequest::begin_chunked(config, config.suites.front());
  // The first chunk sealed as final ("final" AAD) but framed with a length, then a real final.
  Bytes first = request.seal_final_chunk(as_bytes("early"));
  first.erase(first.begin());
  Bytes whole = request.encapsulated();
  put_varint(whole, first.size());
  put_bytes(whole, first);
  put_bytes(whole, request.seal_final_chunk(as_bytes("late")));
  try {
    decapsulate_request(whole, OhttpMode::chunked, [&](const RequestHeader&) { return &gateway; });
    FAIL() << "accepted";
  } catch (const OhttpError& e) {
    EXPECT_EQ(e.kind(), OhttpError::Kind::decrypt_failed);
  }
  // And a request without a final chunk.
  ClientRequest open_ended = ClientRequest::begin_chunked(config, config.suites.front());
  Bytes partial = open_ended.encapsulated();
  put_bytes(partial, open_ended.seal_chunk(as_bytes("only")));
  EXPECT_THROW(decapsulate_request(partial, OhttpMode::chunked, [&](const RequestHeader&) { return &gateway; }), OhttpError);
}

TEST(Ohttp, KeyConfigurationsParseAndRefuse) {
  const json v = load("rfc9458-example.json");
  const Bytes one = hex(v["key_config"]);
  KeyConfig other = parse_key_config(one);
  other.key_id = 7;
  const Bytes list = encode_key_configs({parse_key_config(one), other});
  const std::vector<KeyConfig> parsed = parse_key_configs(list);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[1].key_id, 7);
  EXPECT_EQ(parsed[0].suites.size(), 2u);
  // Every truncation of a single configuration is refused; of a list, too (but the empty list).
  for (size_t n = 0; n < one.size(); ++n) EXPECT_THROW(parse_key_config(ByteView(one).first(n)), OhttpError) << n;
  for (size_t n = 1; n < list.size(); ++n)
    if (n != 2 + one.size()) {
      EXPECT_THROW(parse_key_configs(ByteView(list).first(n)), OhttpError) << n;
    }
  // An unknown KEM is skipped in a list (RFC 9458 §3.2), refused alone.
  Bytes p256 = one;
  p256[2] = 0x10;
  EXPECT_THROW(parse_key_config(p256), OhttpError);
  Bytes mixed;
  put_u16(mixed, static_cast<uint16_t>(p256.size()));
  put_bytes(mixed, p256);
  put_u16(mixed, static_cast<uint16_t>(one.size()));
  put_bytes(mixed, one);
  EXPECT_EQ(parse_key_configs(mixed).size(), 1u);
}

TEST(Ohttp, PaddingFillsBucketsWithBytesTheParsersSkip) {
  const std::string event = "data: {\"x\":1}\n\n";
  const std::string padded = pad_content(event, true, 256);
  EXPECT_EQ(padded.size(), 256u);
  EXPECT_EQ(padded.substr(0, event.size()), event);
  EXPECT_EQ(padded[event.size()], ':');
  EXPECT_EQ(padded.back(), '\n');
  EXPECT_EQ(padded.find('\n', event.size()), padded.size() - 1);  // one comment line
  EXPECT_EQ(pad_content(std::string(255, 'a') + "\n", true, 256).size(), 256u);
  EXPECT_EQ(pad_content(std::string(255, 'a'), true, 256).size(), 255u);  // cannot end a line: unpadded
  EXPECT_EQ(pad_content(std::string(254, 'a') + "\n", true, 256).size(), 512u);  // no room for ":\n"
  EXPECT_EQ(pad_content("{\"a\":1}", false, 256), "{\"a\":1}" + std::string(249, ' '));
}

TEST(Ohttp, ReplayWindowAndDates) {
  using Clock = std::chrono::system_clock;
  const Clock::time_point now = Clock::from_time_t(1'700'000'000);
  EXPECT_EQ(format_http_date(now), "Tue, 14 Nov 2023 22:13:20 GMT");
  EXPECT_EQ(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"), now);
  for (const char* bad : {"", "Tue, 14 Nov 2023 22:13:20 UTC", "Tue, 14 Nov 2023 22:13:2x GMT", "Tue, 14 Foo 2023 22:13:20 GMT",
                          "Tuesday, 14-Nov-23 22:13:20 GMT", "Tue, 14 Nov 2023 25:13:20 GMT"})
    EXPECT_FALSE(parse_http_date(bad)) << bad;
  ReplayWindow window(std::chrono::seconds(60));
  EXPECT_TRUE(window.date_acceptable(format_http_date(now - std::chrono::seconds(59)), now));
  EXPECT_FALSE(window.date_acceptable(format_http_date(now - std::chrono::seconds(61)), now));
  EXPECT_FALSE(window.date_acceptable(format_http_date(now + std::chrono::seconds(61)), now));
  const Bytes enc(32, 7);
  EXPECT_TRUE(window.first_use(enc, now));
  EXPECT_FALSE(window.first_use(enc, now + std::chrono::seconds(119)));
  EXPECT_TRUE(window.first_use(enc, now + std::chrono::seconds(121)));  // forgotten after 2 x window
  ReplayWindow full(std::chrono::seconds(60), 2);
  EXPECT_TRUE(full.first_use(Bytes(32, 1), now));
  EXPECT_TRUE(full.first_use(Bytes(32, 2), now));
  EXPECT_FALSE(full.first_use(Bytes(32, 3), now));
}

TEST(Ohttp, KeysRotateAndExpire) {
  using Clock = std::chrono::system_clock;
  Clock::time_point now = Clock::from_time_t(1'700'000'000);
  KeyRing ring(std::chrono::seconds(100), [&] { return now; });
  const std::vector<KeyConfig> first = parse_key_configs(ring.encoded_configs());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(ring.max_age().count(), 100);
  now += std::chrono::seconds(100);
  const std::vector<KeyConfig> second = parse_key_configs(ring.encoded_configs());
  ASSERT_EQ(second.size(), 2u);  // the new key first, the old one still accepted
  EXPECT_EQ(second[1].key_id, first[0].key_id);
  EXPECT_EQ(second[0].key_id, static_cast<uint8_t>(first[0].key_id + 1));
  EXPECT_NE(second[0].public_key, first[0].public_key);
  EXPECT_TRUE(ring.find(first[0].key_id));
  now += std::chrono::seconds(100);
  EXPECT_FALSE(ring.find(first[0].key_id));  // two periods old: expired
  EXPECT_TRUE(ring.find(second[0].key_id));
  EXPECT_EQ(parse_key_configs(ring.encoded_configs()).size(), 2u);
}

// The gateway in front of the real handler on the tiny chat model.
class RecordingConnection : public server::ClientConnection {
 public:
  bool write(std::string_view bytes) override {
    writes.emplace_back(bytes);
    return true;
  }
  bool client_present(std::string_view) override { return true; }
  std::vector<std::string> writes;
};

struct Node {
  Node() : keys(std::chrono::seconds(3600)), gateway(tiny_handler().handler, keys) {}

  KeyConfig key() { return parse_key_configs(keys.encoded_configs()).front(); }

  Bytes request(const std::string& path, const std::string& body, OhttpMode mode, ClientRequest* out = nullptr,
                const std::string& date = format_http_date(std::chrono::system_clock::now())) {
    BinaryRequest r{.method = "POST", .scheme = "https", .authority = "", .path = path,
                    .headers = {{"date", date}, {"content-type", "application/json"}}, .content = body, .trailers = {}};
    ClientRequest request = ClientRequest::encapsulate(key(), {}, mode, encode_request(r, Framing::known_length, 100));
    const Bytes message = request.encapsulated();
    if (out) *out = std::move(request);
    return message;
  }
  server::ApiResponse post(ByteView message, OhttpMode mode) {
    return gateway.handle({.method = "POST", .path = "/gateway",
                           .headers = {{"Content-Type", request_media_type(mode)}},
                           .body = std::string(as_text(message)), .client_left = {}});
  }
  // The answer's Binary HTTP response, decrypted.
  BinaryResponse answer(const server::ApiResponse& outer, const ClientRequest& request, RecordingConnection* record = nullptr) {
    EXPECT_EQ(outer.status, 200) << outer.body;
    if (request.mode() == OhttpMode::plain) return decode_response(request.open_response(as_bytes(outer.body)));
    RecordingConnection local;
    RecordingConnection& c = record ? *record : local;
    EXPECT_TRUE(outer.write_body(c));
    ChunkedResponseReader reader = request.response_reader();
    Bytes plain;
    for (const std::string& w : c.writes) put_bytes(plain, reader.feed(as_bytes(w)));
    put_bytes(plain, reader.finish());
    return decode_response(plain);
  }

  KeyRing keys;
  Gateway gateway;
};

Node& node() {
  static Node* n = new Node();  // one model load for the suite; never destroyed mid-run
  return *n;
}

const std::string kChat = R"({"messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"temperature":0})";
const std::string kStreamedChat =
    R"({"messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"temperature":0,"stream":true})";

TEST(OhttpGateway, AnswersPlainAndChunkedStreamedRequests) {
  for (OhttpMode mode : {OhttpMode::plain, OhttpMode::chunked}) {
    ClientRequest request = ClientRequest::begin_chunked(node().key(), {});
    const Bytes message = node().request("/v1/chat/completions", kChat, mode, &request);
    const server::ApiResponse outer = node().post(message, mode);
    EXPECT_EQ(outer.content_type, response_media_type(mode));
    const BinaryResponse inner = node().answer(outer, request);
    EXPECT_EQ(inner.status, 200);
    const json reply = json::parse(inner.content);
    EXPECT_EQ(reply["object"], "chat.completion");
    EXPECT_EQ(reply["usage"]["completion_tokens"], 8);
  }
  // Streamed: each write of the handler is one chunk of whole 256-byte buckets (plus the Binary
  // HTTP chunk length and the AEAD tag), and the events parse.
  ClientRequest request = ClientRequest::begin_chunked(node().key(), {});
  const Bytes message = node().request("/v1/chat/completions", kStreamedChat, OhttpMode::chunked, &request);
  RecordingConnection record;
  const BinaryResponse inner = node().answer(node().post(message, OhttpMode::chunked), request, &record);
  EXPECT_EQ(inner.status, 200);
  ASSERT_GE(record.writes.size(), 3u);  // the head, events, the end
  for (size_t i = 1; i + 1 < record.writes.size(); ++i) {
    const std::string& w = record.writes[i];
    size_t pos = 0;
    const std::optional<uint64_t> length = read_varint(as_bytes(w), pos);
    ASSERT_TRUE(length);
    EXPECT_EQ(*length, w.size() - pos);
    EXPECT_EQ((*length - kAeadTagSize - 2) % 256, 0u) << "chunk " << i << " of " << *length << " bytes";
  }
  EXPECT_NE(inner.content.find("data: [DONE]"), std::string::npos);
  std::string text;
  for (size_t at = 0; (at = inner.content.find("data: {", at)) != std::string::npos; ++at) {
    const json event = json::parse(inner.content.substr(at + 6, inner.content.find('\n', at) - at - 6));
    if (event["choices"].size() && event["choices"][0]["delta"].contains("content"))
      text += event["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_FALSE(text.empty());
}

TEST(OhttpGateway, EveryFlippedByteAndTruncationIsRefusedWith4xx) {
  for (OhttpMode mode : {OhttpMode::plain, OhttpMode::chunked}) {
    const Bytes message = node().request("/v1/chat/completions", kChat, mode);
    int refused = 0;
    for (size_t i = 0; i < message.size(); ++i) {
      Bytes flipped = message;
      flipped[i] ^= 0x01;
      const server::ApiResponse r = node().post(flipped, mode);
      EXPECT_GE(r.status, 400) << "byte " << i;
      EXPECT_LT(r.status, 500) << "byte " << i;
      refused += r.status >= 400 && r.status < 500;
    }
    for (size_t n = 0; n < message.size(); ++n) {
      const server::ApiResponse r = node().post(ByteView(message).first(n), mode);
      EXPECT_TRUE(r.status >= 400 && r.status < 500) << "truncated to " << n << ": " << r.status;
      refused += r.status >= 400 && r.status < 500;
    }
    EXPECT_EQ(refused, static_cast<int>(2 * message.size()));
  }
}

TEST(OhttpGateway, ReplaysUnknownKeysDatesAndRoutes) {
  const Bytes message = node().request("/v1/chat/completions", kChat, OhttpMode::plain);
  EXPECT_EQ(node().post(message, OhttpMode::plain).status, 200);
  const server::ApiResponse replay = node().post(message, OhttpMode::plain);
  EXPECT_EQ(replay.status, 400);
  EXPECT_NE(replay.body.find("replayed"), std::string::npos);

  Bytes unknown = node().request("/v1/chat/completions", kChat, OhttpMode::plain);
  unknown[0] ^= 0x80;  // another key id
  const server::ApiResponse refetch = node().post(unknown, OhttpMode::plain);
  EXPECT_EQ(refetch.status, 422);
  EXPECT_EQ(json::parse(refetch.body)["type"], "https://iana.org/assignments/http-problem-types#ohttp-key");

  EXPECT_EQ(node().gateway.handle({.method = "POST", .path = "/gateway", .headers = {{"content-type", "application/json"}},
                                   .body = "{}", .client_left = {}}).status, 415);

  // Inner errors come back encrypted: a stale Date, no Date, a route the node does not serve.
  ClientRequest request = ClientRequest::begin_chunked(node().key(), {});
  const Bytes stale = node().request("/v1/chat/completions", kChat, OhttpMode::plain, &request,
                                     format_http_date(std::chrono::system_clock::now() - std::chrono::minutes(5)));
  BinaryResponse inner = node().answer(node().post(stale, OhttpMode::plain), request);
  EXPECT_EQ(inner.status, 400);
  EXPECT_EQ(json::parse(inner.content)["type"], "https://iana.org/assignments/http-problem-types#date");
  bool has_date = false;
  for (const HttpField& f : inner.headers) has_date |= f.name == "date";
  EXPECT_TRUE(has_date);
  const Bytes undated = node().request("/v1/chat/completions", kChat, OhttpMode::plain, &request, "");
  EXPECT_EQ(node().answer(node().post(undated, OhttpMode::plain), request).status, 400);
  const Bytes metrics = node().request("/metrics", "", OhttpMode::plain, &request);
  EXPECT_EQ(node().answer(node().post(metrics, OhttpMode::plain), request).status, 404);
  const Bytes bad_json = node().request("/v1/chat/completions", "{", OhttpMode::chunked, &request);
  EXPECT_EQ(node().answer(node().post(bad_json, OhttpMode::chunked), request).status, 400);
}

}  // namespace
}  // namespace orchard::cloud
