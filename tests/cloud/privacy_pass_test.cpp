// Privacy Pass token type 2 (RFC 9577/9578 on RFC 9474): RFC 9578 Appendix A.2's first type 2
// vector byte for byte (key, SPKI, challenge, request, response, token); the issuer key's SPKI
// as OpenSSL reads it (OID, PSS parameters, n and e) and its id recomputed by OpenSSL's SHA-256;
// every wire format round-tripped and refused when truncated, extended or of another type;
// 10,000 issuance and redemption rounds (each token accepted once, every second try refused);
// refusals with their reasons; the issuer's per-client, per-period limit on a test clock;
// unlinkability (nothing of a redeemed token in the issuer's transcript); the double-spend store
// shared by two objects, two processes and a restart; the wallet never handing out a token twice.
#include "cloud/privacy_pass.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "cli/cli_test_support.h"
#include "cloud/crypto.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard::cloud::privacy_pass {
namespace {

using Reason = TokenError::Reason;
using namespace std::chrono_literals;

// ---- RFC 9578 Appendix A.2, type 2 test vector 1 ----
// skS as the PEM text its hex spells.
constexpr const char* kVectorSkS = R"(-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDLGu1rapX1sc4B
Okz8qyW5Sy5kojA05CUKfqtDwN86jBKZOvErERkI1LRxvsMdS2ya2c3akGEqLukD
Uj5t5aIk1rAvCeXDdNDP4B2PUpxQCnii9nkI+mgrWitDDIHq8a9y17XnlPyYoxOS
doeXV85FO1Ju+b9s65mXm4QjuQ9EYaIq83qrDPVzP3WXq+RNMccy22ihgcbLvmB9
jA5S4GVf2ZltxYTsoL6Hr7zXijN9F7Hbqegou9geKRMXFE5/+J9VYZcJsJbLuepH
TOrSZMIHP+SXQMAfAOEJEGBmmD0h5fg/CG4ugjyHnNQ873ANKjUqm6vWEtA8rQLb
E0t+IlpfAgMBAAECggEALzCbdzi1jPd58MkV+CLfyfSQ2+rfHnrfrFeP/VcDxrui
2p1aSXJYibe6ES+Mb/MFUdlHPgALw1xQ4Werf6c6DCshllxLWSV8GsBsvc8o6GP2
cY6owpBDwcbahGKUkP0Ekb9S0XLJWcGSG5aUnHJXR7inx4cZlfoLnrEQe6hUxsMq
b0dHxdHDBMdGfVWwgKojOjpS/98mEUy7VB/6a2lreglvjc/2nKCKtY77D7dTqlGF
xzABaWu86MCZ4/Q13Lv+BefbqtI9sqZZwjrdUhQH8VCxry2QVMQWQinWhAt6MqT4
SBSTrolZzwrqje8MPJ91uaNMdXGLcHLI26sXzv7KSQKBgQDvcwsPUUvA9Z2ZX9X5
mIxMTBNdEFzVbUPuKKA1yWn1UMDNcUjqh+ze/7k3yFxkh0QF31bq60eL90GISiAO
5KOWM9EKo+xAQ2baK1MfOY1G+8jzBXUpBs94k53S88yXmK6nydgv70BJ8Zh5fkUq
W20oSbhkhjRdSzH2kRGirg+USwKBgQDZJMnry2Exa/3Eq7PbosxAPMiYnk5JAPSG
y2z0Z7TUb+uHQO/+xPM7nC0uyLIMD9laTMHwn6s7/LbGoEP1WRgpoYH/B14k/Rn6
fuwRN62Io9tc9+ACLtUB7vtGay3+gRwYtSC2b5ed8lIiegtTkea0h0uDSRxAtVs3
n5kya2Q9vQKBgFJuFzOZt+tgYnWnQUEgW8P0OIJEHME4UTdOcwCxKrHRr93JjuF2
E3wdKoTii7PrwOYIoaJThpjPcJbbdbfKy+nsQp1YGv9wdJrMaVwJcvIpwV6v1Upf
VtLadm1lklvpqs6GNM8jnM0Xx3ajmmnfeW9yGXE5phMrzLJl9F09cI2LAoGBANXv
ugVXrp2bsT1okd6uSaBsgpJjPewNRd3cZK9z0aSP1DTA1PNkpeQwHg/+6fSaVOHz
yAxDs9h5RrbxRaNfsT+rAUH7x1SYDVVQYVMhURbToZe6G/jqnTC3fNfHV1xtZfot
0loMHgwep6+SIMCoee2ZctuZV32lcIaf9rbHOc7dAoGAeQ8k8SILNG6DOA31TE5P
m01AJIYw7AlR3uo/RNaC+xYdPU3TskuALxxiDR/WsLEQBCjkFWmmJAWnQUDtbnYN
ScwR8G2J6FnrECtbtys73WAVGooFZncmPLP8lxLyblSBDELyaZv/bAsPlMO9bD5c
J+NSBaa+oiLl1wmCa5MCflc=
-----END PRIVATE KEY-----
)";
constexpr const char* kVectorPkS =
    "30820152303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d0101"
    "08300b0609608648016503040202a2030201300382010f003082010a0282010100cb1aed6b6a95f5b1ce013a4cfcab25"
    "b94b2e64a23034e4250a7eab43c0df3a8c12993af12b111908d4b471bec31d4b6c9ad9cdda90612a2ee903523e6de5a2"
    "24d6b02f09e5c374d0cfe01d8f529c500a78a2f67908fa682b5a2b430c81eaf1af72d7b5e794fc98a3139276879757ce"
    "453b526ef9bf6ceb99979b8423b90f4461a22af37aab0cf5733f7597abe44d31c732db68a181c6cbbe607d8c0e52e065"
    "5fd9996dc584eca0be87afbcd78a337d17b1dba9e828bbd81e291317144e7ff89f55619709b096cbb9ea474cead264c2"
    "073fe49740c01f00e109106066983d21e5f83f086e2e823c879cd43cef700d2a352a9babd612d03cad02db134b7e225a"
    "5f0203010001";
constexpr const char* kVectorChallenge =
    "0002000e6973737565722e6578616d706c65208e7acc900e393381e8810b7c9e4a68b5163f1f880ab6688a6ffe780923"
    "609e88000e6f726967696e2e6578616d706c65";
constexpr const char* kVectorNonce = "aa72019d1f951df197021ce63876fe8b0a02dc1c31a12b0a2dd1508d07827f05";
constexpr const char* kVectorBlind =
    "425421de54c7381864ce36473abfb988c454fe6c27de863de702a6a2adca153fa2de47bd8fcd62734caa8ce1f920b77d"
    "980ab58c32d16dde54873f28ca968e8c125b8363514be68972f553655bcc7f80a284cc327e47e804a47333c5b3cdf773"
    "312cc7ad9fda748aed0baa7e19c5a2d1dafda718f086d7fc0a4bc02d488e0f20812daee335af7177b7a8369bd617066a"
    "ed7a58f659f295c36b418827f679725b81ca14ea16fb82df21ad76da1ac38dcf24bf6252f8510e2308608ac9197f6cb5"
    "4fdcb19db17837302a2b87d659c5605f35f3709a130f0c3d50e172f0cae36cbc9467f9914895a215a9e32443bcafff79"
    "5273ccf8965a7eaa8c0b2184763e3e5c";
constexpr const char* kVectorSalt =
    "3d980852fa570c064204feb8d107098db976ef8c2137e8641d234bbd88a986fdb306a7af220cfadede08f51e1ef61766";
