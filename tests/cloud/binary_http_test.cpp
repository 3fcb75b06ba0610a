#include "cloud/binary_http.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "test_paths.h"

namespace orchard::cloud {
namespace {

using json = nlohmann::json;
using namespace std::string_literals;

json examples_file() {
  std::ifstream in(test::shared_path("pcc/rfc9292-examples.json"));
  if (!in) ADD_FAILURE() << "cannot open " << test::shared_path("pcc/rfc9292-examples.json");
  return json::parse(in);
}

// The sections of the file whose messages decode, and the one whose messages must be refused.
const char* const kValidSections[] = {"examples", "truncated_valid", "ohttp_appendix_messages"};

Bytes hex_of(const json& entry) { return from_hex(entry.at("hex").get<std::string>()); }

std::vector<HttpField> fields_of(const json& pairs) {
  std::vector<HttpField> out;
  for (const json& pair : pairs) {
    EXPECT_EQ(pair.size(), 2u);
    out.push_back({pair.at(0).get<std::string>(), pair.at(1).get<std::string>()});
  }
  return out;
}

BinaryRequest expected_request(const json& e) {
  BinaryRequest r;
  r.method = e.at("method");
  r.scheme = e.at("scheme");
  r.authority = e.at("authority");
  r.path = e.at("path");
  r.headers = fields_of(e.at("headers"));
  r.content = e.at("content");
  r.trailers = fields_of(e.at("trailers"));
  return r;
}

BinaryResponse expected_response(const json& e) {
  BinaryResponse r;
  for (const json& info : e.at("informational"))
    r.informational.push_back({info.at("status"), fields_of(info.at("headers"))});
  r.status = e.at("status");
  r.headers = fields_of(e.at("headers"));
  r.content = e.at("content");
  r.trailers = fields_of(e.at("trailers"));
  return r;
}

void expect_same(const BinaryRequest& got, const BinaryRequest& want, const std::string& what) {
  EXPECT_EQ(got.method, want.method) << what;
  EXPECT_EQ(got.scheme, want.scheme) << what;
  EXPECT_EQ(got.authority, want.authority) << what;
  EXPECT_EQ(got.path, want.path) << what;
  EXPECT_EQ(got.headers, want.headers) << what;
  EXPECT_EQ(got.content, want.content) << what;
  EXPECT_EQ(got.trailers, want.trailers) << what;
}

void expect_same(const BinaryResponse& got, const BinaryResponse& want, const std::string& what) {
  ASSERT_EQ(got.informational.size(), want.informational.size()) << what;
  for (size_t i = 0; i < got.informational.size(); ++i) {
    EXPECT_EQ(got.informational[i].status, want.informational[i].status) << what;
    EXPECT_EQ(got.informational[i].headers, want.informational[i].headers) << what;
  }
  EXPECT_EQ(got.status, want.status) << what;
  EXPECT_EQ(got.headers, want.headers) << what;
  EXPECT_EQ(got.content, want.content) << what;
  EXPECT_EQ(got.trailers, want.trailers) << what;
}

// The message of the BinaryHttpError `f` throws ("" and a failure when it throws nothing).
template <typename F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const BinaryHttpError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no BinaryHttpError";
  return "";
}

// What the stream decoder makes of `message` fed in the given pieces.
struct Streamed {
  int status = 0;
  std::vector<HttpField> headers;
  std::string content;
  bool done = false;
};

Streamed stream(ByteView message, const std::vector<size_t>& cuts, const BinaryHttpLimits& limits = {}) {
  ResponseStreamDecoder decoder(limits);
  Streamed out;
  size_t from = 0;
  for (size_t cut : cuts) {
    out.content += decoder.feed(message.subspan(from, cut - from));
    from = cut;
  }
  out.content += decoder.feed(message.subspan(from));
  out.done = decoder.done();
  decoder.finish();
  EXPECT_TRUE(decoder.head_done());
  out.status = decoder.status();
  out.headers = decoder.headers();
  return out;
}

// Raw messages, for what the encoder will not write.
void put_string(Bytes& out, std::string_view s) {
  put_varint(out, s.size());
  put_bytes(out, as_bytes(s));
}

Bytes known_section(const std::vector<HttpField>& fields) {
  Bytes body;
  for (const HttpField& f : fields) {
    put_string(body, f.name);
    put_string(body, f.value);
  }
  Bytes out;
  put_varint(out, body.size());
  put_bytes(out, body);
  return out;
}

// A known-length GET with these header fields, no content, no trailers.
Bytes raw_request(const std::vector<HttpField>& headers, std::string_view method = "GET", std::string_view path = "/") {
  Bytes out = {0};
  put_string(out, method);
  put_string(out, "https");
  put_string(out, "example.com");
  put_string(out, path);
  put_bytes(out, known_section(headers));
  put_bytes(out, Bytes{0, 0});
  return out;
}

BinaryRequest sample_request() {
  BinaryRequest r;
  r.method = "POST";
  r.scheme = "https";
  r.authority = "gateway.example:8443";
  r.path = "/v1/chat/completions?stream=true";
  r.headers = {{"content-type", "application/json"}, {"x-empty", ""}, {"accept", "text/event-stream"}};
  r.content = "{\"messages\":[]}\0\xff\x01 binary"s;
  r.trailers = {{"x-checksum", "abc123"}};
  return r;
}

BinaryResponse sample_response() {
  BinaryResponse r;
  r.informational = {{100, {}}, {103, {{"link", "</a.css>; rel=preload"}, {"link", "</b.js>; rel=preload"}}}};
  r.status = 200;
  r.headers = {{"content-type", "text/event-stream"}, {"cache-control", "no-store"}};
  r.content = std::string(20000, 'x') + "data: [DONE]\n\n";  // a 4-byte length
  r.trailers = {{"server-timing", "total;dur=12"}};
  return r;
}

// ---------------------------------------------------------------------------------------------

TEST(BinaryHttp, FileLayoutIsTheOneTheseTestsRead) {
  const json file = examples_file();
  std::set<std::string> keys;
  for (const auto& [key, value] : file.items()) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::string>{"source", "encoding", "examples", "truncated_valid", "ohttp_appendix_messages",
                                         "invalid", "verified"}));
  // The counts pcc/README.md gives: a section read as empty or missing fails here.
  EXPECT_EQ(file.at("examples").size(), 4u);
  EXPECT_EQ(file.at("truncated_valid").size(), 4u);
  EXPECT_EQ(file.at("ohttp_appendix_messages").size(), 2u);
  EXPECT_EQ(file.at("invalid").size(), 5u);
  EXPECT_TRUE(file.at("verified").get<bool>());
}

