#include "cloud/ohttp.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "cloud/binary_http.h"

namespace orchard::cloud {
namespace {

constexpr size_t kHeaderSize = 7;  // key id, KEM, KDF, AEAD
constexpr std::string_view kFinalAad = "final";

OhttpError malformed(const std::string& what) { return OhttpError(OhttpError::Kind::malformed, "oblivious HTTP: " + what); }

uint16_t read_u16(ByteView b, size_t pos) { return static_cast<uint16_t>(b[pos] << 8 | b[pos + 1]); }

bool suite_supported(const SymmetricSuite& s) { return s.kdf == kKdfHkdfSha256 && aead_supported(s.aead); }

std::string_view request_label(OhttpMode mode) {
  return mode == OhttpMode::plain ? "message/bhttp request" : "message/bhttp chunked request";
}
std::string_view response_label(OhttpMode mode) {
  return mode == OhttpMode::plain ? "message/bhttp response" : "message/bhttp chunked response";
}

Bytes encode_header(const RequestHeader& h) {
  Bytes out;
  put_u8(out, h.key_id);
  put_u16(out, h.kem_id);
  put_u16(out, h.suite.kdf);
  put_u16(out, h.suite.aead);
  return out;
}

// §4.3: info = label || 0x00 || hdr.
Bytes request_info(OhttpMode mode, const RequestHeader& header) {
  Bytes info;
  put_bytes(info, as_bytes(request_label(mode)));
  put_u8(info, 0);
  put_bytes(info, encode_header(header));
  return info;
}

size_t response_nonce_size(AeadId aead) { return std::max(aead_key_size(aead), aead_nonce_size(aead)); }

// §4.4: salt = enc || response_nonce; prk = Extract(salt, secret); key and nonce expanded from it.
void response_keys(AeadId aead, ByteView enc, ByteView response_nonce, ByteView secret, SecretBytes& key,
                   Bytes& nonce) {
  Bytes salt(enc.begin(), enc.end());
  put_bytes(salt, response_nonce);
  const Bytes prk = hkdf_extract(salt, secret);
  Bytes k = hkdf_expand(prk, as_bytes("key"), aead_key_size(aead));
  key = SecretBytes(k);
  std::fill(k.begin(), k.end(), 0);
  nonce = hkdf_expand(prk, as_bytes("nonce"), aead_nonce_size(aead));
}

// Chunk i's nonce: the base nonce XOR i, big-endian over its last bytes.
Bytes xor_counter(const Bytes& base, uint64_t counter) {
  Bytes nonce = base;
  for (size_t i = 0; i < 8 && i < nonce.size(); ++i) nonce[nonce.size() - 1 - i] ^= static_cast<uint8_t>(counter >> (8 * i));
  return nonce;
}

Bytes framed_chunk(ByteView sealed, bool final) {
  Bytes out;
  put_varint(out, final ? 0 : sealed.size());
  put_bytes(out, sealed);
  return out;
}

}  // namespace

const char* request_media_type(OhttpMode mode) {
  return mode == OhttpMode::plain ? "message/ohttp-req" : "message/ohttp-chunked-req";
}
const char* response_media_type(OhttpMode mode) {
  return mode == OhttpMode::plain ? "message/ohttp-res" : "message/ohttp-chunked-res";
}

Bytes encode_key_config(const KeyConfig& config) {
  Bytes out;
  put_u8(out, config.key_id);
  put_u16(out, config.kem_id);
  put_bytes(out, config.public_key);
  put_u16(out, static_cast<uint16_t>(config.suites.size() * 4));
  for (const SymmetricSuite& s : config.suites) {
    put_u16(out, s.kdf);
    put_u16(out, s.aead);
  }
  return out;
}

KeyConfig parse_key_config(ByteView b) {
  if (b.size() < 3) throw malformed("key configuration shorter than its key id and KEM");
  KeyConfig config;
  config.key_id = b[0];
  config.kem_id = read_u16(b, 1);
  if (config.kem_id != kKemX25519HkdfSha256)
    throw OhttpError(OhttpError::Kind::unsupported_suite,
                     "oblivious HTTP: key configuration has KEM " + std::to_string(config.kem_id) +
                         "; only DHKEM(X25519, HKDF-SHA256) (32) is supported");
  size_t pos = 3;
  if (b.size() < pos + kX25519KeySize + 2) throw malformed("key configuration truncated in its public key");
  config.public_key.assign(b.begin() + pos, b.begin() + pos + kX25519KeySize);
  pos += kX25519KeySize;
  const size_t suites_length = read_u16(b, pos);
  pos += 2;
  if (suites_length == 0 || suites_length % 4) throw malformed("key configuration's algorithm list length is not a positive multiple of 4");
  if (b.size() - pos != suites_length) throw malformed("key configuration's algorithm list length does not match its bytes");
  for (; pos < b.size(); pos += 4) config.suites.push_back({read_u16(b, pos), read_u16(b, pos + 2)});
  return config;
}

Bytes encode_key_configs(const std::vector<KeyConfig>& configs) {
  Bytes out;
  for (const KeyConfig& c : configs) {
    const Bytes one = encode_key_config(c);
    put_u16(out, static_cast<uint16_t>(one.size()));
    put_bytes(out, one);
  }
  return out;
}

std::vector<KeyConfig> parse_key_configs(ByteView b) {
  std::vector<KeyConfig> configs;
  size_t pos = 0;
  while (pos < b.size()) {
    if (b.size() - pos < 2) throw malformed("key configuration list truncated in a length");
    const size_t length = read_u16(b, pos);
    pos += 2;
    if (b.size() - pos < length) throw malformed("key configuration list truncated in a configuration");
    try {
      configs.push_back(parse_key_config(b.subspan(pos, length)));
    } catch (const OhttpError& e) {
      if (e.kind() != OhttpError::Kind::unsupported_suite) throw;
    }
    pos += length;
  }
  return configs;
}

// ----- Client side -----

ClientRequest::ClientRequest(OhttpMode mode, HpkeSender sender, Bytes encapsulated)
    : mode_(mode), sender_(std::move(sender)), encapsulated_(std::move(encapsulated)) {}

// hdr || enc, and the sender's context for `mode`'s label.
ClientRequest ClientRequest::begin(const KeyConfig& config, const SymmetricSuite& suite, OhttpMode mode,
                                   const X25519KeyPair* ephemeral) {
  if (!suite_supported(suite)) throw OhttpError(OhttpError::Kind::unsupported_suite, "oblivious HTTP: unsupported KDF or AEAD");
  if (config.kem_id != kKemX25519HkdfSha256) throw OhttpError(OhttpError::Kind::unsupported_suite, "oblivious HTTP: unsupported KEM");
  const RequestHeader header{config.key_id, config.kem_id, suite};
  HpkeSender sender = hpke_setup_base_sender({config.kem_id, suite.kdf, static_cast<AeadId>(suite.aead)},
                                             config.public_key, request_info(mode, header), ephemeral);
  Bytes out = encode_header(header);
  put_bytes(out, sender.enc);
  return ClientRequest(mode, std::move(sender), std::move(out));
}

ClientRequest ClientRequest::begin_chunked(const KeyConfig& config, const SymmetricSuite& suite,
                                           const X25519KeyPair* ephemeral) {
  return begin(config, suite, OhttpMode::chunked, ephemeral);
}

ClientRequest ClientRequest::encapsulate(const KeyConfig& config, const SymmetricSuite& suite, OhttpMode mode,
                                         ByteView bhttp_request, const X25519KeyPair* ephemeral) {
  ClientRequest request = begin(config, suite, mode, ephemeral);
  put_bytes(request.encapsulated_, mode == OhttpMode::chunked ? request.seal_final_chunk(bhttp_request)
                                                               : request.sender_.context.seal({}, bhttp_request));
  return request;
}

Bytes ClientRequest::seal_chunk(ByteView plaintext) {
  if (plaintext.empty()) throw Error("oblivious HTTP: a non-final chunk may not be empty");
  return framed_chunk(sender_.context.seal({}, plaintext), false);
}

Bytes ClientRequest::seal_final_chunk(ByteView plaintext) {
  return framed_chunk(sender_.context.seal(as_bytes(kFinalAad), plaintext), true);
}

Bytes ClientRequest::open_response(ByteView message) const {
  const AeadId aead = sender_.context.aead();
  const size_t nonce_size = response_nonce_size(aead);
  if (message.size() < nonce_size + kAeadTagSize) throw malformed("response shorter than its nonce and tag");
  const Bytes secret = sender_.context.export_secret(as_bytes(response_label(OhttpMode::plain)), nonce_size);
  SecretBytes key;
  Bytes nonce;
  response_keys(aead, sender_.enc, message.first(nonce_size), secret, key, nonce);
  std::optional<Bytes> plain = aead_open(aead, key.view(), nonce, {}, message.subspan(nonce_size));
  if (!plain) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: the response does not decrypt");
  return std::move(*plain);
}

ChunkedResponseReader ClientRequest::response_reader(size_t max_chunk) const {
  const AeadId aead = sender_.context.aead();
  return ChunkedResponseReader(aead, sender_.enc,
                               sender_.context.export_secret(as_bytes(response_label(OhttpMode::chunked)),
                                                             response_nonce_size(aead)),
                               max_chunk);
}

ChunkedResponseReader::ChunkedResponseReader(AeadId aead, Bytes enc, Bytes response_secret, size_t max_chunk)
    : aead_(aead), enc_(std::move(enc)), secret_(std::move(response_secret)), max_chunk_(max_chunk),
      nonce_size_(response_nonce_size(aead)) {}

bool ChunkedResponseReader::open_keys() {
  if (keyed_) return true;
  if (buffer_.size() < nonce_size_) return false;
  response_keys(aead_, enc_, ByteView(buffer_).first(nonce_size_), secret_, key_, base_nonce_);
  buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(nonce_size_));
  keyed_ = true;
  return true;
}

