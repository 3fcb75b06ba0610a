#include "cloud/privacy_pass.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/crypto.h"
#include "cloud/openssl_owner.h"
#include "cloud/signed_note.h"

namespace orchard::cloud::privacy_pass {
namespace {

using Reason = TokenError::Reason;

[[noreturn]] void refuse(Reason reason, const std::string& message) { throw TokenError(reason, message); }
[[noreturn]] void openssl_fail(const char* what) { cloud::openssl_fail("privacy pass", what); }

// Big-endian fields of a wire message, each read checked against what is left.
class Reader {
 public:
  Reader(ByteView bytes, const char* what) : bytes_(bytes), what_(what) {}
  uint8_t u8() { return take(1)[0]; }
  uint16_t u16() {
    const ByteView b = take(2);
    return static_cast<uint16_t>(b[0] << 8 | b[1]);
  }
  ByteView take(size_t n) {
    if (bytes_.size() - pos_ < n)
      refuse(Reason::malformed, str_cat(what_, ": truncated (", bytes_.size(), " bytes)"));
    const ByteView out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  void finish() const {
    if (pos_ != bytes_.size())
      refuse(Reason::malformed, str_cat(what_, ": ", bytes_.size() - pos_, " bytes after its end"));
  }

 private:
  ByteView bytes_;
  const char* what_;
  size_t pos_ = 0;
};

Bytes copy(ByteView b) { return Bytes(b.begin(), b.end()); }

void check_key_size(const blind_rsa::PublicKey& key, const char* who) {
  if (key.modulus_bits() != kModulusBits)
    fail(who, ": token type 2 needs a ", kModulusBits, "-bit RSA key (Nk = ", kNk, "), this one has ",
         key.modulus_bits(), " bits");
}

// Big-endian, equal lengths: the byte order is the numeric order.
bool below_modulus(ByteView x, const Bytes& n) {
  return x.size() == n.size() && std::lexicographical_compare(x.begin(), x.end(), n.begin(), n.end());
}

// ---- DER, only what RFC 9578's SubjectPublicKeyInfo needs ----

void put_der_length(Bytes& out, size_t n) {
  if (n < 0x80) {
    out.push_back(static_cast<uint8_t>(n));
  } else if (n <= 0xff) {
    out.push_back(0x81);
    out.push_back(static_cast<uint8_t>(n));
  } else if (n <= 0xffff) {
    out.push_back(0x82);
    out.push_back(static_cast<uint8_t>(n >> 8));
    out.push_back(static_cast<uint8_t>(n));
  } else {
    fail("privacy pass: DER length ", n, " is over 65535");
  }
}

void put_der(Bytes& out, uint8_t tag, ByteView content) {
  out.push_back(tag);
  put_der_length(out, content.size());
  put_bytes(out, content);
}

// A non-negative INTEGER: minimal, with a zero byte where the top bit would read as a sign.
void put_der_unsigned(Bytes& out, ByteView big_endian) {
  size_t skip = 0;
  while (skip + 1 < big_endian.size() && big_endian[skip] == 0) ++skip;
  Bytes content;
  if (big_endian.empty() || big_endian[skip] & 0x80) content.push_back(0);
  put_bytes(content, big_endian.subspan(skip));
  put_der(out, 0x02, content);
}

// AlgorithmIdentifier { id-RSASSA-PSS, RSASSA-PSS-params } (RFC 4055 §3.1) with SHA-384 (RFC 5754
// §2: no parameters), MGF1 with SHA-384, salt length 48, trailerField absent (its default, 1).
constexpr uint8_t kRsaPssSha384AlgorithmId[] = {
    0x30, 0x3d,                                                                    // SEQUENCE
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,              // 1.2.840.113549.1.1.10
    0x30, 0x30,                                                                    // RSASSA-PSS-params
    0xa0, 0x0d, 0x30, 0x0b,                                                        // [0] hashAlgorithm
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,              // 2.16.840.1.101.3.4.2.2
    0xa1, 0x1a, 0x30, 0x18,                                                        // [1] maskGenAlgorithm
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08,              // id-mgf1
    0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,  // SHA-384
    0xa2, 0x03, 0x02, 0x01, 0x30,                                                  // [2] saltLength 48
};
constexpr size_t kMaxSpkiSize = 4096;

Bytes bn_bytes(const BIGNUM* bn) {
  Bytes out(static_cast<size_t>(BN_num_bytes(bn)));
  if (!out.empty() && BN_bn2bin(bn, out.data()) != static_cast<int>(out.size())) openssl_fail("BN_bn2bin");
  return out;
}

Bn get_bn(const EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) openssl_fail(name);
  return Bn(raw);
}

std::string get_text(const EVP_PKEY* key, const char* name) {
  char text[64] = {};
  size_t length = 0;
  if (EVP_PKEY_get_utf8_string_param(key, name, text, sizeof text, &length) != 1) {
    ERR_clear_error();
    return "";
  }
  return std::string(text, length);
}

// ---- Files ----

std::string errno_text() { return std::strerror(errno); }

void flock_retry(int fd, int operation, const std::string& path, const char* what) {
  while (::flock(fd, operation) != 0) {
    if (errno != EINTR) fail(what, " ", path, ": cannot lock: ", errno_text());
  }
}

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Opens `path` and flocks it. A writer replaces the file by renaming a new one over the path, so a
// lock taken on the old file after that would guard nothing: the lock is retried until it is held
// on the file the path names. -1 when the file does not exist and `create` is false.
int open_locked(const std::string& path, bool create, int operation, const char* what) {
  for (;;) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
      if (errno == ENOENT && !create) return -1;
      fail(what, " ", path, ": cannot be opened: ", errno_text());
    }
    try {
      flock_retry(fd, operation, path, what);
    } catch (...) {
      ::close(fd);
      throw;
    }
    struct stat held {}, named {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && same_file(held, named)) return fd;
    ::close(fd);  // replaced (or removed) meanwhile: lock the new one
  }
}

