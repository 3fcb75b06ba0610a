// Oblivious HTTP messages (RFC 9458, draft-ietf-ohai-chunked-ohttp): the input is an encapsulated
// request as the gateway receives it from the relay (decapsulate_request, plain and chunked), and
// an encapsulated response as the client receives it (ClientRequest::open_response, plain, and a
// ChunkedResponseReader fed the input in two pieces and then byte by byte). Every refusal must be
// an OhttpError (an orchard::Error).
//
// The gateway holds one key, RFC 9458 Appendix A's, as key id 1: requests to any other key id
// take the unknown-key path. The two clients are the examples' own requests (same key
// configuration and ephemeral key), so that the examples' encapsulated responses, in the seeds,
// open and the fuzzer starts from the paths past the AEAD.
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "cloud/ohttp.h"
#include "orchard/error.h"

using namespace orchard;
using namespace orchard::cloud;

namespace {

// RFC 9458 Appendix A (/work/shared/pcc/rfc9458-example.json).
constexpr const char* kGatewaySecret = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";
constexpr const char* kGatewayKeyConfig =
    "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";
constexpr const char* kPlainEphemeral = "bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73";
constexpr const char* kPlainRequest = "00034745540568747470730b6578616d706c652e636f6d012f";
// draft-ietf-ohai-chunked-ohttp-08 Appendix A (/work/shared/pcc/chunked-ohttp-example.json).
constexpr const char* kChunkedKeyConfig =
    "010020668eb21aace159803974a4c67f08b4152d29bed10735fd08f98ccdd6fe09570800080001000100010003";
constexpr const char* kChunkedEphemeral = "b26d565f3f875ed480d1abced3d665159650c99174fd0b124ac4bda0c64ae324";

// Small enough that inputs of the fuzzer's length (4096) reach the reader's chunk limits.
constexpr size_t kMaxChunk = 1024;
// Byte-by-byte feeding is quadratic in the buffered bytes: only for shorter inputs.
constexpr size_t kMaxBytewise = 1024;

struct Fixture {
  X25519KeyPair gateway = x25519_from_secret(from_hex(kGatewaySecret));
  X25519KeyPair plain_ephemeral = x25519_from_secret(from_hex(kPlainEphemeral));
  X25519KeyPair chunked_ephemeral = x25519_from_secret(from_hex(kChunkedEphemeral));
  ClientRequest plain_client =
      ClientRequest::encapsulate(parse_key_config(from_hex(kGatewayKeyConfig)), SymmetricSuite{}, OhttpMode::plain,
                                 from_hex(kPlainRequest), &plain_ephemeral);
  ClientRequest chunked_client =
      ClientRequest::begin_chunked(parse_key_config(from_hex(kChunkedKeyConfig)), SymmetricSuite{}, &chunked_ephemeral);
  KeyLookup lookup = [this](const RequestHeader& header) -> const X25519KeyPair* {
    return header.key_id == 1 ? &gateway : nullptr;
  };
  Bytes response_nonce = Bytes(16, 0x5a);  // fixed: runs stay reproducible

  Fixture() {
    // The gateway's key is the one its configuration (the plain client's) names.
    if (parse_key_config(from_hex(kGatewayKeyConfig)).public_key != gateway.public_key) std::abort();
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

void gateway(ByteView input, OhttpMode mode) {
  const Fixture& f = fixture();
  DecapsulatedRequest request = decapsulate_request(input, mode, f.lookup);
  // Only a request that opened under the one key gets here.
  if (request.header.key_id != 1 || request.enc != Bytes(input.begin() + 7, input.begin() + 39)) std::abort();
  if (request.response.mode() != mode) std::abort();
  const ByteView reply = as_bytes("\x01\x40\xc8");  // Binary HTTP: 200, no fields, no content
  if (mode == OhttpMode::plain) {
    (void)request.response.seal(reply, &f.response_nonce);
  } else {
    (void)request.response.start(&f.response_nonce);
    (void)request.response.chunk(reply);
    (void)request.response.final_chunk({});
  }
}

// The whole response through a reader: in pieces split at `split`, or byte by byte when
// `bytewise`. nullopt when the reader refused it.
std::optional<Bytes> read_chunked(ByteView input, size_t split, bool bytewise) {
  ChunkedResponseReader reader = fixture().chunked_client.response_reader(kMaxChunk);
  try {
    Bytes plain;
    if (bytewise) {
      for (size_t i = 0; i < input.size(); ++i) put_bytes(plain, reader.feed(input.subspan(i, 1)));
    } else {
      put_bytes(plain, reader.feed(input.first(split)));
      put_bytes(plain, reader.feed(input.subspan(split)));
    }
    if (!reader.in_final_chunk()) {
      // finish must refuse a response that has not reached its final chunk
      try {
        (void)reader.finish();
      } catch (const OhttpError&) {
        return std::nullopt;
      }
      std::abort();
    }
    put_bytes(plain, reader.finish());
    return plain;
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);
  const Fixture& f = fixture();

  // Gateway side.
  for (OhttpMode mode : {OhttpMode::plain, OhttpMode::chunked}) {
    try {
      gateway(input, mode);
    } catch (const Error&) {
    }
  }

  // Client side: a plain response...
  try {
    (void)f.plain_client.open_response(input);
  } catch (const Error&) {
  }
  // ...and a chunked one, which must read the same however its bytes arrive.
  const size_t split = size == 0 ? 0 : data[0] % (size + 1);
  const std::optional<Bytes> in_two = read_chunked(input, split, false);
  if (size <= kMaxBytewise) {
    const std::optional<Bytes> bytewise = read_chunked(input, 0, true);
    if (in_two != bytewise) std::abort();
  }
  return 0;
}
