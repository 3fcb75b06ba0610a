// Binary HTTP messages (RFC 9292): requests and responses in known-length (framing 0 and 1) and
// indeterminate-length (2 and 3) form, with trailing zero padding. Decoding checks every length
// against limits before it allocates, and names what was wrong.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cloud/bytes.h"

namespace orchard::cloud {

// A malformed or over-limit message: the message says which part and why.
class BinaryHttpError : public Error {
 public:
  using Error::Error;
};

struct BinaryHttpLimits {
  size_t max_field_section = 64 << 10;  // bytes of one header or trailer section
  size_t max_fields = 256;              // fields in one section
  size_t max_content = 8 << 20;         // bytes of content
  size_t max_control_data = 8 << 10;    // method + scheme + authority + path
  size_t max_informational = 8;         // informational (1xx) responses before the final one
};

struct HttpField {
  std::string name;
  std::string value;
  bool operator==(const HttpField&) const = default;
};

enum class Framing : uint8_t { known_length = 0, indeterminate_length = 1 };

struct BinaryRequest {
  std::string method, scheme, authority, path;
  std::vector<HttpField> headers;
  std::string content;
  std::vector<HttpField> trailers;
};

struct InformationalResponse {
  int status = 0;  // 100..199
  std::vector<HttpField> headers;
};

struct BinaryResponse {
  std::vector<InformationalResponse> informational;
  int status = 200;  // 200..599
  std::vector<HttpField> headers;
  std::string content;
  std::vector<HttpField> trailers;
};

// What decoding found besides the message itself.
struct DecodedFraming {
  uint64_t framing_indicator = 0;  // 0..3 as on the wire
  size_t padding = 0;              // trailing zero bytes after the message
};

// Throw BinaryHttpError for a malformed message, one of the other kind (a response given to
// decode_request), non-zero bytes after the message, or any length over `limits`. A message
// truncated where RFC 9292 §3.8 allows it (after the control data, the header section or the
// content) decodes with the parts cut off empty. Fields are held to the rules RFC 9292 §3.6
// takes from HTTP/2 (RFC 9113 §8.2): names lowercase tokens, values without NUL, CR, LF or
// whitespace at either end, no connection-specific fields, pseudo-fields only before the others
// and never those the control data carries. The method must be a token, the rest of the control
// data free of spaces and control bytes.
BinaryRequest decode_request(ByteView message, const BinaryHttpLimits& limits = {},
                             DecodedFraming* framing = nullptr);
BinaryResponse decode_response(ByteView message, const BinaryHttpLimits& limits = {},
                               DecodedFraming* framing = nullptr);

// Appends zero padding (RFC 9292 §3.8) until the message's size is a multiple of `bucket` (0: none).
void pad_to_multiple(Bytes& message, size_t bucket);

// `padding`: zero bytes appended after the message. Field names are written lowercase (HTTP
// names are case-insensitive); fields or control data that decoding would refuse throw
// BinaryHttpError (the limits are the decoder's alone).
Bytes encode_request(const BinaryRequest& request, Framing framing = Framing::known_length, size_t padding = 0);
Bytes encode_response(const BinaryResponse& response, Framing framing = Framing::known_length, size_t padding = 0);

// An indeterminate-length response written as it is produced: the head (status and header
// fields), then content chunks, then the end (the content terminator and an empty trailer
// section). Concatenated, the pieces are one message that decode_response reads.
Bytes encode_response_head(int status, const std::vector<HttpField>& headers);
Bytes encode_content_chunk(ByteView content);  // nothing for empty content (a zero length ends it)
Bytes encode_response_end();

// Reads an indeterminate- or known-length response as its bytes arrive (the client of a streamed
// answer): `feed` takes the next bytes and returns the content bytes they complete. Throws
// BinaryHttpError as decode_response does, as soon as the bytes seen are malformed.
class ResponseStreamDecoder {
 public:
  explicit ResponseStreamDecoder(const BinaryHttpLimits& limits = {});
  ~ResponseStreamDecoder();
  ResponseStreamDecoder(ResponseStreamDecoder&&) noexcept;
  ResponseStreamDecoder& operator=(ResponseStreamDecoder&&) noexcept;
  std::string feed(ByteView bytes);
  bool head_done() const;  // status and headers are known (informational responses skipped)
  int status() const;
  const std::vector<HttpField>& headers() const;
  // The message (and its trailers) is complete; any further bytes must be zero padding.
  bool done() const;
  // Call when no bytes will follow: throws BinaryHttpError unless the message is complete or
  // truncated where §3.8 allows.
  void finish();
  // Bytes held back because the part they start has not all arrived: never more than one field
  // section, field line or length, so bounded by the limits however the input is split.
  size_t buffered() const;

 private:
  class Parser;  // the one decoder decode_request and decode_response also run
  std::unique_ptr<Parser> parser_;
};

// QUIC variable-length integers (RFC 9000 §16), as Binary HTTP and chunked OHTTP use them.
void put_varint(Bytes& out, uint64_t value);  // value < 2^62
// Reads one at `pos` and advances it; nullopt when the bytes end first.
std::optional<uint64_t> read_varint(ByteView bytes, size_t& pos);

}  // namespace orchard::cloud