TEST(BinaryHttp, DecodesEveryValidMessageOfTheFile) {
  const json file = examples_file();
  size_t checked = 0, expected = 0, requests = 0, responses = 0;
  for (const char* section : kValidSections) {
    size_t in_section = 0;
    for (const json& e : file.at(section)) {
      const std::string what = std::string(section) + ": " + e.at("name").get<std::string>();
      const Bytes message = hex_of(e);
      DecodedFraming framing;
      if (e.at("request").get<bool>()) {
        expect_same(decode_request(message, {}, &framing), expected_request(e), what);
        EXPECT_NE(
            refusal([&] { decode_response(message); }).find("expected a response (framing indicator 1 or 3), got"),
            std::string::npos)
            << what;
        ++requests;
      } else {
        expect_same(decode_response(message, {}, &framing), expected_response(e), what);
        EXPECT_NE(refusal([&] { decode_request(message); }).find("expected a request (framing indicator 0 or 2), got"),
                  std::string::npos)
            << what;
        ++responses;
      }
      EXPECT_EQ(framing.framing_indicator, e.at("framing_indicator").get<uint64_t>()) << what;
      EXPECT_EQ(framing.padding, e.at("padding_len").get<size_t>()) << what;
      ++in_section;
    }
    EXPECT_EQ(in_section, file.at(section).size()) << section;
    checked += in_section;
    expected += file.at(section).size();
  }
  EXPECT_EQ(checked, expected);
  EXPECT_EQ(checked, 10u);
  EXPECT_EQ(requests, 7u);
  EXPECT_EQ(responses, 3u);
}

TEST(BinaryHttp, RefusesEveryInvalidMessageOfTheFile) {
  const json file = examples_file();
  size_t refused = 0;
  for (const json& e : file.at("invalid")) {
    const std::string name = e.at("name");
    const Bytes message = hex_of(e);
    const std::string as_request = refusal([&] { decode_request(message); });
    const std::string as_response = refusal([&] { decode_response(message); });
    const std::string streamed = refusal([&] { stream(message, {}); });
    EXPECT_EQ(as_request.rfind("binary HTTP: ", 0), 0u) << name << ": " << as_request;
    EXPECT_EQ(as_response.rfind("binary HTTP: ", 0), 0u) << name << ": " << as_response;
    EXPECT_EQ(streamed, as_response) << name;
    ++refused;
  }
  EXPECT_EQ(refused, file.at("invalid").size());
  EXPECT_EQ(refused, 5u);

  // What the messages say, for the ones whose cause is plain.
  const json& invalid = file.at("invalid");
  auto hex_named = [&](const std::string& name) {
    for (const json& e : invalid) {
      if (e.at("name") == name) return hex_of(e);
    }
    ADD_FAILURE() << "no invalid message named " << name;
    return Bytes{};
  };
  EXPECT_EQ(refusal([&] { decode_request(hex_named("framing indicator 4")); }),
            "binary HTTP: unknown framing indicator 4 (RFC 9292 defines 0 to 3)");
  EXPECT_EQ(refusal([&] { decode_request(hex_named("known-length request cut inside header section")); }),
            "binary HTTP: truncated in the path");
  EXPECT_EQ(refusal([&] { decode_request(hex_named("indeterminate-length request cut inside a field line")); }),
            "binary HTTP: truncated in the header section");
  EXPECT_EQ(refusal([&] { decode_response(hex_named("known-length response with content length past end")); }),
            "binary HTTP: truncated in the content");
  EXPECT_EQ(refusal([&] { decode_response(hex_named("response status 99")); }),
            "binary HTTP: status 99 is not a valid final status (200..599) nor an informational one (100..199)");
}

