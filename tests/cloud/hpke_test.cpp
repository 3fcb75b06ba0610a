// HPKE base mode against RFC 9180 Appendix A: every DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256
// base-mode vector for AES-128-GCM, ChaCha20-Poly1305 and export-only, from the derived key pairs
// through the key schedule to each listed encryption and export; then the failures the vectors do
// not cover (tampering, small-order keys, malformed enc), and the byte helpers under them.
#include "cloud/hpke.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "base/error.h"
#include "test_paths.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;

json load_vectors() {
  const std::string path = test::shared_path("pcc/rfc9180-test-vectors.json");
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return json::parse(in);
}

// The file writes its identifiers and lengths as decimal strings ("32", "65535") and the sequence
// numbers as numbers; either is read.
uint64_t number(const json& v) { return v.is_string() ? std::stoull(v.get<std::string>()) : v.get<uint64_t>(); }
Bytes unhex(const json& v) { return from_hex(v.get<std::string>()); }
std::string str(const json& v) { return v.get<std::string>(); }
std::string hex(ByteView b) { return to_hex(b); }
Bytes bytes(std::string_view s) { return {s.begin(), s.end()}; }

struct Checked {
  size_t vectors = 0;
  size_t encryptions = 0;  // listed ones, sealed and opened
  size_t exports = 0;
};

// One vector: DeriveKeyPair, both setups, the whole seal/open sequence, every export; counted into
// `checked`.
void check_vector(const json& v, Checked& checked) {
  ++checked.vectors;
  const auto aead = static_cast<AeadId>(number(v.at("aead_id")));
  const HpkeSuite suite{.aead = aead};
  const Bytes info = unhex(v.at("info"));

  const X25519KeyPair ephemeral = hpke_derive_key_pair(unhex(v.at("ikmE")));
  const X25519KeyPair recipient = hpke_derive_key_pair(unhex(v.at("ikmR")));
  EXPECT_EQ(hex(ephemeral.secret.view()), str(v.at("skEm")));
  EXPECT_EQ(hex(ephemeral.public_key), str(v.at("pkEm")));
  EXPECT_EQ(hex(recipient.secret.view()), str(v.at("skRm")));
  EXPECT_EQ(hex(recipient.public_key), str(v.at("pkRm")));

  HpkeSender sender = hpke_setup_base_sender(suite, recipient.public_key, info, &ephemeral);
  EXPECT_EQ(hex(sender.enc), str(v.at("enc")));
  HpkeContext receiver = hpke_setup_base_receiver(suite, sender.enc, recipient, info);
  for (const HpkeContext* c : {&sender.context, &receiver}) {
    EXPECT_EQ(c->aead(), aead);
    EXPECT_EQ(hex(c->key()), str(v.at("key")));
    EXPECT_EQ(hex(c->base_nonce()), str(v.at("base_nonce")));
    EXPECT_EQ(hex(c->exporter_secret()), str(v.at("exporter_secret")));
    EXPECT_EQ(c->sequence(), 0u);
  }

  // The vectors list sequence numbers 0, 1, 2, 4, 255, 256 of one run; the ones between are sealed
  // here with other bytes (whatever was sealed there does not change later nonces) and opened by
  // the receiver, so both sides walk the whole sequence.
  for (const json& e : v.at("encryptions")) {
    const uint64_t seq = number(e.at("sequence_number"));
    while (sender.context.sequence() < seq) {
      const Bytes ct = sender.context.seal({}, as_bytes("filler"));
      const auto pt = receiver.open({}, ct);
      if (!pt || as_text(*pt) != "filler") {
        ADD_FAILURE() << "filler at sequence " << receiver.sequence() << " does not open";
        return;  // the receiver is out of step from here on
      }
    }
    EXPECT_EQ(sender.context.sequence(), seq);
    if (receiver.sequence() != seq) {
      ADD_FAILURE() << "receiver at sequence " << receiver.sequence() << ", sender at " << seq;
      return;
    }
    const Bytes aad = unhex(e.at("aad"));
    const Bytes pt = unhex(e.at("pt"));
    const Bytes ct = sender.context.seal(aad, pt);
    EXPECT_EQ(hex(ct), str(e.at("ct"))) << "sequence " << seq;
    // The listed ciphertext, not ours: the receiver is checked against the RFC on its own.
    const auto opened = receiver.open(aad, unhex(e.at("ct")));
    EXPECT_TRUE(opened && *opened == pt) << "sequence " << seq;
    ++checked.encryptions;
  }

  for (const json& x : v.at("exports")) {
    const Bytes context = unhex(x.at("exporter_context"));
    const size_t length = number(x.at("L"));
    EXPECT_EQ(hex(sender.context.export_secret(context, length)), str(x.at("exported_value")));
    EXPECT_EQ(hex(receiver.export_secret(context, length)), str(x.at("exported_value")));
    ++checked.exports;
  }
}

