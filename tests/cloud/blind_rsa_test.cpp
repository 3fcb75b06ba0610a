// RSA blind signatures against RFC 9474 Appendix A: every vector of the four variants, from
// Prepare with its fixed prefix through the EMSA-PSS encoding with its salt, blinding with its inv,
// the issuer's blind signature and Finalize to the signature, byte for byte, and OpenSSL's
// verification of it. Then fresh keys end to end, PEM keys (CRT) signing as their n, e, d do, and
// the failures the vectors do not cover.
#include "cloud/blind_rsa.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "cloud/crypto.h"
#include "test_paths.h"

namespace orchard::cloud::blind_rsa {
namespace {

using nlohmann::json;

constexpr Variant kVariants[] = {Variant::sha384_pss_randomized, Variant::sha384_psszero_randomized,
                                 Variant::sha384_pss_deterministic, Variant::sha384_psszero_deterministic};

json load_vectors() {
  const std::string path = test::shared_path("pcc/rfc9474-vectors.json");
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return json::parse(in);
}

Bytes unhex(const json& v) { return from_hex(v.get<std::string>()); }
std::string str(const json& v) { return v.get<std::string>(); }
std::string hex(ByteView b) { return to_hex(b); }

// One 2048-bit key for the tests that need a fresh one: generating it is the slow part.
const PrivateKey& fresh_key() {
  static const PrivateKey key = PrivateKey::generate(2048);
  return key;
}

TEST(BlindRsa, Rfc9474Vectors) {
  const json doc = load_vectors();
  std::map<Variant, int> counts;
  for (const json& v : doc.at("vectors")) {
    const std::string name = str(v.at("variant"));
    SCOPED_TRACE(name);
    const std::optional<Variant> variant = parse_variant(name);
    ASSERT_TRUE(variant) << "unknown variant " << name;
    ++counts[*variant];
    EXPECT_EQ(salt_size(*variant), v.at("salt_len").get<size_t>());
    EXPECT_EQ(randomized(*variant), str(v.at("prepare")) == "randomize");

    const PrivateKey key = PrivateKey::from_components(unhex(v.at("n")), unhex(v.at("e")), unhex(v.at("d")));
    const PublicKey& pub = key.public_key();
    EXPECT_EQ(hex(pub.modulus()), str(v.at("n")));
    EXPECT_EQ(hex(pub.exponent()), str(v.at("e")));

    const Bytes msg = unhex(v.at("msg"));
    const Bytes prefix = unhex(v.at("msg_prefix"));
    const Bytes prepared = prepare(msg, *variant, ByteView(prefix));
    EXPECT_EQ(hex(prepared), str(v.at("prepared_msg")));

    const Bytes salt = unhex(v.at("salt"));
    EXPECT_EQ(hex(emsa_pss_encode(prepared, pub.modulus_bits() - 1, salt)), str(v.at("encoded_msg")));

    const Bytes inv = unhex(v.at("inv"));
    const BlindFixed fixed{.salt = salt, .inv = inv};
    const Blinded blinded = blind(pub, prepared, *variant, &fixed);
    EXPECT_EQ(hex(blinded.blinded_msg), str(v.at("blinded_msg")));
    EXPECT_EQ(hex(blinded.inv.view()), str(v.at("inv")));

    const Bytes blind_sig = blind_sign(key, blinded.blinded_msg);
    EXPECT_EQ(hex(blind_sig), str(v.at("blind_sig")));
    // The vector's own blind signature, so that finalize is checked even if blind_sign were off.
    const Bytes sig = finalize(pub, prepared, unhex(v.at("blind_sig")), inv, *variant);
    EXPECT_EQ(hex(sig), str(v.at("sig")));

    const Bytes expected_sig = unhex(v.at("sig"));
    EXPECT_TRUE(verify(pub, prepared, expected_sig, *variant));
    // The salt length is part of the variant: PSS and PSSZERO do not accept each other's signatures.
    const Variant other = salt_size(*variant) ? Variant::sha384_psszero_deterministic : Variant::sha384_pss_deterministic;
    EXPECT_FALSE(verify(pub, prepared, expected_sig, other));
    // The message the signature is for is the prepared one, not the bare message.
    if (randomized(*variant)) {
      EXPECT_FALSE(verify(pub, msg, expected_sig, *variant));
    }
  }
  for (Variant variant : kVariants) EXPECT_EQ(counts[variant], 1) << variant_name(variant);
  EXPECT_EQ(doc.at("vectors").size(), 4u);
}

// Blinding with a fixed r gives its inverse, and blinding with that inverse gives the same message.
TEST(BlindRsa, FixedRAndFixedInvAgree) {
  const PublicKey& pub = fresh_key().public_key();
  const Bytes prepared = prepare(as_bytes("token"), Variant::sha384_pss_deterministic);
  const Bytes salt(kHashSize, 0x5a);
  Bytes r(pub.modulus_size(), 0);
  r.back() = 3;
  const BlindFixed with_r{.salt = salt, .r = r};
  const Blinded a = blind(pub, prepared, Variant::sha384_pss_deterministic, &with_r);
  const Bytes inv(a.inv.view().begin(), a.inv.view().end());
  const BlindFixed with_inv{.salt = salt, .inv = inv};
  const Blinded b = blind(pub, prepared, Variant::sha384_pss_deterministic, &with_inv);
  EXPECT_EQ(hex(a.blinded_msg), hex(b.blinded_msg));
  EXPECT_EQ(hex(b.inv.view()), hex(inv));

  const BlindFixed both{.salt = salt, .r = r, .inv = inv};
  EXPECT_THROW(blind(pub, prepared, Variant::sha384_pss_deterministic, &both), Error);
  const Bytes zero(pub.modulus_size(), 0);
  const BlindFixed zero_r{.salt = salt, .r = zero};
  EXPECT_THROW(blind(pub, prepared, Variant::sha384_pss_deterministic, &zero_r), Error);
  const Bytes short_salt(47, 0);
  const BlindFixed bad_salt{.salt = short_salt};
  EXPECT_THROW(blind(pub, prepared, Variant::sha384_pss_deterministic, &bad_salt), Error);
}

TEST(BlindRsa, FreshKeyRoundTripEveryVariant) {
  const PrivateKey& key = fresh_key();
  const PublicKey& pub = key.public_key();
  EXPECT_EQ(pub.modulus_bits(), 2048u);
  EXPECT_EQ(pub.modulus_size(), 256u);
  EXPECT_EQ(hex(pub.exponent()), "010001");
  for (Variant variant : kVariants) {
    SCOPED_TRACE(variant_name(variant));
    const Bytes msg = random_bytes(100);
    const Bytes prepared = prepare(msg, variant);
    EXPECT_EQ(prepared.size(), msg.size() + (randomized(variant) ? kRandomPrefixSize : 0));
    const Blinded blinded = blind(pub, prepared, variant);
    ASSERT_EQ(blinded.blinded_msg.size(), 256u);
    ASSERT_EQ(blinded.inv.size(), 256u);
    const Bytes blind_sig = blind_sign(key, blinded.blinded_msg);
    const Bytes sig = finalize(pub, prepared, blind_sig, blinded.inv.view(), variant);
    EXPECT_EQ(sig.size(), 256u);
    EXPECT_TRUE(verify(pub, prepared, sig, variant));
  }
  // An empty message is a message too.
  const Bytes prepared = prepare({}, Variant::sha384_pss_deterministic);
  const Blinded blinded = blind(pub, prepared, Variant::sha384_pss_deterministic);
  const Bytes sig = finalize(pub, prepared, blind_sign(key, blinded.blinded_msg), blinded.inv.view(),
                             Variant::sha384_pss_deterministic);
  EXPECT_TRUE(verify(pub, prepared, sig, Variant::sha384_pss_deterministic));
}

TEST(BlindRsa, FlippedBitInBlindSignatureFailsFinalize) {
  const PrivateKey& key = fresh_key();
  const PublicKey& pub = key.public_key();
  const Variant variant = Variant::sha384_pss_deterministic;
  const Bytes prepared = prepare(as_bytes("request token"), variant);
  const Blinded blinded = blind(pub, prepared, variant);
  const Bytes blind_sig = blind_sign(key, blinded.blinded_msg);
  for (size_t byte : {size_t{0}, size_t{100}, blind_sig.size() - 1}) {
    Bytes tampered = blind_sig;
    tampered[byte] ^= 0x01;
    EXPECT_THROW(finalize(pub, prepared, tampered, blinded.inv.view(), variant), Error) << "byte " << byte;
  }
  // A wrong inv, a truncated signature, another message: all refused.
  Bytes wrong_inv(blinded.inv.view().begin(), blinded.inv.view().end());
  wrong_inv[10] ^= 0x80;
  EXPECT_THROW(finalize(pub, prepared, blind_sig, wrong_inv, variant), Error);
  EXPECT_THROW(finalize(pub, prepared, ByteView(blind_sig).first(255), blinded.inv.view(), variant), Error);
  EXPECT_THROW(finalize(pub, as_bytes("other"), blind_sig, blinded.inv.view(), variant), Error);
  EXPECT_NO_THROW(finalize(pub, prepared, blind_sig, blinded.inv.view(), variant));
}

TEST(BlindRsa, VerifyRefusesSignatureForAnotherMessage) {
  const PrivateKey& key = fresh_key();
  const PublicKey& pub = key.public_key();
  const Variant variant = Variant::sha384_pss_randomized;
  const Bytes prepared = prepare(as_bytes("message one"), variant);
  const Blinded blinded = blind(pub, prepared, variant);
  const Bytes sig = finalize(pub, prepared, blind_sign(key, blinded.blinded_msg), blinded.inv.view(), variant);
  EXPECT_TRUE(verify(pub, prepared, sig, variant));
  Bytes other = prepared;
  other.back() ^= 0x01;
  EXPECT_FALSE(verify(pub, other, sig, variant));
  EXPECT_FALSE(verify(pub, prepare(as_bytes("message one"), variant), sig, variant));  // another prefix
  Bytes flipped = sig;
  flipped[0] ^= 0x40;
  EXPECT_FALSE(verify(pub, prepared, flipped, variant));
  EXPECT_FALSE(verify(pub, prepared, ByteView(sig).first(255), variant));
  EXPECT_FALSE(verify(pub, prepared, {}, variant));
  // Another key's public key does not accept it either.
  const json v = load_vectors().at("vectors").at(0);
  const PublicKey vector_key = PublicKey::from_components(unhex(v.at("n")), unhex(v.at("e")));
  EXPECT_FALSE(verify(vector_key, prepared, sig, variant));
}

TEST(BlindRsa, BlindSignRefusesMessageNotBelowModulus) {
  const PrivateKey& key = fresh_key();
  const Bytes n = key.public_key().modulus();
  EXPECT_THROW(blind_sign(key, n), Error);
  EXPECT_THROW(blind_sign(key, Bytes(n.size(), 0xff)), Error);
  Bytes n_minus_1 = n;
  n_minus_1.back() ^= 0x01;  // n is odd
  EXPECT_NO_THROW(blind_sign(key, n_minus_1));
  EXPECT_THROW(blind_sign(key, Bytes(n.size() - 1, 0x01)), Error);
  EXPECT_THROW(blind_sign(key, Bytes(n.size() + 1, 0x00)), Error);
}

// A d that does not belong to e is caught by the check before any signature leaves the issuer.
TEST(BlindRsa, BlindSignChecksItsSignature) {
  const json v = load_vectors().at("vectors").at(0);
  Bytes d = unhex(v.at("d"));
  d.back() ^= 0x02;
  const PrivateKey bad = PrivateKey::from_components(unhex(v.at("n")), unhex(v.at("e")), d);
  const Bytes blinded = unhex(v.at("blinded_msg"));
  EXPECT_THROW(blind_sign(bad, blinded), Error);
}

TEST(BlindRsa, TwoBlindingsOfOneMessageDiffer) {
  const PrivateKey& key = fresh_key();
  const PublicKey& pub = key.public_key();
  for (Variant variant : kVariants) {
    SCOPED_TRACE(variant_name(variant));
    const Bytes prepared = prepare(as_bytes("same message"), variant);
    const Blinded a = blind(pub, prepared, variant);
    const Blinded b = blind(pub, prepared, variant);
    EXPECT_NE(hex(a.blinded_msg), hex(b.blinded_msg));
    EXPECT_NE(hex(a.inv.view()), hex(b.inv.view()));
    const Bytes sig_a = finalize(pub, prepared, blind_sign(key, a.blinded_msg), a.inv.view(), variant);
    const Bytes sig_b = finalize(pub, prepared, blind_sign(key, b.blinded_msg), b.inv.view(), variant);
    // Without a salt the signature of one prepared message is one value, whatever the blinding:
    // the issuer saw two unrelated numbers and the client holds the same signature twice.
    if (salt_size(variant) == 0) {
      EXPECT_EQ(hex(sig_a), hex(sig_b));
    } else {
      EXPECT_NE(hex(sig_a), hex(sig_b));
    }
  }
}

TEST(BlindRsa, PrepareAndVariants) {
  const Bytes msg = {1, 2, 3};
  EXPECT_EQ(prepare(msg, Variant::sha384_pss_deterministic), msg);
  EXPECT_EQ(prepare(msg, Variant::sha384_psszero_deterministic, ByteView()), msg);
  EXPECT_THROW(prepare(msg, Variant::sha384_pss_deterministic, ByteView(msg)), Error);
  const Bytes a = prepare(msg, Variant::sha384_pss_randomized);
  const Bytes b = prepare(msg, Variant::sha384_psszero_randomized);
  ASSERT_EQ(a.size(), 35u);
  EXPECT_EQ(Bytes(a.end() - 3, a.end()), msg);
  EXPECT_NE(hex(ByteView(a).first(32)), hex(ByteView(b).first(32)));
  EXPECT_THROW(prepare(msg, Variant::sha384_pss_randomized, ByteView(msg)), Error);

  for (Variant variant : kVariants) EXPECT_EQ(parse_variant(variant_name(variant)), variant);
  EXPECT_FALSE(parse_variant("RSABSSA-SHA256-PSS-Randomized"));
  EXPECT_EQ(salt_size(Variant::sha384_pss_randomized), 48u);
  EXPECT_EQ(salt_size(Variant::sha384_psszero_deterministic), 0u);
}

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(size));
  BIO_free(bio);
  return out;
}