constexpr const char* kVectorTokenRequest =
    "0002086a95be84b63cfed0993bb579194a72a95057e1548ac463a9a5b33b011f2b2011d59487f01862f1d8e4d5ea42e7"
    "3a660fbc3d010b944a54da3a4e0942f8894c0884589b438cb902e9a34278970f33c16f351f7dae58d273c3ab66ef368d"
    "a36f785e89e24d1d983d5c34311cd21f290f9e89e8646ab0d0a48988fcd46230de5e7603cd12cc95c7ec5002e5e26737"
    "aa7eb69c626476e6c8d46510ee404a3d7daf3a23b7c66735d363ca13676925c6ed0117f60d165ce1f8ba616d041b6384"
    "baf6da3e2f757cb18e879a4f8595c2dc895ddf1f4279c75768d108b5c47f95f94e81e2d8b9c8b74476924ab3b7c45243"
    "fc99ac5466e8a3680ad37fa15c96010b274094";
constexpr const char* kVectorTokenResponse =
    "675d84b751d9e593330ec4b6d7ab69c9a61517e98971f4b736150508174b4335761464f237be2d72bbae4b94dffc6143"
    "413f6351f1aa4efde6c32d4d6d9392a008290d56d1222f9b77a1336213e01934f7d972f3bf9ea5a5786c321352f103b3"
    "667e605379a55f0fb925fbb09b8a9f85e7dd4b388a3b49d06fd70ba28f6a780e3bc8f6421554fd6c38b63ef19f84ccfc"
    "f14709dd0b4d72213c1f060893854eba0ea1a147e275da320db5e9849882d5f9179efa8a2d8d3b803f9d1445ef5c1f66"
    "0be08883ce9b29a0a992fc035d2938cbb61c440044438dbb8b3ce7158a8f9827d230482f622d291406ab236b32b12262"
    "7ae0fd36bd0d6b7607b8044ace404d44";
constexpr const char* kVectorToken =
    "0002aa72019d1f951df197021ce63876fe8b0a02dc1c31a12b0a2dd1508d07827f055969f643b4cfda5196d4aa86aeb5"
    "368834f4f06de46950ed435b3b81bd036d44ca572f8982a9ca248a3056186322d93ca147266121ddeb5632c07f1f71cd"
    "2708bc6a21b533d07294b5e900faf5537dd3eb33cee4e08c9670d1e5358fd184b0e00c637174f5206b14c7bb0e724ebf"
    "6b56271e5aa2ed94c051c4a433d302b23bc52460810d489fb050f9de5c868c6c1b06e3849fd087629f704cc724bc0d09"
    "84d5c339686fcdd75f9a9cdd25f37f855f6f4c584d84f716864f546b696d620c5bd41a811498de84ff9740ba3003ba24"
    "22d26b91eb745c084758974642a42078201543246ddb58030ea8e722376aa82484dca9610a8fb7e018e396165462e17a"
    "03e40ea7e128c090a911ecc708066cb201833010c1ebd4e910fc8e27a1be467f78671836a508257123a45e4e0ae2180a"
    "434bd1037713466347a8ebe46439d3da1970";

// One fresh issuer key for the tests that need one: generating it is the slow part.
const blind_rsa::PrivateKey& fresh_key() {
  static const blind_rsa::PrivateKey key = blind_rsa::PrivateKey::generate(kModulusBits);
  return key;
}
const blind_rsa::PrivateKey& other_key() {
  static const blind_rsa::PrivateKey key = blind_rsa::PrivateKey::generate(kModulusBits);
  return key;
}

// The same key as n, e and d alone (no CRT factors), d read from its PEM by OpenSSL.
blind_rsa::PrivateKey d_only(const blind_rsa::PrivateKey& key) {
  const SecretBytes pem = key.to_pem();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EXPECT_NE(pkey, nullptr);
  BIGNUM* d = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_D, &d), 1);
  EVP_PKEY_free(pkey);
  Bytes d_bytes(static_cast<size_t>(BN_num_bytes(d)));
  BN_bn2bin(d, d_bytes.data());
  BN_clear_free(d);
  blind_rsa::PrivateKey out =
      blind_rsa::PrivateKey::from_components(key.public_key().modulus(), key.public_key().exponent(), d_bytes);
  EXPECT_FALSE(out.has_crt_factors());
  return out;
}

TokenChallenge node_challenge() {
  TokenChallenge c;
  c.issuer_name = "issuer.orchard.test";
  c.origin_info = "node.orchard.test";
  return c;
}

// Runs f, which must throw TokenError with `reason` and a message holding `needle`.
void expect_refused(const std::function<void()>& f, Reason reason, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "not refused; expected " << reason_name(reason);
  } catch (const TokenError& e) {
    EXPECT_EQ(reason_name(e.reason()), reason_name(reason)) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// A token of the right shape whose contents are random: for the formats and the wallet.
Token random_token() {
  Token t;
  t.nonce = random_bytes(kNonceSize);
  t.challenge_digest = random_bytes(kDigestSize);
  t.token_key_id = random_bytes(kTokenKeyIdSize);
  t.authenticator = random_bytes(kNk);
  return t;
}

// A real token: requested, issued by `issuer` (any client id), finalized.
Token issue_token(TokenIssuer& issuer, const TokenChallenge& challenge, const std::string& client = "alice") {
  ClientTokenRequest req = make_token_request(issuer.public_key(), challenge);
  const Bytes response = issuer.issue(client, req.request.encode());
  return finalize_token(issuer.public_key(), req.pending, response);
}

// Sets of byte strings as std::string keys (GCC 12 warns falsely on std::set<std::vector<uint8_t>>).
std::string key_of(ByteView b) { return std::string(as_text(b)); }
std::set<std::string> set_of(const std::vector<Bytes>& v) {
  std::set<std::string> out;
  for (const Bytes& b : v) out.insert(key_of(b));
  return out;
}

bool contains(const Bytes& haystack, const Bytes& needle) {
  return std::search(haystack.begin(), haystack.end(), std::boyer_moore_horspool_searcher(needle.begin(), needle.end())) !=
         haystack.end();
}

Bytes openssl_sha256(ByteView data) {
  Bytes out(32);
  unsigned int n = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr), 1);
  return out;
}

// ---- The RFC's vector ----