Bytes ChunkedResponseReader::feed(ByteView bytes) {
  put_bytes(buffer_, bytes);
  Bytes plain;
  if (!open_keys()) return plain;
  size_t pos = 0;
  while (!in_final_) {
    size_t p = pos;
    const std::optional<uint64_t> length = read_varint(buffer_, p);
    if (!length) break;
    if (*length == 0) {  // the final chunk: it ends with the message
      in_final_ = true;
      pos = p;
      break;
    }
    if (*length > max_chunk_ + kAeadTagSize) throw malformed("response chunk longer than the limit");
    if (buffer_.size() - p < *length) break;
    std::optional<Bytes> chunk =
        aead_open(aead_, key_.view(), xor_counter(base_nonce_, counter_), {}, ByteView(buffer_).subspan(p, *length));
    if (!chunk) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: a response chunk does not decrypt");
    ++counter_;
    put_bytes(plain, filter_ ? filter_(std::move(*chunk), false) : *chunk);
    pos = p + *length;
  }
  buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(pos));
  if (in_final_ && buffer_.size() > max_chunk_ + kAeadTagSize) throw malformed("final response chunk longer than the limit");
  return plain;
}

Bytes ChunkedResponseReader::finish() {
  if (!keyed_ || !in_final_) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: the response ended before its final chunk");
  std::optional<Bytes> chunk = aead_open(aead_, key_.view(), xor_counter(base_nonce_, counter_), as_bytes(kFinalAad), buffer_);
  if (!chunk) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: the final response chunk does not decrypt");
  buffer_.clear();
  return filter_ ? filter_(std::move(*chunk), true) : std::move(*chunk);
}