TEST(BinaryHttp, EncodesTheRfcExamplesByteForByte) {
  // The RFC's four examples write every part (none is truncated), so the encoder gives their bytes.
  const json file = examples_file();
  size_t checked = 0;
  for (const json& e : file.at("examples")) {
    const Bytes message = hex_of(e);
    const auto framing =
        e.at("framing_indicator").get<uint64_t>() < 2 ? Framing::known_length : Framing::indeterminate_length;
    const size_t padding = e.at("padding_len");
    const Bytes encoded = e.at("request").get<bool>() ? encode_request(expected_request(e), framing, padding)
                                                      : encode_response(expected_response(e), framing, padding);
    EXPECT_EQ(to_hex(encoded), to_hex(message)) << e.at("name");
    ++checked;
  }
  EXPECT_EQ(checked, 4u);
}

TEST(BinaryHttp, RoundTripsRequestsAndResponsesInBothFramings) {
  BinaryRequest empty_request;
  empty_request.method = "GET";
  BinaryResponse bare_response;
  bare_response.status = 404;
  size_t trips = 0;
  for (Framing framing : {Framing::known_length, Framing::indeterminate_length}) {
    for (size_t padding : {0, 1, 37}) {
      const std::string what = str_cat("framing ", static_cast<int>(framing), " padding ", padding);
      for (const BinaryRequest& request : {sample_request(), empty_request}) {
        DecodedFraming decoded;
        expect_same(decode_request(encode_request(request, framing, padding), {}, &decoded), request, what);
        EXPECT_EQ(decoded.framing_indicator, framing == Framing::known_length ? 0u : 2u);
        EXPECT_EQ(decoded.padding, padding);
        ++trips;
      }
      for (const BinaryResponse& response : {sample_response(), bare_response}) {
        DecodedFraming decoded;
        const Bytes message = encode_response(response, framing, padding);
        expect_same(decode_response(message, {}, &decoded), response, what);
        EXPECT_EQ(decoded.framing_indicator, framing == Framing::known_length ? 1u : 3u);
        EXPECT_EQ(decoded.padding, padding);
        const Streamed s = stream(message, {message.size() / 3, message.size() / 2});
        EXPECT_EQ(s.status, response.status);
        EXPECT_EQ(s.headers, response.headers);
        EXPECT_EQ(s.content, response.content);
        EXPECT_TRUE(s.done);
        ++trips;
      }
    }
  }
  EXPECT_EQ(trips, 24u);
}

TEST(BinaryHttp, StreamedPiecesMakeOneMessage) {
  const std::string first = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
  const std::string second(70000, 'y');  // a 4-byte chunk length
  Bytes message = encode_response_head(200, {{"content-type", "text/event-stream"}});
  put_bytes(message, encode_content_chunk(as_bytes(first)));
  EXPECT_TRUE(encode_content_chunk({}).empty());
  put_bytes(message, encode_content_chunk({}));
  put_bytes(message, encode_content_chunk(as_bytes(second)));
  put_bytes(message, encode_response_end());

  DecodedFraming framing;
  const BinaryResponse whole = decode_response(message, {}, &framing);
  EXPECT_EQ(framing.framing_indicator, 3u);
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(whole.headers, (std::vector<HttpField>{{"content-type", "text/event-stream"}}));
  EXPECT_EQ(whole.content, first + second);
  EXPECT_TRUE(whole.trailers.empty());

  // A byte at a time, the decoder holds at most one length or field line, never the content.
  ResponseStreamDecoder decoder;
  std::string content;
  size_t most_buffered = 0;
  for (size_t i = 0; i < message.size(); ++i) {
    content += decoder.feed(ByteView(message).subspan(i, 1));
    most_buffered = std::max(most_buffered, decoder.buffered());
    if (i == 0) {
      EXPECT_FALSE(decoder.head_done());
    }
  }
  EXPECT_TRUE(decoder.head_done());
  EXPECT_TRUE(decoder.done());
  decoder.finish();
  EXPECT_EQ(content, first + second);
  EXPECT_LE(most_buffered, 32u);
  EXPECT_EQ(decoder.buffered(), 0u);

  EXPECT_EQ(refusal([] { encode_response_head(99, {}); }),
            "binary HTTP: status 99 is not a valid final status (200..599)");
}

