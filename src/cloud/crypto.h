// The primitives HPKE and Oblivious HTTP are built from, on OpenSSL 3.0 (which has no HPKE API):
// HKDF-SHA256 (RFC 5869) extract and expand, the AEADs (AES-128-GCM, ChaCha20-Poly1305), X25519,
// and the system's random generator. Nothing here is a cipher of Orchard's own.
#pragma once
#include <cstdint>
#include <optional>

#include "cloud/bytes.h"

namespace orchard::cloud {

// HPKE's AEAD identifiers (RFC 9180 §7.3). export_only: the context exports secrets, seals nothing.
enum class AeadId : uint16_t { aes128_gcm = 0x0001, chacha20_poly1305 = 0x0003, export_only = 0xffff };
constexpr size_t kAeadTagSize = 16;
size_t aead_key_size(AeadId aead);    // Nk: 16 (AES-128-GCM), 32 (ChaCha20-Poly1305), 0 (export only)
size_t aead_nonce_size(AeadId aead);  // Nn: 12, 12, 0
bool aead_supported(uint16_t id);     // 0x0001, 0x0003 (export-only is not an OHTTP suite)

// Ciphertext followed by the 16-byte tag.
Bytes aead_seal(AeadId aead, ByteView key, ByteView nonce, ByteView aad, ByteView plaintext);
// The plaintext, or nullopt when the tag does not verify (tampered, wrong key, wrong nonce or AAD)
// or the ciphertext is shorter than a tag.
std::optional<Bytes> aead_open(AeadId aead, ByteView key, ByteView nonce, ByteView aad, ByteView ciphertext);

Bytes hkdf_extract(ByteView salt, ByteView ikm);                       // 32 bytes
Bytes hkdf_expand(ByteView prk, ByteView info, size_t length);         // length <= 255 * 32

constexpr size_t kX25519KeySize = 32;
struct X25519KeyPair {
  SecretBytes secret;  // 32 bytes
  Bytes public_key;    // 32 bytes
};
X25519KeyPair x25519_generate();
X25519KeyPair x25519_from_secret(ByteView secret);  // throws orchard::Error unless 32 bytes
// The shared secret; throws orchard::Error when it is all zeros (a small-order peer key,
// RFC 9180 §7.1.4) or the peer key is not 32 bytes.
SecretBytes x25519(ByteView secret, ByteView peer_public);

constexpr size_t kSha256Size = 32;
Bytes sha256(ByteView data);  // FIPS 180-4 SHA-256, 32 bytes

void random_bytes(uint8_t* out, size_t size);  // OpenSSL's RAND_bytes; throws if it fails
Bytes random_bytes(size_t size);

}  // namespace orchard::cloud
