// Anonymous request tokens for the private cloud node: Privacy Pass (RFC 9576 architecture,
// RFC 9577 HTTP authentication scheme, RFC 9578 issuance), token type 2 only, publicly verifiable
// with RSABSSA-SHA384-PSS-Deterministic blind signatures (RFC 9474, blind_rsa.h).
//
// Why: a node must serve only clients that are entitled to it (a rate-limited account), yet must
// not be able to tell which account sent a request. The issuer knows the account and signs a
// token it cannot see (the client blinds it); the node sees the unblinded token, checks the
// issuer's signature and that the token was never spent before, and learns nothing else. Issuer
// and node together cannot join a redemption to its issuance: the issuer's view (TokenIssuer's
// transcript) holds blinded messages only, and a blinded message is a uniformly random number
// mod n whatever token it hides.
//
// The parts, each end in its own class:
//   client   make_token_request, finalize_token, TokenWallet, authorization_header
//   issuer   blind_rsa::PrivateKey in a key file (save_issuer_key, load_issuer_key), TokenIssuer
//   node     TokenRedeemer (checks a token), DoubleSpendStore (remembers spent nonces)
// Every malformed input throws: TokenError with its reason for what comes from a client or an
// issuer, orchard::Error for files and configuration. Error messages never quote a token or a key.
#pragma once
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cloud/blind_rsa.h"
#include "cloud/bytes.h"
#include "orchard/error.h"

namespace orchard::cloud::privacy_pass {

constexpr uint16_t kTokenTypeBlindRsa = 0x0002;  // RFC 9578 §8.2.2: Blind RSA (2048-bit)
constexpr size_t kNk = 256;                      // authenticator, blinded message and blind signature
constexpr size_t kModulusBits = 2048;            // type 2's Nk fixes the key size
constexpr size_t kNonceSize = 32;
constexpr size_t kDigestSize = 32;               // SHA-256 of the TokenChallenge
constexpr size_t kTokenKeyIdSize = 32;           // Nid: SHA-256 of the key's SPKI
constexpr size_t kRedemptionContextSize = 32;    // the only non-empty length RFC 9577 allows
constexpr size_t kTokenInputSize = 2 + kNonceSize + kDigestSize + kTokenKeyIdSize;
constexpr size_t kTokenSize = kTokenInputSize + kNk;
constexpr size_t kTokenRequestSize = 2 + 1 + kNk;
constexpr blind_rsa::Variant kVariant = blind_rsa::Variant::sha384_pss_deterministic;
inline constexpr std::string_view kTokenRequestMediaType = "application/private-token-request";
inline constexpr std::string_view kTokenResponseMediaType = "application/private-token-response";

// Why a token, a request or a response was refused.
class TokenError : public Error {
 public:
  enum class Reason {
    missing,          // no Authorization header, or not the PrivateToken scheme
    malformed,        // a header, token, request or response that does not parse
    wrong_type,       // a token type other than 2
    wrong_challenge,  // the token's challenge digest is not this node's challenge
    unknown_key,      // the token key id (or the request's truncated one) is not the issuer's
    bad_signature,    // the authenticator (or an issuer's blind signature) does not verify
    double_spent,     // the nonce was redeemed before
    unavailable,      // the double-spend store cannot record the spend: refused, not forgotten
  };
  TokenError(Reason reason, const std::string& message);
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};
std::string_view reason_name(TokenError::Reason reason);  // "missing", "malformed", ...

// The issuer refused a client over its per-period limit; retry_after is the wait until the next
// period begins.
class RateLimited : public Error {
 public:
  RateLimited(const std::string& message, std::chrono::seconds retry_after);
  std::chrono::seconds retry_after() const { return retry_after_; }