TEST(PrivacyPass, Rfc9578TypeTwoVector) {
  const blind_rsa::PrivateKey key = blind_rsa::PrivateKey::from_pem(kVectorSkS);
  EXPECT_TRUE(key.has_crt_factors());
  const Bytes pks = from_hex(kVectorPkS);
  EXPECT_EQ(to_hex(encode_public_key(key.public_key())), kVectorPkS);
  const Bytes key_id = token_key_id(pks);
  EXPECT_EQ(key_id, openssl_sha256(pks));
  EXPECT_EQ(token_key_id(key.public_key()), key_id);
  const blind_rsa::PublicKey parsed = parse_public_key(pks);
  EXPECT_EQ(parsed.modulus(), key.public_key().modulus());

  const Bytes challenge_bytes = from_hex(kVectorChallenge);
  const TokenChallenge challenge = TokenChallenge::parse(challenge_bytes);
  EXPECT_EQ(challenge.token_type, 2);
  EXPECT_EQ(challenge.issuer_name, "issuer.example");
  EXPECT_EQ(challenge.redemption_context.size(), 32u);
  EXPECT_EQ(challenge.origin_info, "origin.example");
  EXPECT_EQ(challenge.encode(), challenge_bytes);

  // The client's request with the vector's nonce, salt and blind.
  const Bytes nonce = from_hex(kVectorNonce), salt = from_hex(kVectorSalt), blind = from_hex(kVectorBlind);
  const TokenRequestFixed fixed{nonce, salt, blind};
  ClientTokenRequest req = make_token_request(parsed, challenge, &fixed);
  EXPECT_EQ(to_hex(req.request.encode()), kVectorTokenRequest);
  EXPECT_EQ(req.request.truncated_token_key_id, key_id.back());
  EXPECT_EQ(TokenRequest::parse(from_hex(kVectorTokenRequest)).encode(), from_hex(kVectorTokenRequest));

  // The issuer's response, by OpenSSL's CRT and by its exponentiation by d alone.
  const Bytes response = blind_rsa::blind_sign(key, req.request.blinded_msg);
  EXPECT_EQ(to_hex(response), kVectorTokenResponse);
  EXPECT_EQ(to_hex(blind_rsa::blind_sign(d_only(key), req.request.blinded_msg)), kVectorTokenResponse);
  TokenIssuer issuer(blind_rsa::PrivateKey::from_pem(kVectorSkS), 1, 3600s);
  EXPECT_EQ(to_hex(issuer.issue("vector", from_hex(kVectorTokenRequest))), kVectorTokenResponse);

  const Token token = finalize_token(parsed, req.pending, from_hex(kVectorTokenResponse));
  EXPECT_EQ(to_hex(token.encode()), kVectorToken);
  EXPECT_EQ(Token::parse(from_hex(kVectorToken)), token);
  EXPECT_EQ(token.challenge_digest, openssl_sha256(challenge_bytes));

  // And a node with this challenge and key takes it once.
  test::TempDir dir;
  DoubleSpendStore store(dir.file("spent"), key_id);
  TokenRedeemer redeemer(parsed, challenge, store);
  redeemer.redeem(authorization_header(token));
  expect_refused([&] { redeemer.redeem(authorization_header(token)); }, Reason::double_spent, "already spent");
}

// ---- The issuer key's encoding, as OpenSSL reads it ----

TEST(PrivacyPass, PublicKeyEncodingReadByOpenSsl) {
  const blind_rsa::PublicKey& key = fresh_key().public_key();
  const Bytes spki = encode_public_key(key);
  const unsigned char* p = spki.data();
  EVP_PKEY* raw = d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size()));
  ASSERT_NE(raw, nullptr);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  EXPECT_EQ(p, spki.data() + spki.size());
  EXPECT_TRUE(EVP_PKEY_is_a(pkey.get(), "RSA-PSS"));  // OID 1.2.840.113549.1.1.10
  char text[64];
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_RSA_DIGEST, text, sizeof text, &len), 1);
  EXPECT_EQ(std::string(text, len), "SHA2-384");
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, text, sizeof text, &len), 1);
  EXPECT_EQ(std::string(text, len), "SHA2-384");
  int salt = 0;
  ASSERT_EQ(EVP_PKEY_get_int_param(pkey.get(), OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &salt), 1);
  EXPECT_EQ(salt, 48);
  BIGNUM* n = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N, &n), 1);
  Bytes n_bytes(static_cast<size_t>(BN_num_bytes(n)));
  BN_bn2bin(n, n_bytes.data());
  BN_free(n);
  EXPECT_EQ(n_bytes, key.modulus());
  EXPECT_EQ(EVP_PKEY_get_bits(pkey.get()), 2048);
  // The id is SHA-256 of exactly these bytes; the DER's first bytes are the RFC's fixed prefix.
  EXPECT_EQ(token_key_id(key), openssl_sha256(spki));
  EXPECT_EQ(to_hex(ByteView(spki).first(71)), std::string(kVectorPkS).substr(0, 142));
  EXPECT_EQ(spki.size(), 342u);
  EXPECT_EQ(parse_public_key(spki).modulus(), key.modulus());

  // OpenSSL's own encoding of the same key writes NULL hash parameters: another byte string,
  // another id, refused.
  unsigned char* der = nullptr;
  const int der_size = i2d_PUBKEY(pkey.get(), &der);
  ASSERT_GT(der_size, 0);
  const Bytes openssl_der(der, der + der_size);
  OPENSSL_free(der);
  EXPECT_NE(openssl_der, spki);
  expect_error([&] { parse_public_key(openssl_der); }, "not the RFC 9578 encoding");

  // A plain rsaEncryption key, a PSS key for SHA-256, trailing bytes, every truncation.
  der = nullptr;
  {
    // The same n and e as an RSA (rsaEncryption) key, via a PEM round trip of the issuer key.
    const SecretBytes pem = fresh_key().to_pem();
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    EVP_PKEY* rsa = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    ASSERT_NE(rsa, nullptr);
    const int size = i2d_PUBKEY(rsa, &der);
    EVP_PKEY_free(rsa);
    ASSERT_GT(size, 0);
    const Bytes rsa_der(der, der + size);
    OPENSSL_free(der);
    expect_error([&] { parse_public_key(rsa_der); }, "not RSASSA-PSS");
  }
  Bytes sha256_params = spki;  // both hash OIDs' last byte: SHA-384 (2) becomes SHA-256 (1)
  ASSERT_EQ(sha256_params[33], 0x02);
  ASSERT_EQ(sha256_params[61], 0x02);
  sha256_params[33] = 0x01;
  sha256_params[61] = 0x01;
  expect_error([&] { parse_public_key(sha256_params); }, "parameters are not SHA-384");
  Bytes longer = spki;
  longer.push_back(0);
  expect_error([&] { parse_public_key(longer); }, "after the SubjectPublicKeyInfo");
  for (size_t size = 0; size < spki.size(); ++size)
    EXPECT_THROW(parse_public_key(ByteView(spki).first(size)), Error) << size;
}

// ---- Wire formats ----

TEST(PrivacyPass, Base64url) {
  // RFC 4648 §10's vectors, and bytes that use the two characters base64url changes.
  EXPECT_EQ(base64url_encode(as_bytes("")), "");
  EXPECT_EQ(base64url_encode(as_bytes("f")), "Zg==");
  EXPECT_EQ(base64url_encode(as_bytes("fo")), "Zm8=");
  EXPECT_EQ(base64url_encode(as_bytes("foobar")), "Zm9vYmFy");
  const Bytes high{0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url_encode(high), "-_-_");
  EXPECT_EQ(base64url_decode("-_-_"), high);
  EXPECT_EQ(base64url_decode("Zm8="), Bytes({'f', 'o'}));
  EXPECT_THROW(base64url_decode("+/+/"), Error);
  EXPECT_THROW(base64url_decode("Zm8"), Error);   // padding is required
  EXPECT_THROW(base64url_decode("Zm9="), Error);  // unused bits set
  EXPECT_THROW(base64url_decode("Zm 8="), Error);
}

TEST(PrivacyPass, ChallengeRoundTripAndRefusals) {
  TokenChallenge c = node_challenge();
  c.redemption_context = random_bytes(32);
  const Bytes bytes = c.encode();
  // 2 + (2 + 19) + (1 + 32) + (2 + 17), laid out by hand.
  ASSERT_EQ(bytes.size(), 75u);
  EXPECT_EQ(bytes[0], 0x00);
  EXPECT_EQ(bytes[1], 0x02);
  EXPECT_EQ(bytes[3], 19);
  EXPECT_EQ(bytes[2 + 2 + 19], 32);
  EXPECT_EQ(TokenChallenge::parse(bytes), c);
  EXPECT_EQ(c.digest(), openssl_sha256(bytes));
  const TokenChallenge empty_context = node_challenge();
  EXPECT_EQ(TokenChallenge::parse(empty_context.encode()), empty_context);

  for (size_t size = 0; size < bytes.size(); ++size)
    expect_refused([&] { TokenChallenge::parse(ByteView(bytes).first(size)); }, Reason::malformed, "token challenge");
  Bytes longer = bytes;
  longer.push_back(0);
  expect_refused([&] { TokenChallenge::parse(longer); }, Reason::malformed, "1 bytes after its end");
  // A context of 5 bytes, an empty issuer name.
  Bytes odd_context{0x00, 0x02, 0x00, 0x01, 'i', 0x05, 1, 2, 3, 4, 5, 0x00, 0x00};
  expect_refused([&] { TokenChallenge::parse(odd_context); }, Reason::malformed, "redemption context of 5 bytes");
  Bytes no_issuer{0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00};
  expect_refused([&] { TokenChallenge::parse(no_issuer); }, Reason::malformed, "empty issuer name");
  TokenChallenge bad = node_challenge();
  bad.redemption_context = Bytes(31);
  expect_error([&] { bad.encode(); }, "redemption context of 31 bytes");
  bad = node_challenge();
  bad.issuer_name.clear();
  expect_error([&] { bad.encode(); }, "issuer name of 0 bytes");
}