// Closes (and so unlocks) a descriptor when it goes out of scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

std::string read_all(int fd, size_t max_size, const std::string& path, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(what, " ", path, ": ", errno_text());
  const auto size = static_cast<size_t>(st.st_size);
  if (size > max_size) fail(what, " ", path, ": ", size, " bytes, over the limit of ", max_size);
  std::string text(size, '\0');
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, text.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(what, " ", path, ": read failed");
    done += static_cast<size_t>(n);
  }
  return text;
}

bool write_all_at(int fd, ByteView bytes, uint64_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// The whole file replaced at once (base/atomic_file.h), mode 0600.
void replace_file(const std::string& path, ByteView content, const char* what) {
  AtomicFile file(path);
  if (::fchmod(file.fd(), 0600) != 0) fail(what, " ", path, ": cannot set its mode: ", errno_text());
  if (!write_all_at(file.fd(), content, 0)) fail(what, " ", path, ": write failed: ", errno_text());
  file.commit();
}

void check_private_mode(int fd, const std::string& path, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(what, " ", path, ": ", errno_text());
  if (st.st_mode & 077) fail(what, " ", path, ": readable by others than its owner (chmod 600 it)");
}

}  // namespace

// ---- Errors ----

TokenError::TokenError(Reason reason, const std::string& message) : Error(message), reason_(reason) {}

std::string_view reason_name(TokenError::Reason reason) {
  switch (reason) {
    case Reason::missing: return "missing";
    case Reason::malformed: return "malformed";
    case Reason::wrong_type: return "wrong_type";
    case Reason::wrong_challenge: return "wrong_challenge";
    case Reason::unknown_key: return "unknown_key";
    case Reason::bad_signature: return "bad_signature";
    case Reason::double_spent: return "double_spent";
    case Reason::unavailable: return "unavailable";
  }
  return "unknown";
}

RateLimited::RateLimited(const std::string& message, std::chrono::seconds retry_after)
    : Error(message), retry_after_(retry_after) {}

// ---- base64url ----

std::string base64url_encode(ByteView bytes) {
  std::string text = base64_encode(bytes);
  for (char& c : text) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  return text;
}

Bytes base64url_decode(std::string_view text) {
  std::string standard(text);
  for (char& c : standard) {
    if (c == '+' || c == '/') fail("base64url text has a character outside the base64url alphabet");
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
  }
  try {
    return base64_decode(standard);
  } catch (const Error& e) {
    fail("base64url: ", e.what());
  }
}

// ---- TokenChallenge ----

Bytes TokenChallenge::encode() const {
  if (issuer_name.empty() || issuer_name.size() > 0xffff)
    fail("token challenge: issuer name of ", issuer_name.size(), " bytes (1 to 65535)");
  if (!redemption_context.empty() && redemption_context.size() != kRedemptionContextSize)
    fail("token challenge: redemption context of ", redemption_context.size(), " bytes (0 or 32)");
  if (origin_info.size() > 0xffff) fail("token challenge: origin info of ", origin_info.size(), " bytes (at most 65535)");
  Bytes out;
  put_u16(out, token_type);
  put_u16(out, static_cast<uint16_t>(issuer_name.size()));
  put_bytes(out, as_bytes(issuer_name));
  put_u8(out, static_cast<uint8_t>(redemption_context.size()));
  put_bytes(out, redemption_context);
  put_u16(out, static_cast<uint16_t>(origin_info.size()));
  put_bytes(out, as_bytes(origin_info));
  return out;
}