TEST(Hpke, Rfc9180BaseModeVectors) {
  const json vectors = load_vectors();
  ASSERT_TRUE(vectors.contains("suites")) << "the vector file has no \"suites\"";
  std::map<uint64_t, Checked> counts;  // by AEAD id
  for (const json& suite : vectors.at("suites")) {
    for (const json& v : suite.at("setups")) {
      if (number(v.at("mode")) != 0 || number(v.at("kem_id")) != kKemX25519HkdfSha256 ||
          number(v.at("kdf_id")) != kKdfHkdfSha256)
        continue;
      const uint64_t aead = number(v.at("aead_id"));
      if (aead != 0x0001 && aead != 0x0003 && aead != 0xffff) continue;
      SCOPED_TRACE(suite.value("suite", std::string()) + ", mode 0");
      check_vector(v, counts[aead]);
    }
  }
  // A misread layout would skip every vector and pass; each AEAD must have had its vectors checked,
  // the sealing ones with encryptions as well as exports.
  for (uint64_t aead : {0x0001, 0x0003, 0xffff}) {
    EXPECT_GT(counts[aead].vectors, 0u) << "AEAD " << aead;
    EXPECT_GT(counts[aead].exports, 0u) << "AEAD " << aead;
    if (aead != 0xffff) {
      EXPECT_GT(counts[aead].encryptions, 0u) << "AEAD " << aead;
    }
  }
  for (const auto& [aead, c] : counts)
    std::printf("[          ] AEAD 0x%04llx: %zu base-mode vectors, %zu encryptions, %zu exports\n",
                static_cast<unsigned long long>(aead), c.vectors, c.encryptions, c.exports);
}

// A recipient with a fresh key pair and both ends of one fresh setup.
struct Pair {
  X25519KeyPair recipient = x25519_generate();
  HpkeSender sender;
  HpkeContext receiver;
  explicit Pair(AeadId aead)
      : sender(hpke_setup_base_sender({.aead = aead}, recipient.public_key, as_bytes("info"))),
        receiver(hpke_setup_base_receiver({.aead = aead}, sender.enc, recipient, as_bytes("info"))) {}
};

TEST(Hpke, FreshEphemeralRoundTrip) {
  for (AeadId aead : {AeadId::aes128_gcm, AeadId::chacha20_poly1305}) {
    Pair p(aead);
    EXPECT_EQ(p.sender.enc.size(), kHpkeEncSize);
    for (int i = 0; i < 3; ++i) {
      const std::string msg = "message " + std::to_string(i);
      const Bytes ct = p.sender.context.seal(as_bytes("aad"), as_bytes(msg));
      EXPECT_EQ(ct.size(), msg.size() + kAeadTagSize);
      const auto pt = p.receiver.open(as_bytes("aad"), ct);
      ASSERT_TRUE(pt);
      EXPECT_EQ(as_text(*pt), msg);
    }
    // An empty plaintext is a tag alone, and opens.
    const Bytes ct = p.sender.context.seal({}, {});
    EXPECT_EQ(ct.size(), kAeadTagSize);
    const auto pt = p.receiver.open({}, ct);
    ASSERT_TRUE(pt);
    EXPECT_TRUE(pt->empty());
    EXPECT_EQ(p.sender.context.sequence(), 4u);
    EXPECT_EQ(p.receiver.sequence(), 4u);
    EXPECT_EQ(hex(p.sender.context.export_secret(as_bytes("ctx"), 40)),
              hex(p.receiver.export_secret(as_bytes("ctx"), 40)));
  }
  // Two setups to one recipient draw different ephemerals, so different keys.
  const X25519KeyPair r = x25519_generate();
  const HpkeSender a = hpke_setup_base_sender({}, r.public_key, {});
  const HpkeSender b = hpke_setup_base_sender({}, r.public_key, {});
  EXPECT_NE(a.enc, b.enc);
  EXPECT_NE(hex(a.context.key()), hex(b.context.key()));
}