 private:
  std::chrono::seconds retry_after_;
};

// RFC 4648 §5 base64url with padding, which RFC 9577 requires in challenge=, token-key= and
// token=. Decoding is strict: padding present, unused bits zero, nothing outside the alphabet.
std::string base64url_encode(ByteView bytes);
Bytes base64url_decode(std::string_view text);

// RFC 9577 §2.1.
struct TokenChallenge {
  uint16_t token_type = kTokenTypeBlindRsa;
  std::string issuer_name;   // 1..65535 bytes
  Bytes redemption_context;  // empty or 32 bytes
  std::string origin_info;   // 0..65535 bytes
  bool operator==(const TokenChallenge&) const = default;

  Bytes encode() const;  // throws orchard::Error for a field out of its range
  // Exactly one challenge: no truncation, no trailing bytes, a context of 0 or 32 bytes and a
  // non-empty issuer name. Any token type parses; the caller decides which it supports.
  static TokenChallenge parse(ByteView bytes);
  Bytes digest() const;  // SHA-256(encode()), the token's challenge_digest
};

// The issuer key as RFC 9578 §6.5 encodes it: a DER SubjectPublicKeyInfo with the id-RSASSA-PSS
// algorithm (RFC 4055) and parameters SHA-384, MGF1 with SHA-384, salt length 48, the hash
// AlgorithmIdentifiers without parameters (RFC 5754), the trailer field left at its default.
// Written by hand: OpenSSL 3.0 writes the same key with NULL hash parameters, a different byte
// string and so a different token key id.
Bytes encode_public_key(const blind_rsa::PublicKey& key);
// Parsed by OpenSSL; refuses anything but the exact encoding encode_public_key writes (another
// algorithm, other PSS parameters, an explicit NULL or trailer field, trailing bytes), so a key
// has one token key id.
blind_rsa::PublicKey parse_public_key(ByteView spki);
// The issuer's public key file (`orchard tokens keygen`): one line, padded base64url of the SPKI.
// Returns the SPKI, checked by parse_public_key; throws orchard::Error naming the file.
Bytes load_public_key_file(const std::string& path);
Bytes token_key_id(ByteView spki);  // SHA-256 of the encoding, 32 bytes
Bytes token_key_id(const blind_rsa::PublicKey& key);

// The issuer's private key file (`orchard tokens keygen`): blind_rsa::PrivateKey::to_pem, PEM
// PKCS#8. save_issuer_key writes it with mode 0600, complete or not at all, and refuses to replace
// a file; load_issuer_key refuses a file readable by others than its owner or a key that is not
// 2048 bits. Errors name the file, never quote it.
void save_issuer_key(const blind_rsa::PrivateKey& key, const std::string& path);
blind_rsa::PrivateKey load_issuer_key(const std::string& path);

// RFC 9577 §2.2 / RFC 9578 §6.3. token_input() is what the authenticator signs.
struct Token {
  uint16_t token_type = kTokenTypeBlindRsa;
  Bytes nonce;             // 32
  Bytes challenge_digest;  // 32
  Bytes token_key_id;      // 32
  Bytes authenticator;     // kNk
  bool operator==(const Token&) const = default;

