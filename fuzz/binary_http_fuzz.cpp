// Binary HTTP (RFC 9292), what the private cloud node reads out of every decrypted request and a
// client out of every response: the input is decoded as a request and as a response, and fed to
// the streaming response decoder in two pieces (split where the first byte says) and, when short,
// a byte at a time. Refusals must be BinaryHttpError (an orchard::Error). Beyond not crashing:
// the stream decoder must agree with decode_response, and a message that decodes must encode and
// decode again to the same message (abort() otherwise, which libFuzzer reports as a crash).
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "cloud/binary_http.h"
#include "orchard/error.h"

using namespace orchard;
using namespace orchard::cloud;

namespace {

// Small limits, so that inputs of a few KiB reach every limit's edge.
BinaryHttpLimits fuzz_limits() {
  BinaryHttpLimits limits;
  limits.max_field_section = 512;
  limits.max_fields = 16;
  limits.max_content = 2048;
  limits.max_control_data = 256;
  limits.max_informational = 3;
  return limits;
}

bool same(const BinaryRequest& a, const BinaryRequest& b) {
  return a.method == b.method && a.scheme == b.scheme && a.authority == b.authority && a.path == b.path &&
         a.headers == b.headers && a.content == b.content && a.trailers == b.trailers;
}

bool same(const BinaryResponse& a, const BinaryResponse& b) {
  if (a.informational.size() != b.informational.size()) return false;
  for (size_t i = 0; i < a.informational.size(); ++i) {
    if (a.informational[i].status != b.informational[i].status ||
        a.informational[i].headers != b.informational[i].headers) {
      return false;
    }
  }
  return a.status == b.status && a.headers == b.headers && a.content == b.content && a.trailers == b.trailers;
}

Framing framing_of(const DecodedFraming& f) {
  return f.framing_indicator < 2 ? Framing::known_length : Framing::indeterminate_length;
}

template <typename Message, typename Decode, typename Encode>
void round_trip(const Message& message, const DecodedFraming& framing, Decode decode, Encode encode) {
  try {
    DecodedFraming again_framing;
    const Message again = decode(encode(message, framing_of(framing), framing.padding), &again_framing);
    if (!same(message, again) || again_framing.framing_indicator != framing.framing_indicator ||
        again_framing.padding != framing.padding) {
      std::abort();
    }
  } catch (const Error&) {
    std::abort();  // what decoding accepted, encoding must write, and decoding read back
  }
}

struct Streamed {
  int status = 0;
  std::vector<HttpField> headers;
  std::string content;
};

// The response as the stream decoder reads it in pieces of `piece` bytes after the first `first`;
// nullopt when refused.
std::optional<Streamed> stream(ByteView input, size_t first, size_t piece, const BinaryHttpLimits& limits) {
  try {
    ResponseStreamDecoder decoder(limits);
    Streamed out;
    out.content += decoder.feed(input.first(first));
    for (size_t at = first; at < input.size(); at += piece) {
      out.content += decoder.feed(input.subspan(at, std::min(piece, input.size() - at)));
    }
    decoder.finish();
    out.status = decoder.status();
    out.headers = decoder.headers();
    return out;
  } catch (const Error&) {
    return std::nullopt;
  }
}

void agree(const std::optional<BinaryResponse>& whole, const std::optional<Streamed>& streamed) {
  if (whole.has_value() != streamed.has_value()) std::abort();
  if (whole && (whole->status != streamed->status || whole->headers != streamed->headers ||
                whole->content != streamed->content)) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);
  const BinaryHttpLimits limits = fuzz_limits();

  std::optional<BinaryRequest> request;
  DecodedFraming request_framing;
  try {
    request = decode_request(input, limits, &request_framing);
  } catch (const Error&) {
  }
  if (request) {
    round_trip(
        *request, request_framing,
        [&](const Bytes& bytes, DecodedFraming* f) { return decode_request(bytes, limits, f); },
        [](const BinaryRequest& m, Framing fr, size_t pad) { return encode_request(m, fr, pad); });
  }

  std::optional<BinaryResponse> response;
  DecodedFraming response_framing;
  try {
    response = decode_response(input, limits, &response_framing);
  } catch (const Error&) {
  }
  if (response) {
    round_trip(
        *response, response_framing,
        [&](const Bytes& bytes, DecodedFraming* f) { return decode_response(bytes, limits, f); },
        [](const BinaryResponse& m, Framing fr, size_t pad) { return encode_response(m, fr, pad); });
  }

  // The first byte, scaled to the input's length, says where the first piece ends.
  const size_t split = size == 0 ? 0 : static_cast<size_t>(data[0]) * (size + 1) / 256;
  agree(response, stream(input, split, size, limits));
  if (size <= 1024) agree(response, stream(input, 0, 1, limits));
  return 0;
}