TEST(BinaryHttp, StreamDecoderGivesTheSameResultForEverySplit) {
  const json file = examples_file();
  size_t responses = 0, requests = 0, splits = 0;
  for (const char* section : kValidSections) {
    for (const json& e : file.at(section)) {
      const std::string name = e.at("name");
      const Bytes message = hex_of(e);
      if (e.at("request").get<bool>()) {
        // A request is not what a stream decoder reads, however it arrives.
        for (size_t cut = 0; cut <= message.size(); ++cut) {
          EXPECT_NE(refusal([&] { stream(message, {cut}); }).find("expected a response"), std::string::npos) << name;
        }
        ++requests;
        continue;
      }
      const BinaryResponse whole = decode_response(message);
      auto check = [&](const Streamed& s, const std::string& how) {
        EXPECT_EQ(s.status, whole.status) << name << how;
        EXPECT_EQ(s.headers, whole.headers) << name << how;
        EXPECT_EQ(s.content, whole.content) << name << how;
        ++splits;
      };
      for (size_t cut = 0; cut <= message.size(); ++cut) check(stream(message, {cut}), str_cat(" cut at ", cut));
      std::vector<size_t> every_byte;
      for (size_t i = 1; i < message.size(); ++i) every_byte.push_back(i);
      check(stream(message, every_byte), " a byte at a time");
      ++responses;
    }
  }
  EXPECT_EQ(responses, 3u);
  EXPECT_EQ(requests, 7u);
  EXPECT_EQ(splits, 425u);  // every cut of 368, 48 and 3 bytes, and a byte at a time

  // Malformed bytes are refused as they arrive, not at finish(); and a refused stream stays so.
  ResponseStreamDecoder decoder;
  EXPECT_EQ(refusal([&] {
              decoder.feed(Bytes{0x01, 0x40});
              decoder.feed(Bytes{0x63});
            }),
            "binary HTTP: status 99 is not a valid final status (200..599) nor an informational one (100..199)");
  EXPECT_EQ(refusal([&] { decoder.feed(Bytes{0x00}); }), "binary HTTP: the message was already refused");

  ResponseStreamDecoder padded;
  padded.feed(encode_response(sample_response()));
  EXPECT_TRUE(padded.done());
  padded.feed(Bytes{0, 0, 0});
  const Bytes nonzero = {0, 7};
  EXPECT_EQ(refusal([&] { padded.feed(nonzero); }),
            "binary HTTP: non-zero byte after the message (padding must be zeros)");
}

