#include "cloud/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <climits>
#include <memory>
#include <string>

#include "base/error.h"
#include "cloud/openssl_owner.h"

namespace orchard::cloud {

void openssl_fail(std::string_view component, const char* what) {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  std::string reason;
  if (code != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    reason = str_cat(": ", text);
  }
  fail(component, ": ", what, " failed", reason);
}

namespace {

constexpr size_t kHashSize = 32;  // SHA-256
constexpr int kTagSize = static_cast<int>(kAeadTagSize);

[[noreturn]] void openssl_fail(const char* what) { cloud::openssl_fail("cloud crypto", what); }

// EVP's lengths are ints; a larger buffer would be silently truncated.
int checked_int(size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX)) fail("cloud crypto: ", what, " of ", n, " bytes is too long");
  return static_cast<int>(n);
}

const EVP_CIPHER* aead_cipher(AeadId aead) {
  switch (aead) {
    case AeadId::aes128_gcm: return EVP_aes_128_gcm();
    case AeadId::chacha20_poly1305: return EVP_chacha20_poly1305();
    case AeadId::export_only: break;
  }
  fail("cloud crypto: AEAD 0x", std::hex, static_cast<unsigned>(aead), " cannot seal or open");
}

// A wrong key or nonce length is the caller's bug, not a forged message, so it throws in open too.
CipherCtx aead_context(AeadId aead, ByteView key, ByteView nonce, bool encrypt) {
  const EVP_CIPHER* cipher = aead_cipher(aead);
  if (key.size() != aead_key_size(aead))
    fail("cloud crypto: AEAD key is ", key.size(), " bytes, expected ", aead_key_size(aead));
  if (nonce.size() != aead_nonce_size(aead))
    fail("cloud crypto: AEAD nonce is ", nonce.size(), " bytes, expected ", aead_nonce_size(aead));
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) openssl_fail("EVP_CIPHER_CTX_new");
  // The cipher first, then the nonce length, then key and nonce: the order EVP's AEAD modes need.
  if (EVP_CipherInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) != 1 ||
      EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data(), encrypt) != 1)
    openssl_fail("AEAD init");
  return ctx;
}

// Empty inputs skip the update call: a span's null data pointer is not a buffer EVP must accept.
void aead_aad(EVP_CIPHER_CTX* ctx, ByteView aad) {
  int n = 0;
  if (!aad.empty() && EVP_CipherUpdate(ctx, nullptr, &n, aad.data(), checked_int(aad.size(), "AAD")) != 1)
    openssl_fail("AEAD AAD");
}

// HKDF in one of its single-step modes; `salt` and `info` are left out when null.
Bytes hkdf(int mode, ByteView key, const ByteView* salt, const ByteView* info, size_t length) {
  Kdf kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) openssl_fail("EVP_KDF_fetch(HKDF)");
  KdfCtx ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) openssl_fail("EVP_KDF_CTX_new");
  // OSSL_PARAM takes non-const pointers but only reads them. An empty key still needs a non-null
  // pointer: OpenSSL 3.0 refuses a null octet string even of length zero.
  static const uint8_t kEmpty = 0;
  auto octets = [](const char* name, ByteView b) {
    return OSSL_PARAM_construct_octet_string(name, const_cast<uint8_t*>(b.empty() ? &kEmpty : b.data()), b.size());
  };
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = octets(OSSL_KDF_PARAM_KEY, key);
  if (salt) params[n++] = octets(OSSL_KDF_PARAM_SALT, *salt);
  if (info && !info->empty()) params[n++] = octets(OSSL_KDF_PARAM_INFO, *info);
  params[n] = OSSL_PARAM_construct_end();
  Bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    openssl_fail("HKDF");
  }
  return out;
}

Bytes raw_public_key(EVP_PKEY* key) {
  Bytes out(kX25519KeySize);
  size_t n = out.size();
  if (EVP_PKEY_get_raw_public_key(key, out.data(), &n) != 1 || n != kX25519KeySize)
    openssl_fail("X25519 public key export");
  return out;
}

Pkey x25519_private(ByteView secret) {
  if (secret.size() != kX25519KeySize)
    fail("cloud crypto: X25519 secret key is ", secret.size(), " bytes, expected ", kX25519KeySize);
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, secret.data(), secret.size()));
  if (!key) openssl_fail("X25519 secret key import");
  return key;
}

}  // namespace

size_t aead_key_size(AeadId aead) {
  switch (aead) {
    case AeadId::aes128_gcm: return 16;
    case AeadId::chacha20_poly1305: return 32;
    case AeadId::export_only: return 0;
  }
  fail("cloud crypto: unknown AEAD 0x", std::hex, static_cast<unsigned>(aead));
}

size_t aead_nonce_size(AeadId aead) {
  switch (aead) {
    case AeadId::aes128_gcm:
    case AeadId::chacha20_poly1305: return 12;
    case AeadId::export_only: return 0;
  }
  fail("cloud crypto: unknown AEAD 0x", std::hex, static_cast<unsigned>(aead));
}

bool aead_supported(uint16_t id) {
  return id == static_cast<uint16_t>(AeadId::aes128_gcm) || id == static_cast<uint16_t>(AeadId::chacha20_poly1305);
}

Bytes aead_seal(AeadId aead, ByteView key, ByteView nonce, ByteView aad, ByteView plaintext) {
  CipherCtx ctx = aead_context(aead, key, nonce, true);
  aead_aad(ctx.get(), aad);
  // Both AEADs are stream modes: the ciphertext is as long as the plaintext, and Final writes nothing.
  Bytes out(plaintext.size() + kAeadTagSize);
  const int length = checked_int(plaintext.size(), "plaintext");
  int n = 0;
  if (length != 0 && (EVP_EncryptUpdate(ctx.get(), out.data(), &n, plaintext.data(), length) != 1 || n != length))
    openssl_fail("AEAD encrypt");
  int tail = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + plaintext.size(), &tail) != 1 || tail != 0)
    openssl_fail("AEAD encrypt final");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kTagSize, out.data() + plaintext.size()) != 1)
    openssl_fail("AEAD tag");
  return out;
}