Bytes bn_param(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1) << name;
  Bytes out(static_cast<size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_clear_free(bn);
  return out;
}

// A key's PEM as OpenSSL reads it (PKCS#8, with its CRT factors); the CRT signing of that key and
// the signing by n, e, d alone (the same key, d read by OpenSSL) agree, and each is m^d: raised to
// e by OpenSSL's BIGNUM it gives m back.
TEST(BlindRsa, PemKeySignsByCrtAsByD) {
  const SecretBytes pem = fresh_key().to_pem();
  const std::string text(reinterpret_cast<const char*>(pem.data()), pem.size());
  EXPECT_EQ(text.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u);
  BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
  EVP_PKEY* ossl = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(ossl, nullptr);
  const Bytes n = bn_param(ossl, OSSL_PKEY_PARAM_RSA_N), e = bn_param(ossl, OSSL_PKEY_PARAM_RSA_E);
  const Bytes d = bn_param(ossl, OSSL_PKEY_PARAM_RSA_D);
  EXPECT_FALSE(bn_param(ossl, OSSL_PKEY_PARAM_RSA_FACTOR1).empty());
  EVP_PKEY_free(ossl);
  EXPECT_EQ(hex(n), hex(fresh_key().public_key().modulus()));

  const PrivateKey by_pem = PrivateKey::from_pem(text);
  EXPECT_TRUE(by_pem.has_crt_factors());
  EXPECT_TRUE(fresh_key().has_crt_factors());
  EXPECT_EQ(hex(by_pem.public_key().modulus()), hex(n));
  const PrivateKey by_d = PrivateKey::from_components(n, e, d);
  EXPECT_FALSE(by_d.has_crt_factors());
  EXPECT_THROW(by_d.to_pem(), Error);

  BIGNUM* n_bn = BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr);
  BIGNUM* e_bn = BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr);
  BN_CTX* ctx = BN_CTX_new();
  for (int i = 0; i < 5; ++i) {
    Bytes m = random_bytes(n.size());
    m[0] &= 0x7f;  // below n, whose top bit is set
    const Bytes s = blind_sign(by_pem, m);
    EXPECT_EQ(hex(s), hex(blind_sign(by_d, m)));
    EXPECT_EQ(hex(s), hex(blind_sign(fresh_key(), m)));
    BIGNUM* s_bn = BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr);
    BIGNUM* back = BN_new();
    ASSERT_EQ(BN_mod_exp(back, s_bn, e_bn, n_bn, ctx), 1);
    Bytes back_bytes(m.size());
    BN_bn2binpad(back, back_bytes.data(), static_cast<int>(back_bytes.size()));
    EXPECT_EQ(hex(back_bytes), hex(m));
    BN_free(s_bn);
    BN_free(back);
  }
  BN_CTX_free(ctx);
  BN_free(n_bn);
  BN_free(e_bn);
}

