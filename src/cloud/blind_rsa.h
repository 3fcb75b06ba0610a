// RSA blind signatures (RFC 9474), for the private cloud node's anonymous request tokens: the
// client blinds a message, the issuer signs it without seeing it, the client unblinds an ordinary
// RSASSA-PSS signature that no one can link to the signing request. Privacy Pass token type 2 is
// RSABSSA-SHA384-PSS-Deterministic. The big-number work is OpenSSL's BIGNUM, the hash SHA-384, the
// issuer's signing OpenSSL's raw RSA private operation, and verification OpenSSL's own RSA-PSS,
// which also checks the EMSA-PSS encoding written here.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "cloud/bytes.h"

namespace orchard::cloud::blind_rsa {

// The four RFC 9474 §5 variants: salt of 48 bytes (PSS) or none (PSSZERO); randomized ones
// prepend 32 random bytes to the message before blinding (Prepare), deterministic ones sign it as is.
enum class Variant {
  sha384_pss_randomized,
  sha384_psszero_randomized,
  sha384_pss_deterministic,
  sha384_psszero_deterministic,
};
constexpr size_t kHashSize = 48;          // SHA-384
constexpr size_t kRandomPrefixSize = 32;  // RFC 9474 §4.1
size_t salt_size(Variant variant);        // 48 or 0
bool randomized(Variant variant);
std::string_view variant_name(Variant variant);  // "RSABSSA-SHA384-PSS-Randomized", ...
std::optional<Variant> parse_variant(std::string_view name);

// An RSA public key (n, e). Copies share one immutable OpenSSL key.
class PublicKey {
 public:
  // Big-endian n and e; throws orchard::Error for an even or short (< 2048 bits) modulus, or an
  // exponent that is even, 1, or not below n.
  static PublicKey from_components(ByteView n, ByteView e);

  size_t modulus_bits() const;
  size_t modulus_size() const;  // bytes: every blinded message, blind signature and signature
  Bytes modulus() const;        // modulus_size() bytes
  Bytes exponent() const;       // minimal big-endian

  struct Impl;

 private:
  explicit PublicKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class PrivateKey;
  friend struct Access;  // the operations below, in blind_rsa.cpp
};

// The issuer's key: an OpenSSL RSA key (EVP_PKEY), kept as OpenSSL keeps it: its private parts in
// OpenSSL's secure heap where the process set one up (node.cpp does), cleared when freed, never
// copied out except by to_pem. Move-only.
//
// A key from generate or from_pem has its CRT factors, and blind_sign is OpenSSL's RSA private
// operation with CRT and OpenSSL's own blinding (about 1 ms for 2048 bits). A key from
// from_components has n, e and d only: the factors are not recovered, and OpenSSL's private
// operation then works from d (blinded and constant time too, about 7 times slower). Only test
// vectors (RFC 9474's give n, e, d) make keys that way.
class PrivateKey {
 public:
  // OpenSSL's RSA key generation with e = 65537; bits is 2048, 3072 or 4096.
  static PrivateKey generate(size_t bits);
  // Big-endian n, e, d, checked as PublicKey::from_components does and d < n; that d matches e is
  // checked by every blind_sign.
  static PrivateKey from_components(ByteView n, ByteView e, ByteView d);
  // An unencrypted PEM PKCS#8 RSA key ("BEGIN PRIVATE KEY", rsaEncryption), its n and e checked
  // as PublicKey::from_components does. Throws orchard::Error without quoting the text.
  static PrivateKey from_pem(std::string_view pem);
  // The PEM PKCS#8 of a key that has its CRT factors (from generate or from_pem); throws for one
  // from from_components. In OpenSSL's secure heap while it is written.
  SecretBytes to_pem() const;

  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) noexcept;
  ~PrivateKey();

  const PublicKey& public_key() const { return public_key_; }
  bool has_crt_factors() const;  // false only for a key from from_components

  struct Impl;

 private:
  PrivateKey(PublicKey public_key, std::unique_ptr<Impl> impl);
  PublicKey public_key_;
  std::unique_ptr<Impl> impl_;
  friend struct Access;
};

// RFC 9474 §4.1 Prepare: msg itself (deterministic), or 32 random bytes || msg (randomized).
// fixed_prefix replaces the random bytes, for test vectors only: 32 bytes for a randomized variant,
// empty for a deterministic one.
Bytes prepare(ByteView msg, Variant variant, std::optional<ByteView> fixed_prefix = std::nullopt);

// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-384 and MGF1-SHA-384: the encoded message of
// ceil(em_bits / 8) bytes, em_bits = modulus bits - 1. Throws when em_bits is too small for the salt.
Bytes emsa_pss_encode(ByteView msg, size_t em_bits, ByteView salt);

struct Blinded {
  Bytes blinded_msg;  // sent to the issuer
  SecretBytes inv;    // r^-1 mod n, kept for finalize: whoever has it links the signature to the request
};
// Fixed randomness, for test vectors only: the salt (salt_size(variant) bytes) and either the
// blind r or its inverse (big-endian, below n); empty ones are drawn at random.
struct BlindFixed {
  ByteView salt;
  ByteView r;
  ByteView inv;
};
// RFC 9474 §4.2 Blind, of the prepared message. Throws orchard::Error if the encoded message is
// not invertible mod n (a broken key), or on a bad fixed input.
Blinded blind(const PublicKey& key, ByteView prepared_msg, Variant variant, const BlindFixed* fixed = nullptr);

// RFC 9474 §4.3 BlindSign: blinded_msg^d mod n by OpenSSL's raw RSA private operation (CRT where
// the key has its factors, OpenSSL's blinding, constant time), checked by raising it to e again
// before it is returned (a fault or a wrong d would otherwise leak the key). Throws orchard::Error
// unless blinded_msg is modulus_size() bytes and below n. Thread-safe: calls may share one key.
Bytes blind_sign(const PrivateKey& key, ByteView blinded_msg);

// RFC 9474 §4.4 Finalize: the signature blind_sig * inv mod n, returned only if it verifies for
// prepared_msg; throws orchard::Error otherwise (a dishonest or broken issuer, a tampered reply).
Bytes finalize(const PublicKey& key, ByteView prepared_msg, ByteView blind_sig, ByteView inv, Variant variant);

// RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) of a prepared message, by OpenSSL: SHA-384, MGF1-SHA-384,
// salt of exactly salt_size(variant) bytes. False for any signature that does not verify,
// including one of the wrong length.
bool verify(const PublicKey& key, ByteView prepared_msg, ByteView sig, Variant variant);

}  // namespace orchard::cloud::blind_rsa