// ----- Gateway side -----

GatewayResponse::GatewayResponse(OhttpMode mode, AeadId aead, Bytes enc, Bytes response_secret)
    : mode_(mode), aead_(aead), enc_(std::move(enc)), secret_(std::move(response_secret)) {}

Bytes GatewayResponse::seal(ByteView bhttp_response, const Bytes* nonce) const {
  const Bytes response_nonce = nonce ? *nonce : random_bytes(response_nonce_size(aead_));
  SecretBytes key;
  Bytes aead_nonce;
  response_keys(aead_, enc_, response_nonce, secret_, key, aead_nonce);
  Bytes out = response_nonce;
  put_bytes(out, aead_seal(aead_, key.view(), aead_nonce, {}, bhttp_response));
  return out;
}

Bytes GatewayResponse::start(const Bytes* nonce) {
  const Bytes response_nonce = nonce ? *nonce : random_bytes(response_nonce_size(aead_));
  response_keys(aead_, enc_, response_nonce, secret_, key_, base_nonce_);
  return response_nonce;
}

Bytes GatewayResponse::chunk_nonce() const {
  if (base_nonce_.empty()) throw Error("oblivious HTTP: a response chunk before start()");
  return xor_counter(base_nonce_, counter_);
}

Bytes GatewayResponse::chunk(ByteView plaintext) {
  if (plaintext.empty()) throw Error("oblivious HTTP: a non-final chunk may not be empty");
  Bytes out = framed_chunk(aead_seal(aead_, key_.view(), chunk_nonce(), {}, plaintext), false);
  ++counter_;
  return out;
}