TEST(PrivacyPass, TokenRequestResponseEncodings) {
  const Token token = random_token();
  const Bytes bytes = token.encode();
  ASSERT_EQ(bytes.size(), 354u);
  EXPECT_EQ(Bytes(bytes.begin(), bytes.begin() + 98), token.token_input());
  EXPECT_EQ(Token::parse(bytes), token);
  for (size_t size = 0; size < bytes.size(); ++size)
    expect_refused([&] { Token::parse(ByteView(bytes).first(size)); }, Reason::malformed, "token");
  Bytes longer = bytes;
  longer.push_back(7);
  expect_refused([&] { Token::parse(longer); }, Reason::malformed, "355 bytes");
  Bytes type1 = bytes;
  type1[1] = 0x01;
  expect_refused([&] { Token::parse(type1); }, Reason::wrong_type, "token type 1 is not 2");

  TokenRequest request;
  request.truncated_token_key_id = 0x5a;
  request.blinded_msg = random_bytes(kNk);
  const Bytes req = request.encode();
  ASSERT_EQ(req.size(), 259u);
  EXPECT_EQ(req[2], 0x5a);
  const TokenRequest back = TokenRequest::parse(req);
  EXPECT_EQ(back.blinded_msg, request.blinded_msg);
  EXPECT_EQ(back.truncated_token_key_id, 0x5a);
  for (size_t size = 0; size < req.size(); ++size)
    expect_refused([&] { TokenRequest::parse(ByteView(req).first(size)); }, Reason::malformed, "token request");
  Bytes req_longer = req;
  req_longer.push_back(0);
  expect_refused([&] { TokenRequest::parse(req_longer); }, Reason::malformed, "260 bytes");
  Bytes req_type = req;
  req_type[0] = 0xf9;
  expect_refused([&] { TokenRequest::parse(req_type); }, Reason::wrong_type, "not 2");

  const Bytes sig = random_bytes(kNk);
  EXPECT_EQ(TokenResponse::parse(sig).blind_sig, sig);
  EXPECT_EQ(TokenResponse{sig}.encode(), sig);
  expect_refused([&] { TokenResponse::parse(ByteView(sig).first(255)); }, Reason::malformed, "255 bytes");
  Bytes sig_longer = sig;
  sig_longer.push_back(0);
  expect_refused([&] { TokenResponse::parse(sig_longer); }, Reason::malformed, "257 bytes");
}

TEST(PrivacyPass, AuthorizationHeader) {
  const Token token = random_token();
  const std::string b64 = base64url_encode(token.encode());
  EXPECT_EQ(authorization_header(token), "PrivateToken token=\"" + b64 + "\"");
  EXPECT_EQ(parse_authorization(authorization_header(token)), token);
  EXPECT_EQ(parse_authorization("PrivateToken token=" + b64), token);
  EXPECT_EQ(parse_authorization("  privatetoken   realm=\"x, y\",TOKEN = " + b64 + " , other=1  "), token);
  expect_refused([&] { parse_authorization(""); }, Reason::missing, "no Authorization header");
  expect_refused([&] { parse_authorization("Bearer abc"); }, Reason::missing, "not of the PrivateToken scheme");
  expect_refused([&] { parse_authorization("PrivateToken"); }, Reason::malformed, "without a token parameter");
  expect_refused([&] { parse_authorization("PrivateToken token=\"" + b64); }, Reason::malformed, "unterminated");
  expect_refused([&] { parse_authorization("PrivateToken token=" + b64 + ", token=" + b64); }, Reason::malformed,
                 "more than one token");
  expect_refused([&] { parse_authorization("PrivateToken token=" + b64.substr(0, 101)); }, Reason::malformed,
                 "not padded base64url");
  expect_refused([&] { parse_authorization("PrivateToken token=" + std::string(9000, 'A')); }, Reason::malformed,
                 "over 8192");
  Bytes type1 = token.encode();
  type1[1] = 1;
  expect_refused([&] { parse_authorization("PrivateToken token=" + base64url_encode(type1)); }, Reason::wrong_type,
                 "token type 1");
}

// ---- The issuer key ----

TEST(PrivacyPass, KeyFileAndSigning) {
  test::TempDir dir;
  const blind_rsa::PrivateKey& key = fresh_key();
  const std::string path = dir.file("issuer.pem");
  save_issuer_key(key, path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string pem = test::read_text(path);
  EXPECT_EQ(pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u);  // PKCS#8, unencrypted
  const blind_rsa::PrivateKey loaded = load_issuer_key(path);
  EXPECT_EQ(loaded.public_key().modulus(), key.public_key().modulus());
  EXPECT_TRUE(loaded.has_crt_factors());
  expect_error([&] { save_issuer_key(key, path); }, "cannot be created");  // never replaces a key
  ::chmod(path.c_str(), 0644);
  expect_error([&] { load_issuer_key(path); }, "readable by others");
  // A broken key file: the error names the file, never its text.
  const std::string broken = dir.write("broken.pem", pem.substr(0, 400));
  ::chmod(broken.c_str(), 0600);
  try {
    load_issuer_key(broken);
    ADD_FAILURE() << "a truncated key loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.pem"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find(pem.substr(40, 20)), std::string::npos) << e.what();
  }
  // Other sizes and algorithms are not type 2 keys.
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr),
                                                                 EVP_PKEY_CTX_free);
  EVP_PKEY* big = nullptr;
  ASSERT_EQ(EVP_PKEY_keygen_init(ctx.get()), 1);
  ASSERT_GT(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 3072), 0);
  ASSERT_EQ(EVP_PKEY_generate(ctx.get(), &big), 1);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, big, nullptr, nullptr, 0, nullptr, nullptr);
  EVP_PKEY_free(big);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  const std::string big_pem(data, static_cast<size_t>(size));
  BIO_free(bio);
  const std::string big_path = dir.write("big.pem", big_pem);
  ::chmod(big_path.c_str(), 0600);
  expect_error([&] { load_issuer_key(big_path); }, "has 3072 bits");
  expect_error([&] { blind_rsa::PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"); },
               "not an unencrypted PEM private key");

  // OpenSSL's CRT signing agrees with its exponentiation by d alone, on random blinded values.
  const blind_rsa::PrivateKey by_d = d_only(key);
  for (int i = 0; i < 5; ++i) {
    Bytes m = random_bytes(kNk);
    m[0] &= 0x7f;  // below n, whose top bit is set
    EXPECT_EQ(blind_rsa::blind_sign(key, m), blind_rsa::blind_sign(by_d, m));
  }
  const Bytes n = key.public_key().modulus();
  expect_error([&] { blind_rsa::blind_sign(key, n); }, "not below");
  expect_error([&] { blind_rsa::blind_sign(key, ByteView(n).first(255)); }, "255 bytes");
}