TokenChallenge TokenChallenge::parse(ByteView bytes) {
  Reader in(bytes, "token challenge");
  TokenChallenge c;
  c.token_type = in.u16();
  const uint16_t issuer_size = in.u16();
  if (issuer_size == 0) refuse(Reason::malformed, "token challenge: empty issuer name");
  c.issuer_name = std::string(as_text(in.take(issuer_size)));
  const uint8_t context_size = in.u8();
  if (context_size != 0 && context_size != kRedemptionContextSize)
    refuse(Reason::malformed, str_cat("token challenge: redemption context of ", int{context_size}, " bytes (0 or 32)"));
  c.redemption_context = copy(in.take(context_size));
  c.origin_info = std::string(as_text(in.take(in.u16())));
  in.finish();
  return c;
}

Bytes TokenChallenge::digest() const { return sha256(encode()); }

// ---- The issuer key's encoding ----

Bytes encode_public_key(const blind_rsa::PublicKey& key) {
  Bytes rsa_key;  // RSAPublicKey (RFC 8017 §A.1.1)
  put_der_unsigned(rsa_key, key.modulus());
  put_der_unsigned(rsa_key, key.exponent());
  Bytes rsa_key_seq;
  put_der(rsa_key_seq, 0x30, rsa_key);
  Bytes bits{0x00};  // BIT STRING: no unused bits
  put_bytes(bits, rsa_key_seq);
  Bytes body(std::begin(kRsaPssSha384AlgorithmId), std::end(kRsaPssSha384AlgorithmId));
  put_der(body, 0x03, bits);
  Bytes spki;
  put_der(spki, 0x30, body);
  return spki;
}

blind_rsa::PublicKey parse_public_key(ByteView spki) {
  if (spki.empty() || spki.size() > kMaxSpkiSize)
    fail("issuer public key: ", spki.size(), " bytes is not a key encoding (1 to ", kMaxSpkiSize, ")");
  const unsigned char* p = spki.data();
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (!key) {
    ERR_clear_error();
    fail("issuer public key: not a DER SubjectPublicKeyInfo");
  }
  if (p != spki.data() + spki.size())
    fail("issuer public key: ", spki.data() + spki.size() - p, " bytes after the SubjectPublicKeyInfo");
  if (!EVP_PKEY_is_a(key.get(), "RSA-PSS"))
    fail("issuer public key: a ", EVP_PKEY_get0_type_name(key.get()) ? EVP_PKEY_get0_type_name(key.get()) : "non-RSA",
         " key, not RSASSA-PSS (RFC 9578 §6.5)");
  const std::string digest = get_text(key.get(), OSSL_PKEY_PARAM_RSA_DIGEST);
  const std::string mgf1 = get_text(key.get(), OSSL_PKEY_PARAM_RSA_MGF1_DIGEST);
  int salt = -1;
  if (EVP_PKEY_get_int_param(key.get(), OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &salt) != 1) ERR_clear_error();
  if (digest != "SHA2-384" || mgf1 != "SHA2-384" || salt != static_cast<int>(blind_rsa::kHashSize))
    fail("issuer public key: RSASSA-PSS parameters are not SHA-384, MGF1-SHA-384, salt 48 (got hash '", digest,
         "', MGF1 hash '", mgf1, "', salt ", salt, ")");
  blind_rsa::PublicKey out =
      blind_rsa::PublicKey::from_components(bn_bytes(get_bn(key.get(), OSSL_PKEY_PARAM_RSA_N).get()),
                                            bn_bytes(get_bn(key.get(), OSSL_PKEY_PARAM_RSA_E).get()));
  const Bytes canonical = encode_public_key(out);
  if (!std::equal(canonical.begin(), canonical.end(), spki.begin(), spki.end()))
    fail("issuer public key: not the RFC 9578 encoding (hash identifiers without NULL parameters, no trailer "
         "field, minimal DER), which the token key id is computed over");
  return out;
}

Bytes load_public_key_file(const std::string& path) {
  std::string text = read_text_file(path, 8192);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  try {
    const Bytes spki = base64url_decode(text);
    parse_public_key(spki);
    return spki;
  } catch (const Error& e) {
    fail("issuer public key file ", path, ": ", e.what());
  }
}

Bytes token_key_id(ByteView spki) { return sha256(spki); }
Bytes token_key_id(const blind_rsa::PublicKey& key) { return sha256(encode_public_key(key)); }

// ---- The issuer's key file ----