std::optional<Bytes> aead_open(AeadId aead, ByteView key, ByteView nonce, ByteView aad, ByteView ciphertext) {
  CipherCtx ctx = aead_context(aead, key, nonce, false);
  if (ciphertext.size() < kAeadTagSize) return std::nullopt;
  const size_t body = ciphertext.size() - kAeadTagSize;
  const int length = checked_int(body, "ciphertext");
  aead_aad(ctx.get(), aad);
  Bytes out(body);
  int n = 0;
  if (length != 0 && (EVP_DecryptUpdate(ctx.get(), out.data(), &n, ciphertext.data(), length) != 1 || n != length))
    openssl_fail("AEAD decrypt");
  // The tag travels in a non-const pointer that EVP only reads.
  auto* tag = const_cast<uint8_t*>(ciphertext.data() + body);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kTagSize, tag) != 1) openssl_fail("AEAD set tag");
  int tail = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + body, &tail) != 1) {
    // Nothing of an unauthenticated plaintext is left behind, nor an error for the next caller.
    OPENSSL_cleanse(out.data(), out.size());
    ERR_clear_error();
    return std::nullopt;
  }
  return out;
}

// RFC 5869 §2.2: an absent salt is HashLen zeros. Passing them is the same HMAC key (HMAC zero-pads
// its key to the block size), and OpenSSL gets no empty salt to reject.
Bytes hkdf_extract(ByteView salt, ByteView ikm) {
  const uint8_t zeros[kHashSize] = {};
  const ByteView s = salt.empty() ? ByteView(zeros, kHashSize) : salt;
  return hkdf(EVP_KDF_HKDF_MODE_EXTRACT_ONLY, ikm, &s, nullptr, kHashSize);
}

Bytes hkdf_expand(ByteView prk, ByteView info, size_t length) {
  if (length > 255 * kHashSize) fail("cloud crypto: HKDF-Expand length ", length, " is over 255 * 32 bytes");
  if (prk.size() < kHashSize) fail("cloud crypto: HKDF-Expand PRK is ", prk.size(), " bytes, under 32");
  if (length == 0) return {};  // OpenSSL refuses a zero-length output
  return hkdf(EVP_KDF_HKDF_MODE_EXPAND_ONLY, prk, nullptr, &info, length);
}

X25519KeyPair x25519_generate() {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  if (!ctx) openssl_fail("EVP_PKEY_CTX_new_id(X25519)");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) openssl_fail("X25519 keygen");
  Pkey key(raw);
  X25519KeyPair pair{SecretBytes(kX25519KeySize), {}};
  size_t n = pair.secret.size();
  if (EVP_PKEY_get_raw_private_key(key.get(), pair.secret.data(), &n) != 1 || n != kX25519KeySize)
    openssl_fail("X25519 secret key export");
  pair.public_key = raw_public_key(key.get());
  return pair;
}

X25519KeyPair x25519_from_secret(ByteView secret) {
  Pkey key = x25519_private(secret);
  return {SecretBytes(secret), raw_public_key(key.get())};
}

SecretBytes x25519(ByteView secret, ByteView peer_public) {
  if (peer_public.size() != kX25519KeySize)
    fail("cloud crypto: X25519 peer public key is ", peer_public.size(), " bytes, expected ", kX25519KeySize);
  Pkey key = x25519_private(secret);
  Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), peer_public.size()));
  if (!peer) openssl_fail("X25519 peer public key import");
  PkeyCtx ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (!ctx) openssl_fail("EVP_PKEY_CTX_new");
  if (EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1)
    openssl_fail("X25519 derive init");
  SecretBytes shared(kX25519KeySize);
  size_t n = shared.size();
  // OpenSSL 3.0 itself refuses an all-zero result, and says only that the derive failed; the check
  // below does not rely on it.
  if (EVP_PKEY_derive(ctx.get(), shared.data(), &n) != 1) {
    ERR_clear_error();
    fail("cloud crypto: X25519 derive failed (OpenSSL refuses a small-order peer public key)");
  }
  if (n != kX25519KeySize) fail("cloud crypto: X25519 derive gave ", n, " bytes, expected ", kX25519KeySize);
  uint8_t any = 0;  // constant time: no early exit on the first non-zero byte
  for (uint8_t b : shared.view()) any |= b;
  if (any == 0) fail("cloud crypto: X25519 shared secret is all zeros (a small-order peer public key)");
  return shared;
}

Bytes sha256(ByteView data) {
  Bytes out(kSha256Size);
  unsigned int n = 0;
  // An empty input still needs a non-null pointer (a span's may be null); its byte is not read.
  static const uint8_t kEmpty = 0;
  if (EVP_Digest(data.empty() ? &kEmpty : data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 ||
      n != kSha256Size)
    openssl_fail("SHA-256");
  return out;
}

void random_bytes(uint8_t* out, size_t size) {
  // RAND_bytes takes an int length; larger requests go in pieces.
  while (size > 0) {
    const int chunk = static_cast<int>(size < static_cast<size_t>(INT_MAX) ? size : static_cast<size_t>(INT_MAX));
    if (RAND_bytes(out, chunk) != 1) openssl_fail("RAND_bytes");
    out += chunk;
    size -= static_cast<size_t>(chunk);
  }
}

Bytes random_bytes(size_t size) {
  Bytes out(size);
  random_bytes(out.data(), out.size());
  return out;
}

}  // namespace orchard::cloud