  Bytes token_input() const;
  Bytes encode() const;
  // TokenError(wrong_type) for another type, TokenError(malformed) unless exactly kTokenSize bytes.
  static Token parse(ByteView bytes);
};

// RFC 9578 §6.1 and §6.2.
struct TokenRequest {
  uint16_t token_type = kTokenTypeBlindRsa;
  uint8_t truncated_token_key_id = 0;  // the last byte of the token key id
  Bytes blinded_msg;                   // kNk
  Bytes encode() const;
  static TokenRequest parse(ByteView bytes);  // TokenError(wrong_type) or (malformed)
};
struct TokenResponse {
  Bytes blind_sig;  // kNk
  Bytes encode() const;
  static TokenResponse parse(ByteView bytes);  // TokenError(malformed) unless kNk bytes
};

// ---- Client ----

// What the client keeps between sending a TokenRequest and receiving its TokenResponse. inv links
// the response to the token: it never leaves the client.
struct PendingToken {
  Bytes nonce;
  Bytes challenge_digest;
  Bytes token_key_id;
  SecretBytes inv;
  Bytes token_input() const;
};
struct ClientTokenRequest {
  TokenRequest request;
  PendingToken pending;
};
// Fixed randomness for test vectors only: the nonce (32 bytes), the PSS salt (48) and the blind r.
struct TokenRequestFixed {
  ByteView nonce;
  ByteView salt;
  ByteView r;
};
// RFC 9578 §6.1: a fresh nonce, token_input = 0x0002 || nonce || SHA-256(challenge) || key id,
// blinded. Throws orchard::Error for a challenge of another type or a key that is not 2048 bits.
ClientTokenRequest make_token_request(const blind_rsa::PublicKey& issuer_key, const TokenChallenge& challenge,
                                      const TokenRequestFixed* fixed = nullptr);
// RFC 9578 §6.3: unblinds the issuer's TokenResponse into a Token, returned only if its
// authenticator verifies under issuer_key; TokenError(malformed) or (bad_signature) otherwise.
Token finalize_token(const blind_rsa::PublicKey& issuer_key, const PendingToken& pending, ByteView token_response);

// The Authorization header's value: PrivateToken token="<base64url(token)>". The value is quoted
// because padded base64url ends in '=', which an unquoted HTTP auth-param value cannot hold;
// TokenRedeemer reads it quoted or not.
std::string authorization_header(const Token& token);

// A file of finalized tokens, one base64url token per line, mode 0600 (refused when readable by
// others: a token is a bearer credential). Every change rewrites the whole file (AtomicFile) under
// an exclusive flock, so processes sharing it never take one token twice and a crash leaves the
// old file or the new one. A token is removed from the file before take() returns it: it may be
// lost by a crash, never used twice. At most kMaxTokens.
class TokenWallet {
 public:
  static constexpr size_t kMaxTokens = 20000;
  explicit TokenWallet(std::string path);
  void add(std::span<const Token> tokens);
  void add(const Token& token) { add(std::span<const Token>(&token, 1)); }
  // The oldest token (for the given challenge digest, when one is given), or nullopt.
  std::optional<Token> take(std::optional<ByteView> challenge_digest = std::nullopt);
  size_t count() const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- Node (or relay) ----

// The nonces of redeemed tokens, so that each token is accepted once. File-backed and shared by
// the processes of one host: a 56-byte header ("orchard spent nonces v1\n" and the 32-byte token
// key id) then one 32-byte record per spent nonce, appended under an exclusive flock and fsynced
// before spend() returns true, so a restart or another process sees it; each spend first reads
// what other processes appended. A torn last record (a crash mid-append, never acknowledged) is
// dropped. Each process opens its own DoubleSpendStore (after any fork: a flock belongs to the
// open file, which a forked child would share with its parent).
//
// Bounded: a nonce must be remembered only while a token carrying it can still verify, that is
// while its issuer key is in use. The store belongs to one token key id: opened with another key
// id, the file is replaced by an empty one for the new key (the old key's tokens no longer verify
// at a node that holds the new key), and a process still using the replaced file refuses every
// spend from then on. Within one key it holds at most max_nonces (32 bytes each on disk, about 80 in
// memory); a full store refuses (TokenError unavailable) rather than forget, so the issuer key must
// rotate before it issues more tokens than that: with the issuer's rate limit, clients x tokens
// per period x periods per key.
class DoubleSpendStore {
 public:
  static constexpr size_t kDefaultMaxNonces = size_t{1} << 20;
  // Throws orchard::Error when the file cannot be opened or created, is readable by others, is
  // not a store, or holds more than max_nonces.
  DoubleSpendStore(std::string path, ByteView token_key_id, size_t max_nonces = kDefaultMaxNonces);
  ~DoubleSpendStore();
  DoubleSpendStore(const DoubleSpendStore&) = delete;
  DoubleSpendStore& operator=(const DoubleSpendStore&) = delete;