// Every length position of both framings, declaring 2 GiB with a few bytes behind it: refused at
// once from the declared length, whether or not the limits would allow it.
TEST(BinaryHttp, RefusesTwoGibibyteLengthsEverywhereQuickly) {
  constexpr uint64_t kHuge = uint64_t{1} << 31;
  Bytes huge;
  put_varint(huge, kHuge);
  auto with_huge = [&](Bytes prefix) {
    put_bytes(prefix, huge);
    put_bytes(prefix, as_bytes("abcdefgh"));
    return prefix;
  };
  auto control = [](size_t fields, uint8_t framing) {
    Bytes out = {framing};
    const char* values[] = {"GET", "https", "example.com", "/"};
    for (size_t i = 0; i < fields; ++i) put_string(out, values[i]);
    return out;
  };
  struct Case {
    std::string where;
    Bytes message;
    bool request;
  };
  std::vector<Case> cases;
  const char* control_names[] = {"method", "scheme", "authority", "path"};
  for (uint8_t framing : {0, 2}) {
    for (size_t i = 0; i < 4; ++i) cases.push_back({control_names[i], with_huge(control(i, framing)), true});
  }
  const Bytes known_headers = known_section({{"host", "example.com"}});
  Bytes after_headers = control(4, 0);
  put_bytes(after_headers, known_headers);
  Bytes after_content = after_headers;
  put_string(after_content, "body");
  cases.push_back({"request header section", with_huge(control(4, 0)), true});
  cases.push_back({"request content", with_huge(after_headers), true});
  cases.push_back({"request trailer section", with_huge(after_content), true});

  // Indeterminate length: a field name, a field value, a content chunk, a trailer name and value.
  Bytes indeterminate = control(4, 2);
  cases.push_back({"header field name", with_huge(indeterminate), true});
  put_string(indeterminate, "host");
  cases.push_back({"header field value", with_huge(indeterminate), true});
  put_string(indeterminate, "example.com");
  put_varint(indeterminate, 0);
  cases.push_back({"first content chunk", with_huge(indeterminate), true});
  put_string(indeterminate, "body");
  cases.push_back({"second content chunk", with_huge(indeterminate), true});
  put_varint(indeterminate, 0);
  cases.push_back({"trailer field name", with_huge(indeterminate), true});
  put_string(indeterminate, "x-trailer");
  cases.push_back({"trailer field value", with_huge(indeterminate), true});

  // Responses, known length: an informational section, the header section, content, trailers.
  cases.push_back({"informational section", with_huge(Bytes{0x01, 0x40, 0x67}), false});
  cases.push_back({"response header section", with_huge(Bytes{0x01, 0x40, 0xc8}), false});
  cases.push_back({"response content", with_huge(Bytes{0x01, 0x40, 0xc8, 0x00}), false});
  cases.push_back({"response trailer section", with_huge(Bytes{0x01, 0x40, 0xc8, 0x00, 0x00}), false});
  cases.push_back({"response header field name", with_huge(Bytes{0x03, 0x40, 0xc8}), false});
  cases.push_back({"response content chunk", with_huge(Bytes{0x03, 0x40, 0xc8, 0x00}), false});
  cases.push_back({"response chunk after a chunk", with_huge(Bytes{0x03, 0x40, 0xc8, 0x00, 0x01, 'a'}), false});

  BinaryHttpLimits unlimited;
  unlimited.max_field_section = unlimited.max_fields = unlimited.max_content = unlimited.max_control_data =
      unlimited.max_informational = std::numeric_limits<size_t>::max();
  const auto start = std::chrono::steady_clock::now();
  size_t refused = 0;
  for (const Case& c : cases) {
    const std::string message =
        refusal([&] { c.request ? (void)decode_request(c.message) : (void)decode_response(c.message); });
    EXPECT_NE(message.find("2147483648"), std::string::npos) << c.where << ": " << message;
    EXPECT_NE(message.find("limit"), std::string::npos) << c.where << ": " << message;
    // Past the limits, the bytes that are not there refuse it.
    const std::string unlimited_message = refusal(
        [&] { c.request ? (void)decode_request(c.message, unlimited) : (void)decode_response(c.message, unlimited); });
    EXPECT_NE(unlimited_message.find("truncated"), std::string::npos) << c.where << ": " << unlimited_message;
    if (!c.request) {
      // The stream decoder refuses at the length, without waiting for the bytes.
      ResponseStreamDecoder decoder;
      EXPECT_EQ(refusal([&] { decoder.feed(c.message); }), message) << c.where;
      ResponseStreamDecoder patient(unlimited);
      patient.feed(c.message);
      EXPECT_LE(patient.buffered(), 16u) << c.where;
    }
    ++refused;
  }
  EXPECT_EQ(refused, 24u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));

  EXPECT_EQ(refusal([&] { decode_request(with_huge(control(4, 0))); }),
            "binary HTTP: header section length 2147483648 exceeds the limit of 65536 bytes");

  // The largest varint there is, in the same places.
  Bytes largest = {0x01, 0x40, 0xc8, 0x00};
  put_varint(largest, (uint64_t{1} << 62) - 1);
  EXPECT_EQ(refusal([&] { decode_response(largest, unlimited); }), "binary HTTP: truncated in the content");
  EXPECT_EQ(refusal([&] { decode_response(largest); }),
            "binary HTTP: content length 4611686018427387903 exceeds the limit of 8388608 bytes");
}