void save_issuer_key(const blind_rsa::PrivateKey& key, const std::string& path) {
  const SecretBytes pem = key.to_pem();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail("issuer key file ", path, ": cannot be created: ", errno_text());
  const bool ok = write_all_at(fd, pem.view(), 0) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    fail("issuer key file ", path, ": write failed");
  }
}

blind_rsa::PrivateKey load_issuer_key(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("issuer key file ", path, ": cannot be opened: ", errno_text());
  FdCloser closer{fd};
  check_private_mode(fd, path, "issuer key file");
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("issuer key file ", path, ": ", errno_text());
  if (st.st_size > 16384) fail("issuer key file ", path, ": longer than a 2048-bit key");
  SecretBytes text(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("issuer key file ", path, ": read failed");
    done += static_cast<size_t>(n);
  }
  try {
    blind_rsa::PrivateKey key = blind_rsa::PrivateKey::from_pem(as_text(text.view()));
    check_key_size(key.public_key(), "issuer key");
    return key;
  } catch (const Error& e) {
    fail("issuer key file ", path, ": ", e.what());
  }
}

// ---- Token, TokenRequest, TokenResponse ----

Bytes Token::token_input() const {
  if (nonce.size() != kNonceSize || challenge_digest.size() != kDigestSize || token_key_id.size() != kTokenKeyIdSize)
    fail("token: nonce, challenge digest and token key id must be 32 bytes each");
  Bytes out;
  out.reserve(kTokenInputSize);
  put_u16(out, token_type);
  put_bytes(out, nonce);
  put_bytes(out, challenge_digest);
  put_bytes(out, token_key_id);
  return out;
}

Bytes Token::encode() const {
  if (authenticator.size() != kNk) fail("token: authenticator of ", authenticator.size(), " bytes, expected ", kNk);
  Bytes out = token_input();
  put_bytes(out, authenticator);
  return out;
}

Token Token::parse(ByteView bytes) {
  Reader in(bytes, "token");
  Token t;
  t.token_type = in.u16();
  if (t.token_type != kTokenTypeBlindRsa)
    refuse(Reason::wrong_type, str_cat("token type ", t.token_type, " is not 2 (Blind RSA 2048)"));
  if (bytes.size() != kTokenSize)
    refuse(Reason::malformed, str_cat("token: ", bytes.size(), " bytes, a type 2 token has ", kTokenSize));
  t.nonce = copy(in.take(kNonceSize));
  t.challenge_digest = copy(in.take(kDigestSize));
  t.token_key_id = copy(in.take(kTokenKeyIdSize));
  t.authenticator = copy(in.take(kNk));
  in.finish();
  return t;
}

Bytes TokenRequest::encode() const {
  if (blinded_msg.size() != kNk) fail("token request: blinded message of ", blinded_msg.size(), " bytes, expected ", kNk);
  Bytes out;
  put_u16(out, token_type);
  put_u8(out, truncated_token_key_id);
  put_bytes(out, blinded_msg);
  return out;
}

TokenRequest TokenRequest::parse(ByteView bytes) {
  Reader in(bytes, "token request");
  TokenRequest r;
  r.token_type = in.u16();
  if (r.token_type != kTokenTypeBlindRsa)
    refuse(Reason::wrong_type, str_cat("token request type ", r.token_type, " is not 2 (Blind RSA 2048)"));
  if (bytes.size() != kTokenRequestSize)
    refuse(Reason::malformed, str_cat("token request: ", bytes.size(), " bytes, a type 2 request has ", kTokenRequestSize));
  r.truncated_token_key_id = in.u8();
  r.blinded_msg = copy(in.take(kNk));
  in.finish();
  return r;
}

Bytes TokenResponse::encode() const {
  if (blind_sig.size() != kNk) fail("token response: blind signature of ", blind_sig.size(), " bytes, expected ", kNk);
  return blind_sig;
}

TokenResponse TokenResponse::parse(ByteView bytes) {
  if (bytes.size() != kNk)
    refuse(Reason::malformed, str_cat("token response: ", bytes.size(), " bytes, a type 2 response has ", kNk));
  return TokenResponse{copy(bytes)};
}

// ---- Client ----

Bytes PendingToken::token_input() const {
  Token t;
  t.nonce = nonce;
  t.challenge_digest = challenge_digest;
  t.token_key_id = token_key_id;
  return t.token_input();
}

