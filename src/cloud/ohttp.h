// Oblivious HTTP (RFC 9458) and its chunked form (draft-ietf-ohai-chunked-ohttp-08): key
// configurations, and the encapsulation of a Binary HTTP request to a gateway's key and of its
// response back to the client. The client side and the gateway side of each are here; HPKE does
// the key agreement, and the response keys are derived from the request's context (RFC 9458 §4.4).
//
// Plain:   request  = hdr || enc || Seal(bhttp request)
//          response = response_nonce || Seal(bhttp response)
// Chunked: request  = hdr || enc || (varint len || sealed chunk)* || 0x00 || sealed final chunk
//          response = response_nonce || (varint len || sealed chunk)* || 0x00 || sealed final chunk
// A final chunk is sealed with AAD "final" and runs to the end of the message, so a message cut
// short (or a chunk moved to the end) never opens as complete.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cloud/hpke.h"

namespace orchard::cloud {

// Why an encapsulated message was refused. The gateway answers `unknown_key` with 422 and the
// problem type RFC 9458 §5.3 defines (the client refetches the keys), anything else with 400.
class OhttpError : public Error {
 public:
  enum class Kind { malformed, unknown_key, unsupported_suite, decrypt_failed };
  OhttpError(Kind kind, const std::string& message) : Error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct SymmetricSuite {
  uint16_t kdf = kKdfHkdfSha256;
  uint16_t aead = static_cast<uint16_t>(AeadId::aes128_gcm);
  bool operator==(const SymmetricSuite&) const = default;
};

// RFC 9458 §3.1.
struct KeyConfig {
  uint8_t key_id = 0;
  uint16_t kem_id = kKemX25519HkdfSha256;
  Bytes public_key;
  std::vector<SymmetricSuite> suites;
};

Bytes encode_key_config(const KeyConfig& config);
// Exactly one configuration. Throws OhttpError (malformed) naming what is wrong; a KEM other
// than X25519 is refused as unsupported (its key length would be unknown).
KeyConfig parse_key_config(ByteView bytes);
// `application/ohttp-keys` (§3.2): configurations, each preceded by its 2-byte length. Those
// with a KEM this code does not implement are skipped, as §3.2 asks of clients.
Bytes encode_key_configs(const std::vector<KeyConfig>& configs);
std::vector<KeyConfig> parse_key_configs(ByteView bytes);

// The 7-byte header that starts an encapsulated request: key id, KEM, KDF, AEAD.
struct RequestHeader {
  uint8_t key_id = 0;
  uint16_t kem_id = kKemX25519HkdfSha256;
  SymmetricSuite suite;
};

enum class OhttpMode { plain, chunked };
const char* request_media_type(OhttpMode mode);   // message/ohttp-req, message/ohttp-chunked-req
const char* response_media_type(OhttpMode mode);  // message/ohttp-res, message/ohttp-chunked-res

// ----- Client side -----

// Opens a chunked response as its bytes arrive: `feed` returns the plaintext of the chunks they
// complete; `finish` (no more bytes) opens the final chunk and returns its plaintext. Throws
// OhttpError for a chunk that does not open, one over `max_chunk` bytes, or a message that ends
// without its final chunk.
class ChunkedResponseReader {
 public:
  ChunkedResponseReader(AeadId aead, Bytes enc, Bytes response_secret, size_t max_chunk);
  Bytes feed(ByteView bytes);
  Bytes finish();
  bool in_final_chunk() const { return in_final_; }
  // Applied to each chunk's plaintext as it opens (`final` for the last), before it is returned:
  // the client checks and strips each chunk's response binding here (response_binding.h).
  void set_chunk_filter(std::function<Bytes(Bytes chunk, bool final)> filter) { filter_ = std::move(filter); }

 private:
  bool open_keys();
  AeadId aead_;
  Bytes enc_;
  Bytes secret_;
  size_t max_chunk_;
  Bytes buffer_;
  size_t nonce_size_ = 0;
  SecretBytes key_;
  Bytes base_nonce_;
  bool keyed_ = false;
  bool in_final_ = false;
  uint64_t counter_ = 0;
  std::function<Bytes(Bytes, bool)> filter_;
};

// One request as a client encapsulates it. Plain: `encapsulated` is the whole message. Chunked:
// `encapsulated` is hdr || enc, followed by `seal_chunk` for each piece and `seal_final_chunk`
// for the last (the whole request may be the final chunk alone).
class ClientRequest {
 public:
  // `ephemeral` fixes the HPKE ephemeral key (the test vectors'); left out, a fresh one is drawn.
  static ClientRequest encapsulate(const KeyConfig& config, const SymmetricSuite& suite, OhttpMode mode,
                                   ByteView bhttp_request, const X25519KeyPair* ephemeral = nullptr);
  static ClientRequest begin_chunked(const KeyConfig& config, const SymmetricSuite& suite,
                                     const X25519KeyPair* ephemeral = nullptr);
  Bytes seal_chunk(ByteView plaintext);        // varint length || ciphertext; plaintext not empty
  Bytes seal_final_chunk(ByteView plaintext);  // 0x00 || ciphertext sealed with AAD "final"

  const Bytes& encapsulated() const { return encapsulated_; }
  OhttpMode mode() const { return mode_; }
  // Plain: the Binary HTTP response inside `message`; throws OhttpError when it does not open.
  Bytes open_response(ByteView message) const;
  // Chunked: a reader for the response (the request context's export).
  ChunkedResponseReader response_reader(size_t max_chunk = 1 << 20) const;

 private:
  ClientRequest(OhttpMode mode, HpkeSender sender, Bytes encapsulated);
  static ClientRequest begin(const KeyConfig& config, const SymmetricSuite& suite, OhttpMode mode,
                             const X25519KeyPair* ephemeral);
  OhttpMode mode_;
  HpkeSender sender_;
  Bytes encapsulated_;
};

// ----- Gateway side -----

// A private key the gateway decrypts with, found by the request's key id.
using KeyLookup = std::function<const X25519KeyPair*(const RequestHeader& header)>;

// The response keys of one decapsulated request (from the HPKE context's export).
class GatewayResponse {
 public:
  GatewayResponse(OhttpMode mode, AeadId aead, Bytes enc, Bytes response_secret);
  // Plain: response_nonce || Seal(bhttp response). `nonce` fixes the response nonce (tests).
  Bytes seal(ByteView bhttp_response, const Bytes* nonce = nullptr) const;
  // Chunked: `start` gives the response nonce (sent first), then each chunk in order, the last
  // with `final_chunk`.
  Bytes start(const Bytes* nonce = nullptr);
  Bytes chunk(ByteView plaintext);
  Bytes final_chunk(ByteView plaintext);
  OhttpMode mode() const { return mode_; }

 private:
  Bytes chunk_nonce() const;
  OhttpMode mode_;
  AeadId aead_;
  Bytes enc_;
  Bytes secret_;
  SecretBytes key_;
  Bytes base_nonce_;
  uint64_t counter_ = 0;
};

struct DecapsulatedRequest {
  Bytes bhttp_request;  // the plaintext (all chunks, in order)
  Bytes enc;            // the client's ephemeral key: the replay check's identity of the request
  RequestHeader header;
  GatewayResponse response;
};

// Opens a whole encapsulated request. Throws OhttpError: malformed (too short, a chunk length
// past the end), unknown_key (`keys` has none for the header), unsupported_suite, decrypt_failed
// (a chunk does not open, including one sealed final but not last, or a missing final chunk).
DecapsulatedRequest decapsulate_request(ByteView message, OhttpMode mode, const KeyLookup& keys);

}  // namespace orchard::cloud