// Every proper prefix of every valid message of the file: it decodes where §3.8 allows a cut,
// and is refused with BinaryHttpError anywhere else; never another exception.
TEST(BinaryHttp, EveryTruncationDecodesOrIsRefused) {
  const json file = examples_file();
  size_t prefixes = 0, decoded = 0;
  std::map<std::string, std::set<size_t>> cuts_that_decode;
  for (const char* section : kValidSections) {
    for (const json& e : file.at(section)) {
      const std::string name = e.at("name");
      const Bytes message = hex_of(e);
      const bool request = e.at("request");
      for (size_t cut = 0; cut < message.size(); ++cut) {
        const ByteView prefix = ByteView(message).first(cut);
        ++prefixes;
        try {
          if (request) {
            const BinaryRequest whole = expected_request(e), got = decode_request(prefix);
            EXPECT_EQ(got.method, whole.method);
            EXPECT_EQ(got.path, whole.path);
            EXPECT_TRUE(got.headers.empty() || got.headers == whole.headers) << name << " cut at " << cut;
            EXPECT_TRUE(got.content.empty() || got.content == whole.content) << name << " cut at " << cut;
            EXPECT_TRUE(got.trailers.empty() || got.trailers == whole.trailers) << name << " cut at " << cut;
          } else {
            const BinaryResponse whole = expected_response(e), got = decode_response(prefix);
            EXPECT_EQ(got.status, whole.status);
            EXPECT_EQ(got.informational.size(), whole.informational.size());
            EXPECT_TRUE(got.headers.empty() || got.headers == whole.headers) << name << " cut at " << cut;
            EXPECT_TRUE(got.content.empty() || got.content == whole.content) << name << " cut at " << cut;
            EXPECT_TRUE(got.trailers.empty() || got.trailers == whole.trailers) << name << " cut at " << cut;
          }
          cuts_that_decode[name].insert(cut);
          ++decoded;
        } catch (const BinaryHttpError&) {
        } catch (const std::exception& other) {
          ADD_FAILURE() << name << " cut at " << cut << ": not a BinaryHttpError: " << other.what();
        }
      }
    }
  }
  EXPECT_GT(prefixes, 1000u);
  EXPECT_GT(decoded, 0u);
  // The known-length request: after the control data (23 bytes), after the header section, and
  // after the content length (the last two bytes each removed, RFC 9292 §5.1).
  const size_t request_size = hex_of(file.at("examples").at(0)).size();
  EXPECT_EQ(cuts_that_decode["known-length request"], (std::set<size_t>{23, request_size - 2, request_size - 1}));
  // The known-length response: after its status, its empty header section, its content; not
  // inside the trailer section.
  EXPECT_EQ(cuts_that_decode["known-length response (from chunked HTTP/1.1), with trailer"],
            (std::set<size_t>{3, 4, 34}));
  // The response with informational responses: never inside them or the content.
  const std::set<size_t>& informational_cuts =
      cuts_that_decode["indeterminate-length response with informational responses"];
  const size_t response_size = hex_of(file.at("examples").at(2)).size();
  EXPECT_EQ(informational_cuts.size(), 3u);
  EXPECT_TRUE(informational_cuts.count(response_size - 1));   // after the content terminator
  EXPECT_TRUE(informational_cuts.count(response_size - 54));  // after the header section's terminator
}

TEST(BinaryHttp, EnforcesTheLimits) {
  BinaryHttpLimits limits;
  for (Framing framing : {Framing::known_length, Framing::indeterminate_length}) {
    BinaryRequest request;
    request.method = "GET";
    for (size_t i = 0; i < limits.max_fields; ++i) request.headers.push_back({"x-field-" + std::to_string(i), "v"});
    EXPECT_EQ(decode_request(encode_request(request, framing)).headers.size(), limits.max_fields);
    request.headers.push_back({"x-one-more", "v"});
    EXPECT_EQ(refusal([&] { decode_request(encode_request(request, framing)); }),
              "binary HTTP: header section has more than 256 fields");
    request.trailers = request.headers;
    request.headers.clear();
    EXPECT_EQ(refusal([&] { decode_request(encode_request(request, framing)); }),
              "binary HTTP: trailer section has more than 256 fields");

    BinaryResponse response;
    response.content = std::string(limits.max_content, 'c');
    EXPECT_EQ(decode_response(encode_response(response, framing)).content.size(), limits.max_content);
    response.content += 'c';
    const std::string over = refusal([&] { decode_response(encode_response(response, framing)); });
    EXPECT_NE(over.find("exceeds the limit of 8388608 bytes"), std::string::npos) << over;
    EXPECT_EQ(refusal([&] { stream(encode_response(response, framing), {100}); }), over);
  }

  // Content over the limit across chunks, each under it.
  BinaryHttpLimits small;
  small.max_content = 10;
  Bytes chunks = encode_response_head(200, {});
  put_bytes(chunks, encode_content_chunk(as_bytes("123456")));
  put_bytes(chunks, encode_content_chunk(as_bytes("7890")));
  Bytes one_more = chunks;
  put_bytes(chunks, encode_response_end());
  EXPECT_EQ(decode_response(chunks, small).content, "1234567890");
  put_bytes(one_more, encode_content_chunk(as_bytes("!")));
  put_bytes(one_more, encode_response_end());
  EXPECT_EQ(refusal([&] { decode_response(one_more, small); }),
            "binary HTTP: content exceeds the limit of 10 bytes (a chunk of 1 bytes after 10)");

  // A field section's bytes, known and indeterminate length.
  small = {};
  small.max_field_section = 32;
  BinaryResponse response;
  response.headers = {{"x-a", std::string(25, 'a')}};  // 1 + 3 + 1 + 25 = 30 bytes
  EXPECT_EQ(decode_response(encode_response(response), small).headers, response.headers);
  EXPECT_EQ(decode_response(encode_response(response, Framing::indeterminate_length), small).headers, response.headers);
  response.headers.push_back({"x", "y"});
  EXPECT_EQ(refusal([&] { decode_response(encode_response(response), small); }),
            "binary HTTP: header section length 34 exceeds the limit of 32 bytes");
  EXPECT_EQ(refusal([&] { decode_response(encode_response(response, Framing::indeterminate_length), small); }),
            "binary HTTP: header section exceeds the limit of 32 bytes (a value of 1 bytes for field \"x\")");

  // Control data, all four together.
  small = {};
  small.max_control_data = 16;
  BinaryRequest request;
  request.method = "GET";
  request.scheme = "https";
  request.path = "/1234567";  // 3 + 5 + 8 = 16
  EXPECT_EQ(decode_request(encode_request(request), small).path, "/1234567");
  request.path += "9";
  EXPECT_EQ(refusal([&] { decode_request(encode_request(request), small); }),
            "binary HTTP: path length 9 exceeds the control data limit of 16 bytes (method, scheme, authority and "
            "path together)");

  // Informational responses.
  response = {};
  for (int i = 0; i < 8; ++i) response.informational.push_back({100 + i, {}});
  EXPECT_EQ(decode_response(encode_response(response)).informational.size(), 8u);
  response.informational.push_back({199, {}});
  EXPECT_EQ(refusal([&] { decode_response(encode_response(response, Framing::indeterminate_length)); }),
            "binary HTTP: more than 8 informational responses");
}