ClientTokenRequest make_token_request(const blind_rsa::PublicKey& issuer_key, const TokenChallenge& challenge,
                                      const TokenRequestFixed* fixed) {
  check_key_size(issuer_key, "token request");
  if (challenge.token_type != kTokenTypeBlindRsa)
    fail("token request: the challenge is for token type ", challenge.token_type, ", only type 2 is supported");
  ClientTokenRequest out;
  PendingToken& p = out.pending;
  if (fixed && !fixed->nonce.empty()) {
    if (fixed->nonce.size() != kNonceSize) fail("token request: fixed nonce of ", fixed->nonce.size(), " bytes");
    p.nonce = copy(fixed->nonce);
  } else {
    p.nonce = random_bytes(kNonceSize);
  }
  p.challenge_digest = challenge.digest();
  p.token_key_id = token_key_id(issuer_key);
  // Deterministic variant: PrepareIdentity, the token input is blinded as it is.
  blind_rsa::BlindFixed blind_fixed;
  if (fixed) blind_fixed.salt = fixed->salt, blind_fixed.r = fixed->r;
  blind_rsa::Blinded blinded = blind_rsa::blind(issuer_key, p.token_input(), kVariant, fixed ? &blind_fixed : nullptr);
  p.inv = std::move(blinded.inv);
  out.request.truncated_token_key_id = p.token_key_id.back();
  out.request.blinded_msg = std::move(blinded.blinded_msg);
  return out;
}

Token finalize_token(const blind_rsa::PublicKey& issuer_key, const PendingToken& pending, ByteView token_response) {
  if (pending.token_key_id != token_key_id(issuer_key))
    refuse(Reason::unknown_key, "token response: the pending token was made for another issuer key");
  const TokenResponse response = TokenResponse::parse(token_response);
  Token t;
  t.nonce = pending.nonce;
  t.challenge_digest = pending.challenge_digest;
  t.token_key_id = pending.token_key_id;
  try {
    t.authenticator = blind_rsa::finalize(issuer_key, t.token_input(), response.blind_sig, pending.inv.view(), kVariant);
  } catch (const Error& e) {
    refuse(Reason::bad_signature, str_cat("token response: the issuer's blind signature does not give a valid token (",
                                          e.what(), ")"));
  }
  return t;
}

std::string authorization_header(const Token& token) {
  return "PrivateToken token=\"" + base64url_encode(token.encode()) + "\"";
}

namespace {

constexpr size_t kMaxAuthorizationSize = 8192;

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_tchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

// RFC 9110 §11.4: credentials = auth-scheme [ 1*SP #auth-param ], auth-param = token BWS "=" BWS
// ( token / quoted-string ). An unquoted value is read up to the next comma or white space, so
// that a padded base64url value (ending in '=') is accepted as clients send it.
Token parse_authorization(std::string_view value) {
  while (!value.empty() && is_space(value.front())) value.remove_prefix(1);
  while (!value.empty() && is_space(value.back())) value.remove_suffix(1);
  if (value.empty()) refuse(Reason::missing, "no Authorization header: a PrivateToken token is required");
  if (value.size() > kMaxAuthorizationSize)
    refuse(Reason::malformed, str_cat("Authorization header of ", value.size(), " bytes, over ", kMaxAuthorizationSize));
  size_t i = 0;
  while (i < value.size() && is_tchar(value[i])) ++i;
  if (!iequals(value.substr(0, i), "PrivateToken"))
    refuse(Reason::missing, "the Authorization header is not of the PrivateToken scheme");
  if (i < value.size() && !is_space(value[i]))
    refuse(Reason::malformed, "Authorization: PrivateToken must be followed by a space and its parameters");
  std::optional<std::string> token;
  while (i < value.size()) {
    while (i < value.size() && (is_space(value[i]) || value[i] == ',')) ++i;
    if (i == value.size()) break;
    const size_t name_start = i;
    while (i < value.size() && is_tchar(value[i])) ++i;
    const std::string_view name = value.substr(name_start, i - name_start);
    if (name.empty()) refuse(Reason::malformed, "Authorization: a parameter name is expected");
    while (i < value.size() && is_space(value[i])) ++i;
    if (i == value.size() || value[i] != '=') refuse(Reason::malformed, "Authorization: '=' expected after a parameter name");
    ++i;
    while (i < value.size() && is_space(value[i])) ++i;
    std::string param;
    if (i < value.size() && value[i] == '"') {
      for (++i;; ++i) {
        if (i == value.size()) refuse(Reason::malformed, "Authorization: unterminated quoted parameter");
        if (value[i] == '"') break;
        if (value[i] == '\\' && ++i == value.size()) refuse(Reason::malformed, "Authorization: unterminated quoted parameter");
        param += value[i];
      }
      ++i;
    } else {
      while (i < value.size() && value[i] != ',' && !is_space(value[i])) param += value[i++];
    }
    while (i < value.size() && is_space(value[i])) ++i;
    if (i < value.size() && value[i] != ',') refuse(Reason::malformed, "Authorization: ',' expected between parameters");
    if (iequals(name, "token")) {
      if (token) refuse(Reason::malformed, "Authorization: more than one token parameter");
      token = std::move(param);
    }
  }
  if (!token) refuse(Reason::malformed, "Authorization: PrivateToken without a token parameter");
  Bytes bytes;
  try {
    bytes = base64url_decode(*token);
  } catch (const Error& e) {
    refuse(Reason::malformed, str_cat("Authorization: the token is not padded base64url (", e.what(), ")"));
  }
  return Token::parse(bytes);
}

// ---- TokenWallet ----

namespace {

constexpr const char* kWallet = "token wallet";

std::vector<Token> read_wallet(int fd, const std::string& path) {
  // A base64url type 2 token is 472 characters and a newline.
  const std::string text = read_all(fd, TokenWallet::kMaxTokens * 480, path, kWallet);
  std::vector<Token> tokens;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    try {
      tokens.push_back(Token::parse(base64url_decode(line)));
    } catch (const Error& e) {
      fail(kWallet, " ", path, " line ", line_no, ": not a token (", e.what(), ")");
    }
  }
  return tokens;
}

void write_wallet(const std::string& path, const std::vector<Token>& tokens) {
  std::string text;
  text.reserve(tokens.size() * 474);
  for (const Token& t : tokens) text += base64url_encode(t.encode()) + "\n";
  replace_file(path, as_bytes(text), kWallet);
}

}  // namespace

