// HPKE (RFC 9180), base mode, for one KEM and one KDF: DHKEM(X25519, HKDF-SHA256) and
// HKDF-SHA256, with the AEADs AES-128-GCM, ChaCha20-Poly1305 or export-only. Built on crypto.h.
#pragma once
#include <cstdint>
#include <optional>

#include "cloud/crypto.h"

namespace orchard::cloud {

constexpr uint16_t kKemX25519HkdfSha256 = 0x0020;
constexpr uint16_t kKdfHkdfSha256 = 0x0001;
constexpr size_t kHpkeEncSize = 32;  // Nenc for DHKEM(X25519)

struct HpkeSuite {
  uint16_t kem = kKemX25519HkdfSha256;
  uint16_t kdf = kKdfHkdfSha256;
  AeadId aead = AeadId::aes128_gcm;
};

// RFC 9180 §7.1.3 DeriveKeyPair for X25519.
X25519KeyPair hpke_derive_key_pair(ByteView ikm);

// The context of one HPKE setup (§5.2): the sequence number counts seals (sender) or opens
// (receiver); each uses nonce = base_nonce XOR sequence.
class HpkeContext {
 public:
  HpkeContext(AeadId aead, SecretBytes key, Bytes base_nonce, SecretBytes exporter_secret);

  // Throws orchard::Error for an export-only context or once the sequence would overflow.
  Bytes seal(ByteView aad, ByteView plaintext);
  // nullopt when the ciphertext does not open; the sequence advances only on success.
  std::optional<Bytes> open(ByteView aad, ByteView ciphertext);
  // §5.3 Export: LabeledExpand(exporter_secret, "sec", context, length).
  Bytes export_secret(ByteView exporter_context, size_t length) const;

  AeadId aead() const { return aead_; }
  ByteView key() const { return key_.view(); }
  ByteView base_nonce() const { return base_nonce_; }
  ByteView exporter_secret() const { return exporter_secret_.view(); }
  uint64_t sequence() const { return sequence_; }

 private:
  Bytes nonce() const;
  AeadId aead_;
  SecretBytes key_;
  Bytes base_nonce_;
  SecretBytes exporter_secret_;
  uint64_t sequence_ = 0;
};

struct HpkeSender {
  Bytes enc;  // the encapsulated key, 32 bytes
  HpkeContext context;
};

// SetupBaseS (§5.1.1). `ephemeral` fixes the sender's ephemeral key (the test vectors'); left out,
// a fresh one is drawn. Throws orchard::Error for an unsupported suite or a bad recipient key.
HpkeSender hpke_setup_base_sender(const HpkeSuite& suite, ByteView recipient_public, ByteView info,
                                  const X25519KeyPair* ephemeral = nullptr);
// SetupBaseR (§5.1.1). Throws orchard::Error for an unsupported suite, an `enc` that is not 32
// bytes, or a DH result of all zeros.
HpkeContext hpke_setup_base_receiver(const HpkeSuite& suite, ByteView enc, const X25519KeyPair& recipient,
                                     ByteView info);

}  // namespace orchard::cloud