// ---- Issuance and redemption ----

TEST(PrivacyPass, TenThousandRounds) {
  constexpr int kRounds = 10000;
  constexpr int kThreads = 2;
  constexpr int kClients = 10;
  test::TempDir dir;
  const TokenChallenge challenge = node_challenge();
  const blind_rsa::PublicKey pub = fresh_key().public_key();
  std::vector<IssuanceRecord> transcript;  // the hook's calls are serialized by the issuer
  TokenIssuer issuer(blind_rsa::PrivateKey::from_pem(as_text(fresh_key().to_pem().view())), kRounds / kClients, 3600s, {},
                     [&](const IssuanceRecord& r) { transcript.push_back(r); });
  DoubleSpendStore store(dir.file("spent"), issuer.token_key_id());
  const TokenRedeemer redeemer(pub, challenge, store);

  std::atomic<int> accepted{0}, refused_again{0}, failures{0};
  std::vector<Bytes> nonces(kRounds);
  std::vector<Token> tokens(kRounds);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kRounds; i += kThreads) {
        try {
          const Token token = issue_token(issuer, challenge, "client-" + std::to_string(i % kClients));
          nonces[i] = token.nonce;
          tokens[i] = token;
          const std::string header = authorization_header(token);
          redeemer.redeem(header);
          ++accepted;
          try {
            redeemer.redeem(header);
          } catch (const TokenError& e) {
            if (e.reason() == Reason::double_spent) ++refused_again;
          }
        } catch (const std::exception& e) {
          if (failures++ < 3) ADD_FAILURE() << "round " << i << ": " << e.what();
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ timing   ] %d issuance+redemption rounds (2048-bit key, %d threads, store fsynced per spend): "
              "%.1f s, %.2f ms per round\n",
              kRounds, kThreads, seconds, seconds * 1000 / kRounds);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(accepted.load(), kRounds);
  EXPECT_EQ(refused_again.load(), kRounds);
  EXPECT_EQ(transcript.size(), static_cast<size_t>(kRounds));
  EXPECT_EQ(store.size(), static_cast<size_t>(kRounds));
  EXPECT_EQ(set_of(nonces).size(), static_cast<size_t>(kRounds));
  // Every client used its whole allowance: one more is over the limit.
  EXPECT_THROW(issue_token(issuer, challenge, "client-0"), RateLimited);
  // The file holds each spent nonce once: the header and 32 bytes per token.
  EXPECT_EQ(test::read_bytes(dir.file("spent")).size(), 56u + 32u * kRounds);

  // Unlinkable: no redeemed token's nonce, token input or authenticator is anywhere in the
  // issuer's view. Any occurrence of one would put its first 32 bytes (and the authenticator's
  // last 32) at some offset of the view, so every 32-byte window of it is looked up among those.
  Bytes view;
  for (const IssuanceRecord& r : transcript) {
    put_bytes(view, as_bytes(r.client_id));
    const int64_t t = r.time.time_since_epoch().count();
    for (int b = 0; b < 8; ++b) view.push_back(static_cast<uint8_t>(t >> (8 * b)));
    view.push_back(r.truncated_token_key_id);
    put_bytes(view, r.blinded_msg);
  }
  std::multimap<uint64_t, Bytes> needles;  // by their first 8 bytes
  auto add_needle = [&](ByteView b) {
    uint64_t k = 0;
    std::memcpy(&k, b.data(), 8);
    needles.emplace(k, Bytes(b.begin(), b.begin() + 32));
  };
  for (const Token& t : tokens) {
    add_needle(t.nonce);
    add_needle(t.token_input());
    add_needle(t.authenticator);
    add_needle(ByteView(t.authenticator).last(32));
  }
  auto occurrences = [&] {
    size_t found = 0;
    for (size_t at = 0; at + 32 <= view.size(); ++at) {
      uint64_t k = 0;
      std::memcpy(&k, view.data() + at, 8);
      for (auto [it, end] = needles.equal_range(k); it != end; ++it)
        found += std::equal(it->second.begin(), it->second.end(), view.begin() + static_cast<std::ptrdiff_t>(at));
    }
    return found;
  };
  EXPECT_EQ(needles.size(), 4u * kRounds);
  EXPECT_GT(view.size(), static_cast<size_t>(kNk) * kRounds);
  EXPECT_EQ(occurrences(), 0u);
  // The scan finds what is there: 32 of the view's own bytes, planted as a needle, are found.
  add_needle(ByteView(transcript[1234].blinded_msg).subspan(100, 32));
  EXPECT_EQ(occurrences(), 1u);
}

TEST(PrivacyPass, RedeemerRefusalsNameTheirReason) {
  test::TempDir dir;
  const TokenChallenge challenge = node_challenge();
  TokenIssuer issuer(blind_rsa::PrivateKey::from_pem(as_text(fresh_key().to_pem().view())), 100, 3600s);
  TokenIssuer other_issuer(blind_rsa::PrivateKey::from_pem(as_text(other_key().to_pem().view())), 100, 3600s);
  DoubleSpendStore store(dir.file("spent"), issuer.token_key_id());
  const TokenRedeemer redeemer(issuer.public_key(), challenge, store);

  TokenChallenge another = challenge;
  another.origin_info = "another.node";
  const Token for_another_challenge = issue_token(issuer, another);
  expect_refused([&] { redeemer.redeem(authorization_header(for_another_challenge)); }, Reason::wrong_challenge,
                 "another challenge");
  const Token by_another_key = issue_token(other_issuer, challenge);
  expect_refused([&] { redeemer.redeem(authorization_header(by_another_key)); }, Reason::unknown_key,
                 "another issuer key");
  // Another key's token relabelled with this key's id: its signature gives it away.
  Token relabelled = by_another_key;
  relabelled.token_key_id = issuer.token_key_id();
  expect_refused([&] { redeemer.redeem(authorization_header(relabelled)); }, Reason::bad_signature, "does not verify");

  const Token good = issue_token(issuer, challenge);
  for (size_t byte : {size_t{0}, size_t{100}, kNk - 1}) {
    Token tampered = good;
    tampered.authenticator[byte] ^= 0x01;
    expect_refused([&] { redeemer.redeem(authorization_header(tampered)); }, Reason::bad_signature, "does not verify");
  }
  Token other_nonce = good;
  other_nonce.nonce[0] ^= 0x80;
  expect_refused([&] { redeemer.redeem(authorization_header(other_nonce)); }, Reason::bad_signature, "does not verify");
  expect_refused([&] { redeemer.redeem(""); }, Reason::missing, "no Authorization");
  expect_refused([&] { redeemer.redeem("PrivateToken token=@@@@"); }, Reason::malformed, "base64url");
  Bytes type1 = good.encode();
  type1[1] = 0x01;
  expect_refused([&] { redeemer.redeem("PrivateToken token=" + base64url_encode(type1)); }, Reason::wrong_type, "not 2");
  // Nothing refused so far was recorded as spent: the good token still redeems, once.
  EXPECT_EQ(store.size(), 0u);
  redeemer.redeem(authorization_header(good));
  EXPECT_EQ(store.size(), 1u);
  expect_refused([&] { redeemer.redeem(authorization_header(good)); }, Reason::double_spent, "already spent");

  // The 401's header carries this challenge and key, in padded base64url.
  const std::string www = redeemer.www_authenticate();
  EXPECT_EQ(www, "PrivateToken challenge=\"" + base64url_encode(challenge.encode()) + "\", token-key=\"" +
                     base64url_encode(issuer.public_key_spki()) + "\"");
  const size_t key_at = www.find("token-key=\"") + 11;
  EXPECT_EQ(token_key_id(base64url_decode(www.substr(key_at, www.size() - key_at - 1))), issuer.token_key_id());

  // A store for another key is refused at construction.
  DoubleSpendStore other_store(dir.file("other"), other_issuer.token_key_id());
  expect_error([&] { TokenRedeemer r(issuer.public_key(), challenge, other_store); }, "belongs to another issuer key");
  // The client refuses a response that does not finalize into a valid token.
  ClientTokenRequest req = make_token_request(issuer.public_key(), challenge);
  Bytes response = issuer.issue("alice", req.request.encode());
  response[10] ^= 1;
  expect_refused([&] { finalize_token(issuer.public_key(), req.pending, response); }, Reason::bad_signature,
                 "does not give a valid token");
  expect_refused([&] { finalize_token(issuer.public_key(), req.pending, ByteView(response).first(100)); },
                 Reason::malformed, "100 bytes");
}