TEST(Hpke, TamperedMessageDoesNotOpenNorAdvance) {
  for (AeadId aead : {AeadId::aes128_gcm, AeadId::chacha20_poly1305}) {
    SCOPED_TRACE(static_cast<int>(aead));
    Pair p(aead);
    const Bytes aad = bytes("header");
    const Bytes ct = p.sender.context.seal(aad, as_bytes("attack at dawn"));
    // A bit flipped in the first and last byte of the ciphertext body, and in the tag.
    for (size_t at : {size_t{0}, ct.size() - kAeadTagSize - 1, ct.size() - kAeadTagSize, ct.size() - 1}) {
      Bytes bad = ct;
      bad[at] ^= 0x01;
      EXPECT_FALSE(p.receiver.open(aad, bad)) << "byte " << at;
      EXPECT_EQ(p.receiver.sequence(), 0u);
    }
    Bytes bad_aad = aad;
    bad_aad[0] ^= 0x80;
    EXPECT_FALSE(p.receiver.open(bad_aad, ct));
    EXPECT_FALSE(p.receiver.open({}, ct));
    // Cut short: a tag missing its last byte, a ciphertext shorter than any tag, nothing at all.
    EXPECT_FALSE(p.receiver.open(aad, ByteView(ct).first(ct.size() - 1)));
    EXPECT_FALSE(p.receiver.open(aad, ByteView(ct).first(kAeadTagSize - 1)));
    EXPECT_FALSE(p.receiver.open(aad, {}));
    EXPECT_EQ(p.receiver.sequence(), 0u);
    // The next message opened out of order uses the wrong nonce.
    const Bytes second = p.sender.context.seal(aad, as_bytes("second"));
    EXPECT_FALSE(p.receiver.open(aad, second));
    EXPECT_EQ(p.receiver.sequence(), 0u);
    // After every failure the genuine messages still open, in order.
    const auto pt = p.receiver.open(aad, ct);
    ASSERT_TRUE(pt);
    EXPECT_EQ(as_text(*pt), "attack at dawn");
    EXPECT_EQ(p.receiver.sequence(), 1u);
    EXPECT_TRUE(p.receiver.open(aad, second));
    EXPECT_EQ(p.receiver.sequence(), 2u);
  }
}

TEST(Hpke, SmallOrderRecipientKeyThrows) {
  // The all-zero point and the point of order 4 (u = 1) give an all-zero DH result (RFC 7748 §6.1).
  Bytes zero(kX25519KeySize, 0);
  Bytes one(kX25519KeySize, 0);
  one[0] = 1;
  for (const Bytes& key : {zero, one}) {
    EXPECT_THROW(hpke_setup_base_sender({}, key, {}), Error);
    EXPECT_THROW(x25519(x25519_generate().secret.view(), key), Error);
  }
  // So does a small-order enc at the receiver.
  const X25519KeyPair r = x25519_generate();
  EXPECT_THROW(hpke_setup_base_receiver({}, zero, r, {}), Error);
  try {
    hpke_setup_base_sender({}, zero, {});
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("X25519"), std::string::npos) << e.what();
  }
}

TEST(Hpke, MalformedKeysAndSuitesThrow) {
  const X25519KeyPair r = x25519_generate();
  const HpkeSender s = hpke_setup_base_sender({}, r.public_key, {});
  for (size_t size : {size_t{0}, size_t{31}, size_t{33}, size_t{65}}) {
    Bytes enc = s.enc;
    enc.resize(size, 0x42);
    EXPECT_THROW(hpke_setup_base_receiver({}, enc, r, {}), Error) << size << "-byte enc";
    EXPECT_THROW(hpke_setup_base_sender({}, enc, {}), Error) << size << "-byte recipient key";
  }
  EXPECT_THROW(hpke_setup_base_sender({.kem = 0x0010}, r.public_key, {}), Error);  // P-256
  EXPECT_THROW(hpke_setup_base_sender({.kdf = 0x0002}, r.public_key, {}), Error);  // SHA-384
  EXPECT_THROW(hpke_setup_base_sender({.aead = static_cast<AeadId>(0x0002)}, r.public_key, {}), Error);  // AES-256
  EXPECT_THROW(hpke_setup_base_receiver({.kem = 0x0010}, s.enc, r, {}), Error);
  EXPECT_THROW(hpke_derive_key_pair(Bytes(31, 1)), Error);
  EXPECT_THROW(x25519_from_secret(Bytes(31, 1)), Error);
  EXPECT_THROW(x25519(Bytes(33, 1), r.public_key), Error);
  // A context whose key or nonce does not fit its AEAD.
  EXPECT_THROW(HpkeContext(AeadId::aes128_gcm, SecretBytes(32), Bytes(12), SecretBytes(32)), Error);
  EXPECT_THROW(HpkeContext(AeadId::aes128_gcm, SecretBytes(16), Bytes(8), SecretBytes(32)), Error);
  EXPECT_THROW(HpkeContext(AeadId::export_only, SecretBytes(16), Bytes(), SecretBytes(32)), Error);
}

