#include "cloud/hpke.h"

#include <openssl/crypto.h>

#include <limits>
#include <utility>

#include "base/error.h"

namespace orchard::cloud {
namespace {

constexpr size_t kHashSize = 32;    // Nh of HKDF-SHA256
constexpr size_t kSecretSize = 32;  // Nsecret of DHKEM(X25519, HKDF-SHA256)
constexpr uint8_t kModeBase = 0x00;

// Intermediate secrets (DH results, PRKs, labeled inputs holding them) live in ordinary vectors
// for the few calls they exist; this zeroes them when they go, as SecretBytes does.
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(Bytes b) : bytes_(std::move(b)) {}
  ~Scratch() {
    if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Bytes& bytes() { return bytes_; }
  ByteView view() const { return bytes_; }

 private:
  Bytes bytes_;
};

// §4: a KEM's own derivations are labeled "KEM" || kem_id, the key schedule's "HPKE" || kem || kdf || aead,
// so that no two uses of the same secret ever expand to the same bytes.
Bytes kem_suite_id() {
  Bytes id;
  put_bytes(id, as_bytes("KEM"));
  put_u16(id, kKemX25519HkdfSha256);
  return id;
}

Bytes hpke_suite_id(AeadId aead) {
  Bytes id;
  put_bytes(id, as_bytes("HPKE"));
  put_u16(id, kKemX25519HkdfSha256);
  put_u16(id, kKdfHkdfSha256);
  put_u16(id, static_cast<uint16_t>(aead));
  return id;
}

// §4 LabeledExtract: Extract(salt, "HPKE-v1" || suite_id || label || ikm).
Bytes labeled_extract(ByteView suite_id, ByteView salt, std::string_view label, ByteView ikm) {
  Scratch labeled;
  put_bytes(labeled.bytes(), as_bytes("HPKE-v1"));
  put_bytes(labeled.bytes(), suite_id);
  put_bytes(labeled.bytes(), as_bytes(label));
  put_bytes(labeled.bytes(), ikm);
  return hkdf_extract(salt, labeled.view());
}

// §4 LabeledExpand: Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L).
Bytes labeled_expand(ByteView suite_id, ByteView prk, std::string_view label, ByteView info, size_t length) {
  // Over 255 * Nh HKDF itself refuses; the 2-byte length prefix could not carry more either.
  if (length > 255 * kHashSize) fail("HPKE: LabeledExpand length ", length, " is over 255 * 32 bytes");
  Bytes labeled;
  put_u16(labeled, static_cast<uint16_t>(length));
  put_bytes(labeled, as_bytes("HPKE-v1"));
  put_bytes(labeled, suite_id);
  put_bytes(labeled, as_bytes(label));
  put_bytes(labeled, info);
  return hkdf_expand(prk, labeled, length);
}

// §4.1 ExtractAndExpand: the KEM's shared secret from the DH result, bound to both public keys.
Bytes extract_and_expand(ByteView dh, ByteView kem_context) {
  const Bytes suite = kem_suite_id();
  Scratch prk(labeled_extract(suite, {}, "eae_prk", dh));
  return labeled_expand(suite, prk.view(), "shared_secret", kem_context, kSecretSize);
}

Bytes kem_context(ByteView enc, ByteView recipient_public) {
  Bytes context;
  put_bytes(context, enc);
  put_bytes(context, recipient_public);
  return context;
}

void check_suite(const HpkeSuite& suite) {
  if (suite.kem != kKemX25519HkdfSha256) fail("HPKE: KEM 0x", std::hex, suite.kem, " is not supported (only 0x20)");
  if (suite.kdf != kKdfHkdfSha256) fail("HPKE: KDF 0x", std::hex, suite.kdf, " is not supported (only 0x1)");
  switch (suite.aead) {
    case AeadId::aes128_gcm:
    case AeadId::chacha20_poly1305:
    case AeadId::export_only: return;
  }
  fail("HPKE: AEAD 0x", std::hex, static_cast<unsigned>(suite.aead), " is not supported");
}

// §5.1 KeySchedule for mode_base: psk and psk_id are empty.
HpkeContext key_schedule(AeadId aead, ByteView shared_secret, ByteView info) {
  const Bytes suite = hpke_suite_id(aead);
  const Bytes psk_id_hash = labeled_extract(suite, {}, "psk_id_hash", {});
  const Bytes info_hash = labeled_extract(suite, {}, "info_hash", info);
  Bytes context;
  put_u8(context, kModeBase);
  put_bytes(context, psk_id_hash);
  put_bytes(context, info_hash);
  Scratch secret(labeled_extract(suite, shared_secret, "secret", {}));
  // Export-only (Nk = Nn = 0) expands no key and no nonce.
  Scratch key;
  Bytes base_nonce;  // not a secret: an AEAD stays secure with its nonces known
  if (aead != AeadId::export_only) {
    key.bytes() = labeled_expand(suite, secret.view(), "key", context, aead_key_size(aead));
    base_nonce = labeled_expand(suite, secret.view(), "base_nonce", context, aead_nonce_size(aead));
  }
  Scratch exporter(labeled_expand(suite, secret.view(), "exp", context, kHashSize));
  return HpkeContext(aead, SecretBytes(key.view()), std::move(base_nonce), SecretBytes(exporter.view()));
}

}  // namespace

// §7.1.3 for X25519: the expanded bytes are the secret key as they are; X25519 clamps them itself.
X25519KeyPair hpke_derive_key_pair(ByteView ikm) {
  // RFC 9180 asks for at least Nsk bytes of entropy, which a shorter ikm cannot hold.
  if (ikm.size() < kX25519KeySize) fail("HPKE: DeriveKeyPair ikm is ", ikm.size(), " bytes, under 32");
  const Bytes suite = kem_suite_id();
  Scratch dkp_prk(labeled_extract(suite, {}, "dkp_prk", ikm));
  Scratch sk(labeled_expand(suite, dkp_prk.view(), "sk", {}, kX25519KeySize));
  return x25519_from_secret(sk.view());
}

HpkeContext::HpkeContext(AeadId aead, SecretBytes key, Bytes base_nonce, SecretBytes exporter_secret)
    : aead_(aead),
      key_(std::move(key)),
      base_nonce_(std::move(base_nonce)),
      exporter_secret_(std::move(exporter_secret)) {
  check_suite({.aead = aead});
  if (key_.size() != aead_key_size(aead))
    fail("HPKE: context key is ", key_.size(), " bytes, expected ", aead_key_size(aead));
  if (base_nonce_.size() != aead_nonce_size(aead))
    fail("HPKE: context base nonce is ", base_nonce_.size(), " bytes, expected ", aead_nonce_size(aead));
  if (exporter_secret_.size() != kHashSize)
    fail("HPKE: context exporter secret is ", exporter_secret_.size(), " bytes, expected ", kHashSize);
}

// §5.2 ComputeNonce: the sequence number, big-endian and right-aligned to Nn bytes, XOR base_nonce.
Bytes HpkeContext::nonce() const {
  Bytes nonce = base_nonce_;
  uint64_t seq = sequence_;
  for (size_t i = nonce.size(); i > 0 && seq != 0; --i, seq >>= 8) nonce[i - 1] ^= static_cast<uint8_t>(seq);
  return nonce;
}

Bytes HpkeContext::seal(ByteView aad, ByteView plaintext) {
  if (aead_ == AeadId::export_only) fail("HPKE: an export-only context cannot seal");
  // §5.2 stops at 2^96 - 1 for Nn = 12; the 64-bit counter stops first, before it could wrap and
  // reuse a nonce.
  if (sequence_ == std::numeric_limits<uint64_t>::max()) fail("HPKE: sequence number exhausted, cannot seal");
  Bytes ct = aead_seal(aead_, key_.view(), nonce(), aad, plaintext);
  ++sequence_;
  return ct;
}

std::optional<Bytes> HpkeContext::open(ByteView aad, ByteView ciphertext) {
  if (aead_ == AeadId::export_only) fail("HPKE: an export-only context cannot open");
  if (sequence_ == std::numeric_limits<uint64_t>::max()) fail("HPKE: sequence number exhausted, cannot open");
  // A forgery must not move the receiver past the sender's next nonce.
  std::optional<Bytes> pt = aead_open(aead_, key_.view(), nonce(), aad, ciphertext);
  if (pt) ++sequence_;
  return pt;
}

Bytes HpkeContext::export_secret(ByteView exporter_context, size_t length) const {
  return labeled_expand(hpke_suite_id(aead_), exporter_secret_.view(), "sec", exporter_context, length);
}

// §4.1 Encap then §5.1.1 SetupBaseS.
HpkeSender hpke_setup_base_sender(const HpkeSuite& suite, ByteView recipient_public, ByteView info,
                                  const X25519KeyPair* ephemeral) {
  check_suite(suite);
  if (recipient_public.size() != kX25519KeySize)
    fail("HPKE: recipient public key is ", recipient_public.size(), " bytes, expected ", kX25519KeySize);
  X25519KeyPair drawn;
  if (!ephemeral) {
    drawn = x25519_generate();
    ephemeral = &drawn;
  }
  if (ephemeral->public_key.size() != kX25519KeySize)
    fail("HPKE: ephemeral public key is ", ephemeral->public_key.size(), " bytes, expected ", kX25519KeySize);
  // x25519 throws for a small-order recipient key, whose DH result is all zeros.
  const SecretBytes dh = x25519(ephemeral->secret.view(), recipient_public);
  Bytes enc = ephemeral->public_key;
  Scratch shared_secret(extract_and_expand(dh.view(), kem_context(enc, recipient_public)));
  return {std::move(enc), key_schedule(suite.aead, shared_secret.view(), info)};
}

// §4.1 Decap then §5.1.1 SetupBaseR. The recipient's public key is the pair's, as x25519_* computed
// it from the secret.
HpkeContext hpke_setup_base_receiver(const HpkeSuite& suite, ByteView enc, const X25519KeyPair& recipient,
                                     ByteView info) {
  check_suite(suite);
  if (enc.size() != kHpkeEncSize) fail("HPKE: enc is ", enc.size(), " bytes, expected ", kHpkeEncSize);
  if (recipient.public_key.size() != kX25519KeySize)
    fail("HPKE: recipient public key is ", recipient.public_key.size(), " bytes, expected ", kX25519KeySize);
  const SecretBytes dh = x25519(recipient.secret.view(), enc);
  Scratch shared_secret(extract_and_expand(dh.view(), kem_context(enc, recipient.public_key)));
  return key_schedule(suite.aead, shared_secret.view(), info);
}

}  // namespace orchard::cloud