TEST(PrivacyPass, UnlinkableIssuerTranscript) {
  constexpr int kTokens = 300;
  const TokenChallenge challenge = node_challenge();
  std::vector<IssuanceRecord> transcript;
  TokenIssuer issuer(blind_rsa::PrivateKey::from_pem(as_text(fresh_key().to_pem().view())), kTokens, 3600s, {},
                     [&](const IssuanceRecord& r) { transcript.push_back(r); });
  const blind_rsa::PublicKey& pub = issuer.public_key();
  std::vector<Token> tokens;
  std::vector<Bytes> encoded;  // what an unblinded request would have been: EMSA-PSS(token_input)
  for (int i = 0; i < kTokens; ++i) {
    // The salt is fixed by the test so that the PSS encoding can be recomputed; r stays random.
    const Bytes salt = random_bytes(48);
    const Bytes nonce = random_bytes(32);
    const TokenRequestFixed fixed{nonce, salt, {}};
    ClientTokenRequest req = make_token_request(pub, challenge, &fixed);
    const Bytes response = issuer.issue("alice", req.request.encode());
    tokens.push_back(finalize_token(pub, req.pending, response));
    encoded.push_back(blind_rsa::emsa_pss_encode(tokens.back().token_input(), pub.modulus_bits() - 1, salt));
  }
  // The issuer's whole view, as bytes: client ids, times, truncated key ids, blinded messages.
  ASSERT_EQ(transcript.size(), static_cast<size_t>(kTokens));
  Bytes view;
  std::set<std::string> blinded;
  for (const IssuanceRecord& r : transcript) {
    EXPECT_EQ(r.client_id, "alice");
    EXPECT_EQ(r.blinded_msg.size(), kNk);
    put_bytes(view, as_bytes(r.client_id));
    const int64_t t = r.time.time_since_epoch().count();
    for (int b = 0; b < 8; ++b) view.push_back(static_cast<uint8_t>(t >> (8 * b)));
    view.push_back(r.truncated_token_key_id);
    put_bytes(view, r.blinded_msg);
    blinded.insert(key_of(r.blinded_msg));
  }
  EXPECT_EQ(blinded.size(), static_cast<size_t>(kTokens));
  for (int i = 0; i < kTokens; ++i) {
    const Token& t = tokens[i];
    EXPECT_FALSE(contains(view, t.nonce)) << i;
    EXPECT_FALSE(contains(view, t.token_input())) << i;
    EXPECT_FALSE(contains(view, Bytes(t.authenticator.begin(), t.authenticator.begin() + 32))) << i;
    EXPECT_FALSE(contains(view, Bytes(t.authenticator.end() - 32, t.authenticator.end()))) << i;
    EXPECT_FALSE(contains(view, Bytes(encoded[i].begin(), encoded[i].begin() + 32))) << i;
    EXPECT_FALSE(blinded.count(key_of(encoded[i]))) << i;
    EXPECT_FALSE(blinded.count(key_of(t.authenticator))) << i;
    Bytes padded_input(kNk - kTokenInputSize, 0);
    put_bytes(padded_input, t.token_input());
    EXPECT_FALSE(blinded.count(key_of(padded_input))) << i;
  }
  // The blinded messages are spread over [0, n) like random numbers, whatever they hide: their
  // top bytes take many values (the PSS encodings' top bit is always 0, which no blind keeps).
  std::set<uint8_t> top;
  size_t top_bit = 0;
  for (const std::string& b : blinded) {
    const auto first = static_cast<uint8_t>(b[0]);
    top.insert(first);
    top_bit += first >> 7;
  }
  EXPECT_GT(top.size(), 80u);
  EXPECT_GT(top_bit, 0u);
  for (const Bytes& e : encoded) EXPECT_EQ(e[0] >> 7, 0);
}

// ---- The issuer's rate limit ----

TEST(TokenIssuer, RateLimitPerClientPerPeriod) {
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));  // 7200 * 236111 + 800
  TokenIssuer issuer(blind_rsa::PrivateKey::from_pem(as_text(fresh_key().to_pem().view())), 3, 7200s, [&] { return now; });
  const TokenChallenge challenge = node_challenge();
  auto request = [&] { return make_token_request(issuer.public_key(), challenge).request.encode(); };
  for (int i = 0; i < 3; ++i) issuer.issue("alice", request());
  try {
    issuer.issue("alice", request());
    ADD_FAILURE() << "a fourth token in the period";
  } catch (const RateLimited& e) {
    EXPECT_EQ(e.retry_after().count(), 7200 - 800);
    EXPECT_NE(std::string(e.what()).find("3 tokens per 7200 s"), std::string::npos) << e.what();
  }
  for (int i = 0; i < 3; ++i) issuer.issue("bob", request());  // each client has its own count
  EXPECT_THROW(issuer.issue("bob", request()), RateLimited);
  // A refused request costs nothing: bad requests from a fresh client leave its allowance whole.
  Bytes wrong_key = request();
  wrong_key[2] ^= 0xff;
  expect_refused([&] { issuer.issue("carol", wrong_key); }, Reason::unknown_key, "truncated token key id");
  Bytes too_big = request();
  std::fill(too_big.begin() + 3, too_big.end(), 0xff);
  expect_refused([&] { issuer.issue("carol", too_big); }, Reason::malformed, "not below");
  expect_refused([&] { issuer.issue("carol", ByteView(too_big).first(200)); }, Reason::malformed, "200 bytes");
  Bytes type1 = request();
  type1[1] = 0x01;
  expect_refused([&] { issuer.issue("carol", type1); }, Reason::wrong_type, "not 2");
  for (int i = 0; i < 3; ++i) issuer.issue("carol", request());
  EXPECT_THROW(issuer.issue("carol", request()), RateLimited);
  // Still the same period a second before its end; the next one starts afresh.
  now += std::chrono::seconds(7200 - 800 - 1);
  EXPECT_THROW(issuer.issue("alice", request()), RateLimited);
  now += 1s;
  for (int i = 0; i < 3; ++i) issuer.issue("alice", request());
  EXPECT_THROW(issuer.issue("alice", request()), RateLimited);
  EXPECT_THROW(TokenIssuer(blind_rsa::PrivateKey::from_pem(kVectorSkS), 0, 60s), Error);
  EXPECT_THROW(TokenIssuer(blind_rsa::PrivateKey::from_pem(kVectorSkS), 1, 0s), Error);
}