TEST(BlindRsa, PemRefusals) {
  auto expect_error = [](std::string_view pem, const std::string& needle) {
    try {
      PrivateKey::from_pem(pem);
      ADD_FAILURE() << "accepted; expected " << needle;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
  };
  expect_error("", "empty");
  expect_error(std::string(40000, 'A'), "longer than any RSA key");
  expect_error("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not an unencrypted PEM private key");
  // Another algorithm, and an RSA key under 2048 bits, each made by OpenSSL.
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(ec, nullptr);
  expect_error(pem_of(ec), "not an RSA key");
  EVP_PKEY_free(ec);
  EVP_PKEY* small = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024});
  ASSERT_NE(small, nullptr);
  expect_error(pem_of(small), "under 2048");
  EVP_PKEY_free(small);
  // An encrypted key is refused, never prompted for.
  const SecretBytes pem = fresh_key().to_pem();
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  ASSERT_NE(key, nullptr);
  BIO* out = BIO_new(BIO_s_mem());
  char pass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(out, key, EVP_aes_256_cbc(), pass, 6, nullptr, nullptr), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(out, &data);
  const std::string encrypted(data, static_cast<size_t>(size));
  BIO_free(out);
  EVP_PKEY_free(key);
  expect_error(encrypted, "not an unencrypted PEM private key");
}