TokenWallet::TokenWallet(std::string path) : path_(std::move(path)) {}

void TokenWallet::add(std::span<const Token> tokens) {
  for (const Token& t : tokens) t.encode();  // each well formed before anything is written
  const int fd = open_locked(path_, true, LOCK_EX, kWallet);
  FdCloser closer{fd};
  check_private_mode(fd, path_, kWallet);
  std::vector<Token> all = read_wallet(fd, path_);
  if (all.size() + tokens.size() > kMaxTokens)
    fail(kWallet, " ", path_, ": ", all.size(), " tokens and ", tokens.size(), " more would be over ", kMaxTokens);
  all.insert(all.end(), tokens.begin(), tokens.end());
  write_wallet(path_, all);
}

std::optional<Token> TokenWallet::take(std::optional<ByteView> challenge_digest) {
  const int fd = open_locked(path_, false, LOCK_EX, kWallet);
  if (fd < 0) return std::nullopt;
  FdCloser closer{fd};
  check_private_mode(fd, path_, kWallet);
  std::vector<Token> all = read_wallet(fd, path_);
  auto it = std::find_if(all.begin(), all.end(), [&](const Token& t) {
    return !challenge_digest ||
           std::equal(t.challenge_digest.begin(), t.challenge_digest.end(), challenge_digest->begin(), challenge_digest->end());
  });
  if (it == all.end()) return std::nullopt;
  Token token = std::move(*it);
  all.erase(it);
  write_wallet(path_, all);  // on disk without it before it is handed out
  return token;
}

size_t TokenWallet::count() const {
  const int fd = open_locked(path_, false, LOCK_SH, kWallet);
  if (fd < 0) return 0;
  FdCloser closer{fd};
  check_private_mode(fd, path_, kWallet);
  return read_wallet(fd, path_).size();
}

// ---- DoubleSpendStore ----