TEST(TokenIssuer, BlindRsaKeySignsTheSame) {
  // A key without its CRT factors (n, e, d alone) gives the same responses.
  TokenIssuer by_crt(blind_rsa::PrivateKey::from_pem(kVectorSkS), 10, 60s);
  TokenIssuer by_d(d_only(blind_rsa::PrivateKey::from_pem(kVectorSkS)), 10, 60s);
  const ClientTokenRequest req = make_token_request(by_crt.public_key(), node_challenge());
  EXPECT_EQ(by_crt.issue("a", req.request.encode()), by_d.issue("a", req.request.encode()));
  EXPECT_EQ(by_crt.token_key_id(), by_d.token_key_id());
  Bytes too_big = req.request.encode();
  std::fill(too_big.begin() + 3, too_big.end(), 0xff);
  expect_refused([&] { by_d.issue("a", too_big); }, Reason::malformed, "not below");
}

// ---- The double-spend store ----

std::vector<Bytes> random_nonces(size_t n) {
  std::vector<Bytes> out;
  for (size_t i = 0; i < n; ++i) out.push_back(random_bytes(kNonceSize));
  return out;
}

TEST(DoubleSpend, TwoStoresOnOneFile) {
  test::TempDir dir;
  const Bytes key_id = random_bytes(32);
  DoubleSpendStore a(dir.file("spent"), key_id);
  DoubleSpendStore b(dir.file("spent"), key_id);
  const std::vector<Bytes> nonces = random_nonces(400);
  EXPECT_TRUE(a.spend(nonces[0]));
  EXPECT_FALSE(b.spend(nonces[0]));
  EXPECT_TRUE(b.spend(nonces[1]));
  EXPECT_FALSE(a.spend(nonces[1]));
  // Both at once, in two threads, on the same nonces: each nonce accepted exactly once.
  std::vector<int> won_a(nonces.size()), won_b(nonces.size());
  std::thread ta([&] {
    for (size_t i = 2; i < nonces.size(); ++i) won_a[i] = a.spend(nonces[i]);
  });
  std::thread tb([&] {
    for (size_t i = 2; i < nonces.size(); ++i) won_b[i] = b.spend(nonces[i]);
  });
  ta.join();
  tb.join();
  for (size_t i = 2; i < nonces.size(); ++i) EXPECT_EQ(won_a[i] + won_b[i], 1) << i;
  EXPECT_EQ(test::read_bytes(dir.file("spent")).size(), 56u + 32u * nonces.size());
  // A restart remembers.
  DoubleSpendStore c(dir.file("spent"), key_id);
  EXPECT_EQ(c.size(), nonces.size());
  for (const Bytes& n : nonces) EXPECT_FALSE(c.spend(n));
  expect_refused([&] { c.spend(ByteView(nonces[0]).first(31)); }, Reason::malformed, "31 bytes");
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("spent").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(DoubleSpend, TwoProcesses) {
  test::TempDir dir;
  const Bytes key_id = random_bytes(32);
  const std::string path = dir.file("spent");
  const std::vector<Bytes> nonces = random_nonces(300);
  DoubleSpendStore parent(path, key_id);
  int fds[2], go[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::close(go[1]);
    int rc = 0;
    try {
      DoubleSpendStore child(path, key_id);  // its own open file, so its own flock
      char start;
      if (::read(go[0], &start, 1) != 1) rc = 4;  // both sides begin together
      std::string won(nonces.size(), '0');
      for (size_t i = 0; i < nonces.size(); ++i) won[i] = child.spend(nonces[i]) ? '1' : '0';
      if (::write(fds[1], won.data(), won.size()) != static_cast<ssize_t>(won.size())) rc = 2;
    } catch (...) {
      rc = 3;
    }
    ::close(fds[1]);
    ::_exit(rc);
  }
  ::close(fds[1]);
  ::close(go[0]);
  std::this_thread::sleep_for(100ms);  // the child has opened its store and waits
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  std::vector<int> won(nonces.size());
  for (size_t i = 0; i < nonces.size(); ++i) won[i] = parent.spend(nonces[i]);
  std::string child_won;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) child_won.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_EQ(child_won.size(), nonces.size());
  size_t child_count = 0;
  for (size_t i = 0; i < nonces.size(); ++i) {
    EXPECT_EQ(won[i] + (child_won[i] == '1'), 1) << i;
    child_count += child_won[i] == '1';
  }
  std::printf("[ info     ] of %zu nonces spent by two processes at once, the child won %zu\n", nonces.size(),
              child_count);
  EXPECT_EQ(test::read_bytes(path).size(), 56u + 32u * nonces.size());
}

TEST(DoubleSpend, TornRecordRotationLimitAndForeignFiles) {
  test::TempDir dir;
  const std::string path = dir.file("spent");
  const Bytes key1 = random_bytes(32), key2 = random_bytes(32);
  const std::vector<Bytes> nonces = random_nonces(4);
  {
    DoubleSpendStore s(path, key1);
    EXPECT_TRUE(s.spend(nonces[0]));
  }
  // A crash mid-append: 10 bytes of a record that was never acknowledged.
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out.write(reinterpret_cast<const char*>(nonces[1].data()), 10);
  }
  {
    DoubleSpendStore s(path, key1);
    EXPECT_EQ(s.size(), 1u);
    EXPECT_EQ(test::read_bytes(path).size(), 56u + 32u);
    EXPECT_TRUE(s.spend(nonces[1]));
    EXPECT_FALSE(s.spend(nonces[0]));
  }
  // The limit: a full store refuses instead of forgetting; spent nonces stay refused.
  {
    DoubleSpendStore s(path, key1, 3);
    EXPECT_TRUE(s.spend(nonces[2]));
    expect_refused([&] { s.spend(nonces[3]); }, Reason::unavailable, "full (3 nonces)");
    EXPECT_FALSE(s.spend(nonces[0]));
    expect_error([&] { DoubleSpendStore small(path, key1, 2); }, "over its limit of 2");
  }
  // A new issuer key: the file starts over, and a process still on the old key refuses.
  DoubleSpendStore old_key(path, key1);
  DoubleSpendStore new_key(path, key2);
  EXPECT_EQ(new_key.size(), 0u);
  EXPECT_TRUE(new_key.spend(nonces[0]));
  expect_refused([&] { old_key.spend(nonces[3]); }, Reason::unavailable, "replaced by a store for another issuer key");
  EXPECT_EQ(test::read_bytes(path).size(), 56u + 32u);
  // A file that is not a store is never overwritten.
  const std::string foreign = dir.write("notes.txt", std::string(100, 'x'));
  expect_error([&] { DoubleSpendStore s(foreign, key1); }, "not a double-spend store");
  EXPECT_EQ(test::read_text(foreign), std::string(100, 'x'));
}

// ---- The wallet ----