TEST(BinaryHttp, RefusesFieldsThatWouldMakeAnHttp2MessageMalformed) {
  const std::pair<std::vector<HttpField>, std::string> refused[] = {
      {{{"Host", "example.com"}}, "field name \"Host\" in the header section is not lowercase"},
      {{{"x y", "1"}}, "field name \"x y\" in the header section has byte 0x20, which field names do not allow"},
      {{{"x\xff", "1"}}, "field name \"x\\xff\" in the header section has byte 0xff, which field names do not allow"},
      {{{"x-a", "1\r\nx-b: 2"}}, "value of field \"x-a\" in the header section has a NUL, CR or LF"},
      {{{"x-a", std::string("a\0b", 3)}}, "value of field \"x-a\" in the header section has a NUL, CR or LF"},
      {{{"x-a", " padded"}}, "value of field \"x-a\" in the header section starts or ends with whitespace"},
      {{{"x-a", "padded\t"}}, "value of field \"x-a\" in the header section starts or ends with whitespace"},
      {{{":path", "/admin"}}, "pseudo-field \":path\" in the header section (the control data carries it)"},
      {{{"x-a", "1"}, {":protocol", "websocket"}},
       "pseudo-field \":protocol\" after a regular field in the header section"},
      {{{":", "1"}}, "pseudo-field name \":\" with nothing after the colon in the header section"},
      {{{"transfer-encoding", "chunked"}}, "connection-specific field \"transfer-encoding\" in the header section"},
      {{{"connection", "close"}}, "connection-specific field \"connection\" in the header section"},
      {{{"te", "gzip"}}, "field \"te\" with a value other than \"trailers\" in the header section"},
  };
  for (const auto& [headers, why] : refused) {
    EXPECT_EQ(refusal([&] { decode_request(raw_request(headers)); }), "binary HTTP: " + why);
  }
  // An empty name can only be written in a known-length section (in the other it ends the section).
  const Bytes empty_name = raw_request({{"", "x"}});
  EXPECT_EQ(refusal([&] { decode_request(empty_name); }), "binary HTTP: empty field name in the header section");

  // What HTTP/2 allows passes.
  const std::vector<HttpField> allowed = {{":protocol", "websocket"},
                                          {"te", "trailers"},
                                          {"x-empty", ""},
                                          {"x-!#$%&'*+-.^_`|~09az", "tokens"},
                                          {"x-utf8", "caf\xc3\xa9"}};
  EXPECT_EQ(decode_request(raw_request(allowed)).headers, allowed);

  // Trailers hold no pseudo-fields.
  BinaryRequest request;
  request.method = "GET";
  Bytes with_trailer = encode_request(request);
  with_trailer.pop_back();
  put_bytes(with_trailer, known_section({{":protocol", "x"}}));
  EXPECT_EQ(refusal([&] { decode_request(with_trailer); }),
            "binary HTTP: pseudo-field \":protocol\" in the trailer section");

  // Control data.
  EXPECT_EQ(refusal([&] { decode_request(raw_request({}, "GE T")); }), "binary HTTP: method \"GE T\" is not a token");
  EXPECT_EQ(refusal([&] { decode_request(raw_request({}, "")); }), "binary HTTP: empty method");
  EXPECT_EQ(refusal([&] { decode_request(raw_request({}, "GET", "/a b")); }),
            "binary HTTP: path \"/a b\" has a space or a control byte");
  EXPECT_EQ(refusal([&] { decode_request(raw_request({}, "GET", "/\r\n")); }),
            "binary HTTP: path \"/\\x0d\\x0a\" has a space or a control byte");

  // The encoder lowercases names and refuses what decoding would.
  request.headers = {{"Content-Type", "text/plain"}, {"X-Custom", "1"}};
  EXPECT_EQ(decode_request(encode_request(request)).headers,
            (std::vector<HttpField>{{"content-type", "text/plain"}, {"x-custom", "1"}}));
  request.headers = {{"x-a", "1\n2"}};
  EXPECT_EQ(refusal([&] { encode_request(request); }),
            "binary HTTP: value of field \"x-a\" in the header section has a NUL, CR or LF");
  request.headers = {};
  request.method = "G T";
  EXPECT_EQ(refusal([&] { encode_request(request); }), "binary HTTP: method \"G T\" is not a token");
  BinaryResponse response;
  response.informational = {{200, {}}};
  EXPECT_EQ(refusal([&] { encode_response(response); }), "binary HTTP: informational status 200 is not in 100..199");
}