TEST(BlindRsa, KeyChecks) {
  EXPECT_THROW(PrivateKey::generate(1024), Error);
  const json v = load_vectors().at("vectors").at(0);
  const Bytes n = unhex(v.at("n"));
  const Bytes e = unhex(v.at("e"));
  const Bytes d = unhex(v.at("d"));
  Bytes even = n;
  even.back() &= 0xfe;
  EXPECT_THROW(PublicKey::from_components(even, e), Error);
  Bytes short_n(n.begin(), n.begin() + 128);  // 1024 bits, odd
  short_n.back() |= 0x01;
  EXPECT_THROW(PublicKey::from_components(short_n, e), Error);
  EXPECT_THROW(PublicKey::from_components(n, Bytes{0x01}), Error);
  EXPECT_THROW(PublicKey::from_components(n, Bytes{0x01, 0x00, 0x00}), Error);
  EXPECT_THROW(PrivateKey::from_components(n, e, Bytes{0x00}), Error);
  EXPECT_THROW(PrivateKey::from_components(n, e, Bytes(n.size(), 0xff)), Error);
  EXPECT_EQ(PublicKey::from_components(n, e).modulus_bits(), 4096u);
  // The encoding needs room for the hash, the salt and two bytes.
  EXPECT_THROW(emsa_pss_encode(as_bytes("m"), 8 * (48 + 48 + 1), Bytes(48, 0)), Error);
  EXPECT_EQ(emsa_pss_encode(as_bytes("m"), 8 * (48 + 48 + 2), Bytes(48, 0)).size(), 98u);
}

}  // namespace
}  // namespace orchard::cloud::blind_rsa