TEST(PrivacyPass, WalletNeverGivesATokenTwice) {
  test::TempDir dir;
  const std::string path = dir.file("wallet");
  TokenWallet wallet(path);
  EXPECT_EQ(wallet.count(), 0u);
  EXPECT_FALSE(wallet.take().has_value());
  std::vector<Token> tokens;
  for (int i = 0; i < 120; ++i) tokens.push_back(random_token());
  wallet.add(std::span<const Token>(tokens).first(100));
  wallet.add(std::span<const Token>(tokens).subspan(100));
  EXPECT_EQ(wallet.count(), 120u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // One base64url token per line.
  const std::string text = test::read_text(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 120);
  EXPECT_EQ(text.substr(0, text.find('\n')), base64url_encode(tokens[0].encode()));
  // By challenge: the one token made for that challenge.
  const std::optional<Token> by_challenge = wallet.take(ByteView(tokens[57].challenge_digest));
  ASSERT_TRUE(by_challenge.has_value());
  EXPECT_EQ(*by_challenge, tokens[57]);
  EXPECT_FALSE(wallet.take(ByteView(tokens[57].challenge_digest)).has_value());

  // A child process and two threads take at once until the wallet is empty.
  int fds[2], go[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::close(go[1]);
    int rc = 0;
    try {
      TokenWallet mine(path);
      char start;
      if (::read(go[0], &start, 1) != 1) rc = 4;  // all three begin together
      while (std::optional<Token> t = mine.take())
        if (::write(fds[1], t->nonce.data(), t->nonce.size()) != 32) rc = 2;
    } catch (...) {
      rc = 3;
    }
    ::close(fds[1]);
    ::_exit(rc);
  }
  ::close(fds[1]);
  ::close(go[0]);
  std::vector<Bytes> taken;
  std::mutex taken_mutex;
  std::atomic<bool> start{false};
  auto taker = [&] {
    TokenWallet mine(path);
    while (!start) std::this_thread::yield();
    while (std::optional<Token> t = mine.take()) {
      std::lock_guard<std::mutex> lock(taken_mutex);
      taken.push_back(t->nonce);
    }
  };
  std::thread t1(taker), t2(taker);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  start = true;
  t1.join();
  t2.join();
  Bytes child_bytes;
  uint8_t buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) child_bytes.insert(child_bytes.end(), buf, buf + n);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_EQ(child_bytes.size() % 32, 0u);
  const size_t child_count = child_bytes.size() / 32;
  for (size_t i = 0; i < child_count; ++i) taken.emplace_back(child_bytes.begin() + 32 * i, child_bytes.begin() + 32 * (i + 1));
  std::printf("[ info     ] 119 tokens taken by two threads and a process: the process took %zu\n", child_count);
  EXPECT_EQ(taken.size(), 119u);
  std::set<std::string> expected;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (i != 57) expected.insert(key_of(tokens[i].nonce));
  EXPECT_EQ(set_of(taken), expected);  // all of them, each once
  EXPECT_EQ(wallet.count(), 0u);

  // A wallet others can read is refused; a damaged line is named without being quoted.
  wallet.add(tokens[0]);
  ::chmod(path.c_str(), 0644);
  expect_error([&] { wallet.count(); }, "readable by others");
  ::chmod(path.c_str(), 0600);
  {
    std::ofstream out(path, std::ios::app);
    out << "not-a-token\n";
  }
  try {
    wallet.take();
    ADD_FAILURE() << "a damaged wallet was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-a-token"), std::string::npos) << e.what();
  }
}


// ---- The CLI: keygen, the issuer service, fetch into a wallet, and a node taking the tokens ----

// `orchard tokens issue ...` in the background; its URL from the "listening on" line.
struct IssuerProcess {
  pid_t pid = -1;
  std::string url;
  explicit IssuerProcess(const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    const std::string binary = test::cli_path();
    std::vector<std::string> all{binary, "tokens", "issue"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execv(binary.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    char c;
    pollfd p{fds[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && ::poll(&p, 1, 20000) == 1 && ::read(fds[0], &c, 1) == 1) line += c;
    ::close(fds[0]);
    const std::string prefix = "listening on ";
    if (line.rfind(prefix, 0) == 0) url = line.substr(prefix.size(), line.size() - prefix.size() - 1);
  }
  int stop() {
    int status = -1;
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, &status, 0);
      pid = -1;
    }
    return status;
  }
  ~IssuerProcess() { stop(); }
};

TEST(PrivacyPassCli, KeygenIssueFetchRedeem) {
  test::TempDir dir;
  const std::string key = dir.file("issuer.pem"), wallet = dir.file("wallet");
  const test::CliResult keygen = test::run_cli({"tokens", "keygen", "--out", key});
  ASSERT_EQ(keygen.exit_code, 0) << keygen.err;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string pub_line = test::read_text(key + ".pub");
  ASSERT_FALSE(pub_line.empty());
  pub_line.pop_back();
  const Bytes spki = base64url_decode(pub_line);
  const blind_rsa::PublicKey pub = parse_public_key(spki);
  EXPECT_EQ(keygen.out, to_hex(openssl_sha256(spki)) + "\n");
  EXPECT_EQ(load_issuer_key(key).public_key().modulus(), pub.modulus());
  test::expect_one_line_error(test::run_cli({"tokens", "keygen", "--out", dir.file("big.pem"), "--bits", "3072"}),
                              "2048-bit keys only");
  test::expect_one_line_error(test::run_cli({"tokens", "keygen", "--out", key}), "exists");
  // Another key, whose public half a client might be given by mistake.
  ASSERT_EQ(test::run_cli({"tokens", "keygen", "--out", dir.file("other.pem")}).exit_code, 0);

  const std::string clients = dir.write("clients", "# id secret\nalice correct-horse-battery\n\nbob 0123456789abcdef\n");
  ::chmod(clients.c_str(), 0644);
  test::expect_one_line_error(test::run_cli({"tokens", "issue", "--key", key, "--clients", clients}),
                              "readable by others");
  ::chmod(clients.c_str(), 0600);
  IssuerProcess issuer({"--key", key, "--clients", clients, "--rate", "3", "--period-s", "31622400"});
  ASSERT_EQ(issuer.url.rfind("http://127.0.0.1:", 0), 0u) << issuer.url;

  ::setenv("PP_TEST_ALICE", "correct-horse-battery", 1);
  ::setenv("PP_TEST_WRONG", "correct-horse-batterx", 1);
  auto fetch = [&](const std::string& env, int count, const std::string& pub_file) {
    return test::run_cli({"tokens", "fetch", "--issuer", issuer.url, "--issuer-key", pub_file, "--auth-env", env,
                          "--count", std::to_string(count), "--wallet", wallet, "--origin-info", "node.test"});
  };
  const test::CliResult first = fetch("PP_TEST_ALICE", 2, key + ".pub");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("added 2 tokens"), std::string::npos) << first.out;
  // Three per period: the third comes, the fourth is refused with the issuer's 429.
  const test::CliResult second = fetch("PP_TEST_ALICE", 2, key + ".pub");
  test::expect_one_line_error(second, "1 of 2 tokens: the issuer answered 429");
  test::expect_one_line_error(fetch("PP_TEST_WRONG", 1, key + ".pub"), "answered 401");
  test::expect_one_line_error(fetch("PP_TEST_UNSET_VARIABLE", 1, key + ".pub"), "is not set");
  ::setenv("PP_TEST_BOB", "0123456789abcdef", 1);
  // A client given another key: the issuer refuses the request's truncated key id (or, one time
  // in 256, when the ids' last bytes agree, the answer does not verify under the client's key).
  const test::CliResult wrong_key = fetch("PP_TEST_BOB", 1, dir.file("other.pem.pub"));
  EXPECT_EQ(wrong_key.exit_code, 2);
  EXPECT_TRUE(wrong_key.err.find("truncated token key id") != std::string::npos ||
              wrong_key.err.find("not a token under the key of --issuer-key") != std::string::npos)
      << wrong_key.err;
  EXPECT_EQ(issuer.stop(), 0);

  // The wallet's three tokens are for (issuer 127.0.0.1, no context, origin node.test) and a node
  // with that challenge and key takes each once.
  TokenWallet w(wallet);
  EXPECT_EQ(w.count(), 3u);
  TokenChallenge challenge;
  challenge.issuer_name = "127.0.0.1";
  challenge.origin_info = "node.test";
  DoubleSpendStore store(dir.file("spent"), token_key_id(spki));
  const TokenRedeemer redeemer(pub, challenge, store);
  while (std::optional<Token> t = w.take()) {
    redeemer.redeem(authorization_header(*t));
    expect_refused([&] { redeemer.redeem(authorization_header(*t)); }, Reason::double_spent, "already spent");
  }
  EXPECT_EQ(store.size(), 3u);
}

}  // namespace
}  // namespace orchard::cloud::privacy_pass