namespace {

constexpr const char* kStore = "double-spend store";
constexpr std::string_view kStoreMagic = "orchard spent nonces v1\n";
constexpr uint64_t kStoreHeaderSize = kStoreMagic.size() + kTokenKeyIdSize;

Bytes store_header(ByteView key_id) {
  Bytes header(as_bytes(kStoreMagic).begin(), as_bytes(kStoreMagic).end());
  put_bytes(header, key_id);
  return header;
}

void sync_folder(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string folder = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Holds the store's flock for one scope.
struct FlockGuard {
  int fd;
  ~FlockGuard() { ::flock(fd, LOCK_UN); }
};

}  // namespace

DoubleSpendStore::DoubleSpendStore(std::string path, ByteView token_key_id, size_t max_nonces)
    : path_(std::move(path)), key_id_(copy(token_key_id)), max_nonces_(max_nonces) {
  if (key_id_.size() != kTokenKeyIdSize) fail(kStore, " ", path_, ": token key id of ", key_id_.size(), " bytes");
  if (max_nonces_ == 0) fail(kStore, " ", path_, ": max_nonces must be at least 1");
  const Bytes header = store_header(key_id_);
  for (;;) {
    const int fd = open_locked(path_, true, LOCK_EX, kStore);
    FdCloser closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail(kStore, " ", path_, ": ", errno_text());
    if (static_cast<uint64_t>(st.st_size) < kStoreHeaderSize) {
      // New, or its creator died before the header was whole: nothing was ever spent in it.
      if (::ftruncate(fd, 0) != 0 || !write_all_at(fd, header, 0) || ::fsync(fd) != 0)
        fail(kStore, " ", path_, ": cannot be written: ", errno_text());
      sync_folder(path_);
    } else {
      Bytes have(kStoreHeaderSize);
      if (::pread(fd, have.data(), have.size(), 0) != static_cast<ssize_t>(have.size()))
        fail(kStore, " ", path_, ": read failed");
      if (!std::equal(kStoreMagic.begin(), kStoreMagic.end(), have.begin()))
        fail(kStore, " ", path_, ": not a double-spend store (no \"orchard spent nonces v1\" header)");
      if (have != header) {
        // Another issuer key's nonces: worthless to a node with this key (its tokens do not
        // verify here). A fresh file takes the path; whoever still holds the old one refuses.
        replace_file(path_, header, kStore);
        continue;
      }
    }
    fd_ = closer.fd;
    closer.fd = -1;
    break;
  }
  end_ = kStoreHeaderSize;
  try {
    sync_locked();
  } catch (...) {
    ::close(fd_);  // and so unlocked
    fd_ = -1;
    throw;
  }
  ::flock(fd_, LOCK_UN);
}

DoubleSpendStore::~DoubleSpendStore() {
  if (fd_ >= 0) ::close(fd_);
}

void DoubleSpendStore::sync_locked() {
  struct stat held {}, named {};
  if (::fstat(fd_, &held) != 0) refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": ", errno_text()));
  if (::stat(path_.c_str(), &named) != 0 || !same_file(held, named))
    refuse(Reason::unavailable, str_cat(kStore, " ", path_,
                                        ": replaced by a store for another issuer key; this key is retired here"));
  const uint64_t size = static_cast<uint64_t>(held.st_size);
  if (size < kStoreHeaderSize) refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": truncated below its header"));
  const uint64_t whole = kStoreHeaderSize + (size - kStoreHeaderSize) / kNonceSize * kNonceSize;
  // A torn last record: its writer died before fsync, so its spend was never accepted.
  if (whole < size && ::ftruncate(fd_, static_cast<off_t>(whole)) != 0)
    refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": cannot drop a torn record: ", errno_text()));
  if (whole > end_ && (whole - kStoreHeaderSize) / kNonceSize > max_nonces_)
    refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": holds ", (whole - kStoreHeaderSize) / kNonceSize,
                                        " nonces, over its limit of ", max_nonces_));
  std::vector<uint8_t> chunk;
  while (end_ < whole) {
    const uint64_t n = std::min<uint64_t>(whole - end_, 4096 * kNonceSize);
    chunk.resize(n);
    if (::pread(fd_, chunk.data(), n, static_cast<off_t>(end_)) != static_cast<ssize_t>(n))
      refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": read failed"));
    for (size_t off = 0; off < n; off += kNonceSize) {
      std::array<uint8_t, kNonceSize> nonce;
      std::copy_n(chunk.begin() + static_cast<std::ptrdiff_t>(off), kNonceSize, nonce.begin());
      spent_.insert(nonce);
    }
    end_ += n;
  }
}

bool DoubleSpendStore::spend(ByteView nonce) {
  if (nonce.size() != kNonceSize)
    refuse(Reason::malformed, str_cat("token nonce of ", nonce.size(), " bytes, expected ", kNonceSize));
  std::array<uint8_t, kNonceSize> key;
  std::copy(nonce.begin(), nonce.end(), key.begin());
  std::lock_guard<std::mutex> lock(mutex_);
  try {
    flock_retry(fd_, LOCK_EX, path_, kStore);
  } catch (const Error& e) {
    refuse(Reason::unavailable, e.what());
  }
  FlockGuard unlock{fd_};
  sync_locked();
  if (spent_.count(key)) return false;
  if (spent_.size() >= max_nonces_)
    refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": full (", max_nonces_,
                                        " nonces): rotate the issuer key to start a new one"));
  if (!write_all_at(fd_, nonce, end_) || ::fdatasync(fd_) != 0) {
    const std::string why = errno_text();
    if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0) {
      // Left for the next sync_locked to drop or read: either way the spend was not accepted.
    }
    refuse(Reason::unavailable, str_cat(kStore, " ", path_, ": cannot record a spend: ", why));
  }
  end_ += kNonceSize;
  spent_.insert(key);
  return true;
}