Bytes GatewayResponse::final_chunk(ByteView plaintext) {
  Bytes out = framed_chunk(aead_seal(aead_, key_.view(), chunk_nonce(), as_bytes(kFinalAad), plaintext), true);
  ++counter_;
  return out;
}

DecapsulatedRequest decapsulate_request(ByteView message, OhttpMode mode, const KeyLookup& keys) {
  if (message.size() < kHeaderSize + kHpkeEncSize) throw malformed("request shorter than its header and encapsulated key");
  const RequestHeader header{message[0], read_u16(message, 1), {read_u16(message, 3), read_u16(message, 5)}};
  if (header.kem_id != kKemX25519HkdfSha256 || !suite_supported(header.suite))
    throw OhttpError(OhttpError::Kind::unsupported_suite, "oblivious HTTP: the request's KEM, KDF or AEAD is not supported");
  const X25519KeyPair* key = keys(header);
  if (!key)
    throw OhttpError(OhttpError::Kind::unknown_key,
                     "oblivious HTTP: key id " + std::to_string(header.key_id) + " is unknown or expired; fetch the key configuration again");
  const AeadId aead = static_cast<AeadId>(header.suite.aead);
  Bytes enc(message.begin() + kHeaderSize, message.begin() + kHeaderSize + kHpkeEncSize);
  HpkeContext context = [&] {
    try {
      return hpke_setup_base_receiver({header.kem_id, header.suite.kdf, aead}, enc, *key, request_info(mode, header));
    } catch (const Error&) {  // an all-zero shared secret: a small-order `enc`
      throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: the request's encapsulated key is invalid");
    }
  }();
  const ByteView body = message.subspan(kHeaderSize + kHpkeEncSize);
  Bytes plain;
  if (mode == OhttpMode::plain) {
    std::optional<Bytes> opened = context.open({}, body);
    if (!opened) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: the request does not decrypt");
    plain = std::move(*opened);
  } else {
    size_t pos = 0;
    for (;;) {
      const std::optional<uint64_t> length = read_varint(body, pos);
      if (!length) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: the request ended before its final chunk");
      const bool final = *length == 0;
      const size_t size = final ? body.size() - pos : *length;
      if (!final && *length > body.size() - pos) throw malformed("a request chunk's length runs past the end of the message");
      std::optional<Bytes> chunk = context.open(final ? as_bytes(kFinalAad) : ByteView{}, body.subspan(pos, size));
      if (!chunk) throw OhttpError(OhttpError::Kind::decrypt_failed, "oblivious HTTP: a request chunk does not decrypt");
      put_bytes(plain, *chunk);
      pos += size;
      if (final) break;
    }
  }
  const OhttpMode m = mode;
  Bytes secret = context.export_secret(as_bytes(response_label(m)), response_nonce_size(aead));
  return DecapsulatedRequest{std::move(plain), enc, header, GatewayResponse(m, aead, enc, std::move(secret))};
}

}  // namespace orchard::cloud