TEST(Hpke, ExportOnlyContextExportsButCannotSeal) {
  const X25519KeyPair r = x25519_generate();
  HpkeSender s = hpke_setup_base_sender({.aead = AeadId::export_only}, r.public_key, as_bytes("info"));
  HpkeContext c = hpke_setup_base_receiver({.aead = AeadId::export_only}, s.enc, r, as_bytes("info"));
  EXPECT_TRUE(c.key().empty());
  EXPECT_TRUE(c.base_nonce().empty());
  EXPECT_EQ(c.exporter_secret().size(), 32u);
  EXPECT_THROW(s.context.seal({}, as_bytes("x")), Error);
  EXPECT_THROW(c.open({}, Bytes(32)), Error);
  EXPECT_EQ(c.sequence(), 0u);
  EXPECT_EQ(hex(s.context.export_secret({}, 64)), hex(c.export_secret({}, 64)));
  EXPECT_TRUE(c.export_secret({}, 0).empty());
  EXPECT_EQ(c.export_secret({}, 255 * 32).size(), 255u * 32);
  EXPECT_THROW(c.export_secret({}, 255 * 32 + 1), Error);
}

// RFC 5869 Appendix A, test cases 1 and 3 (SHA-256; case 3 with no salt and no info).
TEST(Hpke, HkdfRfc5869Vectors) {
  const Bytes prk1 = hkdf_extract(from_hex("000102030405060708090a0b0c"), Bytes(22, 0x0b));
  EXPECT_EQ(hex(prk1), "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  EXPECT_EQ(hex(hkdf_expand(prk1, from_hex("f0f1f2f3f4f5f6f7f8f9"), 42)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  const Bytes prk3 = hkdf_extract({}, Bytes(22, 0x0b));
  EXPECT_EQ(hex(prk3), "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
  EXPECT_EQ(hex(hkdf_expand(prk3, {}, 42)),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
  // Empty input keying material is HMAC over nothing, not an error.
  EXPECT_EQ(hex(hkdf_extract({}, {})), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_TRUE(hkdf_expand(prk1, {}, 0).empty());
  EXPECT_EQ(hkdf_expand(prk1, {}, 255 * 32).size(), 255u * 32);
  EXPECT_THROW(hkdf_expand(prk1, {}, 255 * 32 + 1), Error);
  EXPECT_THROW(hkdf_expand(Bytes(16, 1), {}, 32), Error);
}

// RFC 7748 §6.1.
TEST(Hpke, X25519Rfc7748Vector) {
  const X25519KeyPair alice =
      x25519_from_secret(from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  const X25519KeyPair bob =
      x25519_from_secret(from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  EXPECT_EQ(hex(alice.public_key), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  EXPECT_EQ(hex(bob.public_key), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const char* shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  EXPECT_EQ(hex(x25519(alice.secret.view(), bob.public_key).view()), shared);
  EXPECT_EQ(hex(x25519(bob.secret.view(), alice.public_key).view()), shared);
  const X25519KeyPair fresh = x25519_generate();
  EXPECT_EQ(fresh.secret.size(), kX25519KeySize);
  EXPECT_EQ(hex(x25519_from_secret(fresh.secret.view()).public_key), hex(fresh.public_key));
}

TEST(Hpke, AeadPrimitives) {
  EXPECT_TRUE(aead_supported(0x0001));
  EXPECT_TRUE(aead_supported(0x0003));
  EXPECT_FALSE(aead_supported(0xffff));
  EXPECT_FALSE(aead_supported(0x0002));
  EXPECT_EQ(aead_key_size(AeadId::aes128_gcm), 16u);
  EXPECT_EQ(aead_key_size(AeadId::chacha20_poly1305), 32u);
  EXPECT_EQ(aead_nonce_size(AeadId::chacha20_poly1305), 12u);
  EXPECT_EQ(aead_key_size(AeadId::export_only), 0u);
  const Bytes key(16, 7), nonce(12, 9);
  const Bytes ct = aead_seal(AeadId::aes128_gcm, key, nonce, as_bytes("a"), as_bytes("plain"));
  EXPECT_EQ(as_text(aead_open(AeadId::aes128_gcm, key, nonce, as_bytes("a"), ct).value()), "plain");
  EXPECT_FALSE(aead_open(AeadId::aes128_gcm, Bytes(16, 8), nonce, as_bytes("a"), ct));
  EXPECT_FALSE(aead_open(AeadId::aes128_gcm, key, Bytes(12, 8), as_bytes("a"), ct));
  EXPECT_FALSE(aead_open(AeadId::aes128_gcm, key, nonce, as_bytes("a"), Bytes(15)));
  // Wrong sizes are the caller's error, in open as in seal.
  EXPECT_THROW(aead_seal(AeadId::aes128_gcm, Bytes(32), nonce, {}, {}), Error);
  EXPECT_THROW(aead_seal(AeadId::chacha20_poly1305, key, nonce, {}, {}), Error);
  EXPECT_THROW(aead_seal(AeadId::aes128_gcm, key, Bytes(16), {}, {}), Error);
  EXPECT_THROW(aead_open(AeadId::aes128_gcm, Bytes(15), nonce, {}, ct), Error);
  EXPECT_THROW(aead_seal(AeadId::export_only, {}, {}, {}, {}), Error);
}

TEST(Hpke, RandomBytes) {
  EXPECT_TRUE(random_bytes(0).empty());
  const Bytes a = random_bytes(32), b = random_bytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

TEST(CloudBytes, HexRoundTrip) {
  Bytes all(256);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i);
  const std::string text = to_hex(all);
  EXPECT_EQ(text.size(), 512u);
  EXPECT_EQ(text.substr(0, 8), "00010203");
  EXPECT_EQ(text.substr(504), "fcfdfeff");
  EXPECT_EQ(from_hex(text), all);
  EXPECT_EQ(from_hex("DEADbeef"), (Bytes{0xde, 0xad, 0xbe, 0xef}));
  EXPECT_TRUE(from_hex("").empty());
  EXPECT_EQ(to_hex({}), "");
}

TEST(CloudBytes, FromHexErrors) {
  EXPECT_THROW(from_hex("abc"), Error);
  EXPECT_THROW(from_hex("0g"), Error);
  EXPECT_THROW(from_hex("0 "), Error);
  EXPECT_THROW(from_hex("-1"), Error);
  EXPECT_THROW(from_hex("0x00"), Error);
  try {
    from_hex("a");
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("odd"), std::string::npos) << e.what();
  }
}

TEST(CloudBytes, BigEndianWriters) {
  Bytes out;
  put_u8(out, 0x01);
  put_u16(out, 0x0203);
  put_bytes(out, as_bytes("\x04"));
  EXPECT_EQ(out, (Bytes{1, 2, 3, 4}));
}

TEST(CloudBytes, SecretBytesSizeViewMove) {
  const SecretBytes empty;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.view().empty());
  const SecretBytes zeros(40);
  ASSERT_EQ(zeros.size(), 40u);
  EXPECT_EQ(Bytes(zeros.view().begin(), zeros.view().end()), Bytes(40, 0));

  const Bytes secret = bytes("a secret of some length");
  SecretBytes a(secret);
  ASSERT_EQ(a.size(), secret.size());
  EXPECT_EQ(Bytes(a.view().begin(), a.view().end()), secret);
  a.data()[0] = 'A';
  EXPECT_EQ(a.view()[0], 'A');

  SecretBytes b(std::move(a));
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(as_text(b.view()), "A secret of some length");

  SecretBytes c(8);
  c = std::move(b);
  EXPECT_EQ(b.size(), 0u);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(as_text(c.view()), "A secret of some length");
  c = SecretBytes(as_bytes("short"));
  EXPECT_EQ(as_text(c.view()), "short");
}

}  // namespace
}  // namespace orchard::cloud