size_t DoubleSpendStore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return spent_.size();
}

// ---- TokenRedeemer ----

TokenRedeemer::TokenRedeemer(blind_rsa::PublicKey issuer_key, TokenChallenge challenge, DoubleSpendStore& store)
    : key_(std::move(issuer_key)), challenge_(std::move(challenge)), store_(&store) {
  check_key_size(key_, "token redeemer");
  if (challenge_.token_type != kTokenTypeBlindRsa)
    fail("token redeemer: the challenge is for token type ", challenge_.token_type, ", only type 2 is supported");
  spki_ = encode_public_key(key_);
  key_id_ = privacy_pass::token_key_id(spki_);
  challenge_digest_ = challenge_.digest();
  if (store.token_key_id() != key_id_)
    fail("token redeemer: the double-spend store belongs to another issuer key (", to_hex(store.token_key_id()), ")");
}

void TokenRedeemer::redeem(std::string_view authorization_header_value) const {
  const Token token = parse_authorization(authorization_header_value);
  if (token.challenge_digest != challenge_digest_)
    refuse(Reason::wrong_challenge, "token: made for another challenge (issuer name, redemption context or origin)");
  if (token.token_key_id != key_id_) refuse(Reason::unknown_key, "token: signed by another issuer key");
  if (!blind_rsa::verify(key_, token.token_input(), token.authenticator, kVariant))
    refuse(Reason::bad_signature, "token: the authenticator does not verify under the issuer key");
  if (!store_->spend(token.nonce)) refuse(Reason::double_spent, "token: already spent");
}

std::string TokenRedeemer::www_authenticate() const {
  return "PrivateToken challenge=\"" + base64url_encode(challenge_.encode()) + "\", token-key=\"" +
         base64url_encode(spki_) + "\"";
}

// ---- TokenIssuer ----

TokenIssuer::TokenIssuer(blind_rsa::PrivateKey key, size_t tokens_per_period, std::chrono::seconds period, Clock clock,
                         Transcript transcript)
    : key_(std::move(key)),
      tokens_per_period_(tokens_per_period),
      period_(period),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::system_clock::now(); })),
      transcript_(std::move(transcript)) {
  check_key_size(key_.public_key(), "token issuer");
  if (tokens_per_period_ == 0) fail("token issuer: the rate must be at least 1 token per period");
  if (period_.count() <= 0) fail("token issuer: the period must be at least 1 second");
  spki_ = encode_public_key(key_.public_key());
  key_id_ = privacy_pass::token_key_id(spki_);
}

TokenIssuer::~TokenIssuer() = default;

Bytes TokenIssuer::issue(std::string_view client_id, ByteView token_request) {
  const TokenRequest request = TokenRequest::parse(token_request);
  if (request.truncated_token_key_id != key_id_.back())
    refuse(Reason::unknown_key, str_cat("token request: truncated token key id ", int{request.truncated_token_key_id},
                                        " is not this issuer's (", int{key_id_.back()}, ")"));
  const auto now = clock_();
  const int64_t seconds = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t period = period_.count();
  const int64_t index = seconds >= 0 ? seconds / period : -((-seconds + period - 1) / period);
  const std::string client(client_id);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (usage_.size() > 4096)  // past periods' counts matter no more
      std::erase_if(usage_, [&](const auto& entry) { return entry.second.period_index != index; });
    Usage& u = usage_[client];
    if (u.period_index != index) u = Usage{index, 0};
    if (u.issued >= tokens_per_period_) {
      const std::chrono::seconds wait((index + 1) * period - seconds);
      throw RateLimited(str_cat("token issuer: ", tokens_per_period_, " tokens per ", period,
                                " s already issued to this client; the next period begins in ", wait.count(), " s"),
                        wait);
    }
    ++u.issued;
  }
  Bytes blind_sig;
  try {
    // blind_sign's own refusals, as the 400 they are: the length is TokenRequest::parse's.
    if (!below_modulus(request.blinded_msg, key_.public_key().modulus()))
      refuse(Reason::malformed, "blinded message is not below the issuer key's modulus");
    blind_sig = blind_rsa::blind_sign(key_, request.blinded_msg);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    Usage& u = usage_[client];
    if (u.period_index == index && u.issued > 0) --u.issued;  // a refused request costs nothing
    throw;
  }
  if (transcript_) {
    std::lock_guard<std::mutex> lock(transcript_mutex_);
    transcript_(IssuanceRecord{client, now, request.truncated_token_key_id, request.blinded_msg});
  }
  return TokenResponse{std::move(blind_sig)}.encode();
}

}  // namespace orchard::cloud::privacy_pass