  // True the first time a nonce is seen by any process sharing the file (it is then recorded and
  // on disk), false ever after. Throws TokenError(unavailable) when it cannot record (full, a
  // write error, the file replaced for another key), TokenError(malformed) for a nonce that is not
  // 32 bytes. Thread-safe.
  bool spend(ByteView nonce);
  size_t size() const;  // nonces known to this process (as of its last spend or open)
  const Bytes& token_key_id() const { return key_id_; }

 private:
  void sync_locked();  // reads records appended since the last read; caller holds the flock
  std::string path_;
  Bytes key_id_;
  size_t max_nonces_;
  int fd_ = -1;
  uint64_t end_ = 0;  // file offset up to which records have been read
  std::set<std::array<uint8_t, kNonceSize>> spent_;  // ordered: no hash a client could flood
  mutable std::mutex mutex_;
};

// Checks the tokens a node receives against its one challenge and its issuer's key.
class TokenRedeemer {
 public:
  // Throws orchard::Error unless the key is 2048 bits, the challenge is type 2 and the store
  // belongs to this key.
  TokenRedeemer(blind_rsa::PublicKey issuer_key, TokenChallenge challenge, DoubleSpendStore& store);
  // Accepts one Authorization header value (`PrivateToken token=...`, quoted or not, other
  // parameters ignored) or throws TokenError naming the first failed check, in this order:
  // missing, malformed, wrong_type, wrong_challenge, unknown_key, bad_signature, then the spend
  // (double_spent, unavailable). Nothing is recorded for a token that does not verify.
  void redeem(std::string_view authorization_header_value) const;
  // For the 401: PrivateToken challenge="<base64url>", token-key="<base64url>".
  std::string www_authenticate() const;
  const TokenChallenge& challenge() const { return challenge_; }
  const Bytes& token_key_id() const { return key_id_; }

 private:
  blind_rsa::PublicKey key_;
  TokenChallenge challenge_;
  Bytes spki_;
  Bytes key_id_;
  Bytes challenge_digest_;
  DoubleSpendStore* store_;
};

// The token from an Authorization header value, for a caller that checks tokens itself.
Token parse_authorization(std::string_view authorization_header_value);

// ---- Issuer ----

// What the issuer saw of one issuance: all it ever learns of a token.
struct IssuanceRecord {
  std::string client_id;
  std::chrono::system_clock::time_point time;
  uint8_t truncated_token_key_id = 0;
  Bytes blinded_msg;
};

// Signs TokenRequests for authenticated clients, at most tokens_per_period per client in each
// period (periods aligned to the Unix epoch: floor(time / period)). Thread-safe.
class TokenIssuer {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;
  using Transcript = std::function<void(const IssuanceRecord&)>;
  // clock defaults to the system clock; transcript, when set, is called (serialized) for each
  // token issued. Throws orchard::Error for a key that is not 2048 bits or a zero rate or period.
  // Signing is blind_rsa::blind_sign: OpenSSL's CRT for a key from generate or a key file.
  TokenIssuer(blind_rsa::PrivateKey key, size_t tokens_per_period, std::chrono::seconds period, Clock clock = {},
              Transcript transcript = {});
  ~TokenIssuer();

  // The TokenResponse for one TokenRequest. Throws TokenError (wrong_type, malformed,
  // unknown_key) for a request it must answer with 400, RateLimited when client_id has had its
  // tokens for this period. A refused request does not count against the limit.
  Bytes issue(std::string_view client_id, ByteView token_request);

  const blind_rsa::PublicKey& public_key() const { return key_.public_key(); }
  const Bytes& public_key_spki() const { return spki_; }
  const Bytes& token_key_id() const { return key_id_; }

 private:
  struct Usage {
    int64_t period_index = 0;
    size_t issued = 0;
  };
  blind_rsa::PrivateKey key_;
  Bytes spki_;
  Bytes key_id_;
  size_t tokens_per_period_;
  std::chrono::seconds period_;
  Clock clock_;
  Transcript transcript_;
  std::mutex mutex_;
  std::unordered_map<std::string, Usage> usage_;
  std::mutex transcript_mutex_;
};

}  // namespace orchard::cloud::privacy_pass