TEST(BinaryHttp, PaddingMustBeZeros) {
  Bytes message = encode_response(sample_response(), Framing::known_length, 5);
  DecodedFraming framing;
  decode_response(message, {}, &framing);
  EXPECT_EQ(framing.padding, 5u);
  message[message.size() - 2] = 0x80;
  EXPECT_EQ(refusal([&] { decode_response(message); }),
            "binary HTTP: non-zero byte after the message (padding must be zeros)");
  // Zeros after a truncated message read as the empty parts it left out, then as padding.
  const Bytes truncated = {0x01, 0x40, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(decode_response(truncated, {}, &framing).status, 200);
  EXPECT_EQ(framing.padding, 3u);
  EXPECT_EQ(refusal([] { decode_response(Bytes{}); }), "binary HTTP: empty message (no framing indicator)");
  EXPECT_EQ(refusal([] {
              decode_response(Bytes{0x03, 0x40, 0xc8, 0x00, 0x01});
            }),
            "binary HTTP: truncated in the content");
  EXPECT_EQ(refusal([] {
              decode_response(Bytes{0x03, 0x40, 0xc8, 0x00, 0x01, 'a'});
            }),
            "binary HTTP: truncated in the content");
  EXPECT_EQ(refusal([] {
              decode_response(Bytes{0x03, 0x40, 0x66});
            }),
            "binary HTTP: truncated in an informational response");
  EXPECT_EQ(refusal([] {
              decode_response(Bytes{0x03, 0x40, 0x66, 0x00});
            }),
            "binary HTTP: truncated before the final status");
}

TEST(BinaryHttp, VarintsFollowRfc9000) {
  // RFC 9000 §A.1's examples, then each length's bounds.
  const std::pair<const char*, uint64_t> examples[] = {
      {"c2197c5eff14e88c", 151288809941952652ull}, {"9d7f3e7d", 494878333}, {"7bbd", 15293}, {"25", 37}, {"4025", 37}};
  for (const auto& [hex, value] : examples) {
    const Bytes bytes = from_hex(hex);
    size_t pos = 0;
    EXPECT_EQ(read_varint(bytes, pos), value) << hex;
    EXPECT_EQ(pos, bytes.size());
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      size_t at = 0;
      EXPECT_EQ(read_varint(ByteView(bytes).first(cut), at), std::nullopt);
      EXPECT_EQ(at, 0u);
    }
  }
  const std::pair<uint64_t, size_t> bounds[] = {{0, 1},        {63, 1},
                                                {64, 2},       {16383, 2},
                                                {16384, 4},    {(1u << 30) - 1, 4},
                                                {1u << 30, 8}, {(uint64_t{1} << 62) - 1, 8}};
  for (const auto& [value, size] : bounds) {
    Bytes out = {0xee};
    put_varint(out, value);
    EXPECT_EQ(out.size(), 1 + size) << value;
    size_t pos = 1;
    EXPECT_EQ(read_varint(out, pos), value);
    EXPECT_EQ(pos, out.size());
  }
  Bytes out;
  EXPECT_THROW(put_varint(out, uint64_t{1} << 62), BinaryHttpError);
  size_t past = 5;
  EXPECT_EQ(read_varint(Bytes{1, 2}, past), std::nullopt);
}

}  // namespace
}  // namespace orchard::cloud
