#include "cloud/blind_rsa.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/openssl_owner.h"

namespace orchard::cloud::blind_rsa {
namespace {

constexpr size_t kMinModulusBits = 2048;   // below it RSA is no longer a safe issuer key
constexpr size_t kMaxModulusBits = 16384;  // OpenSSL's OPENSSL_RSA_MAX_MODULUS_BITS
constexpr int kMaxExponentBits = 64;       // OpenSSL refuses larger e for moduli over 3072 bits
constexpr size_t kMaxPemSize = 32768;      // a PKCS#8 PEM of the largest modulus is about 13 KB

[[noreturn]] void openssl_fail(const char* what) { cloud::openssl_fail("blind RSA", what); }

Bytes sha384(ByteView data) {
  Bytes out(kHashSize);
  unsigned int n = 0;
  if (EVP_Digest(nonnull(data), data.size(), out.data(), &n, EVP_sha384(), nullptr) != 1 || n != kHashSize)
    openssl_fail("SHA-384");
  return out;
}

// MGF1 (RFC 8017 §B.2.1) with SHA-384: Hash(seed || C) for C = 0, 1, ... as 4 big-endian bytes.
Bytes mgf1(ByteView seed, size_t length) {
  Bytes block(seed.begin(), seed.end());
  block.resize(seed.size() + 4);
  Bytes out;
  out.reserve(length + kHashSize);
  for (uint32_t counter = 0; out.size() < length; ++counter) {
    for (int i = 0; i < 4; ++i) block[seed.size() + i] = static_cast<uint8_t>(counter >> (24 - 8 * i));
    const Bytes t = sha384(block);
    out.insert(out.end(), t.begin(), t.end());
  }
  out.resize(length);
  return out;
}

BnCtx new_ctx() {
  // The secure heap where the process set one up, the ordinary heap otherwise.
  BnCtx ctx(BN_CTX_secure_new());
  if (!ctx) openssl_fail("BN_CTX_new");
  return ctx;
}

Bn new_bn() {
  Bn bn(BN_new());
  if (!bn) openssl_fail("BN_new");
  return bn;
}

// OS2IP (RFC 8017 §4.2).
Bn to_bn(ByteView b) {
  Bn bn(BN_bin2bn(nonnull(b), static_cast<int>(b.size()), nullptr));
  if (!bn) openssl_fail("BN_bin2bn");
  return bn;
}

// The same for a secret: in the secure heap where the process set one up, cleared when freed.
Bn to_secret_bn(ByteView b) {
  Bn bn(BN_secure_new());
  if (!bn || !BN_bin2bn(nonnull(b), static_cast<int>(b.size()), bn.get())) openssl_fail("BN_bin2bn");
  return bn;
}

// I2OSP (RFC 8017 §4.1) into exactly out.size() bytes.
void put_bn(const BIGNUM* bn, uint8_t* out, size_t size) {
  if (BN_bn2binpad(bn, out, static_cast<int>(size)) != static_cast<int>(size)) openssl_fail("BN_bn2binpad");
}
Bytes from_bn(const BIGNUM* bn, size_t size) {
  Bytes out(size);
  put_bn(bn, out.data(), size);
  return out;
}

Bn get_bn_param(const EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) openssl_fail(name);
  return Bn(raw);
}

// Inputs that came as bytes are sized before they are read (BN_bin2bn takes an int length).
void check_size(ByteView b, const char* what) {
  if (b.size() > kMaxModulusBits / 8) fail("blind RSA: ", what, " of ", b.size(), " bytes is longer than any modulus");
}

}  // namespace

struct PublicKey::Impl {
  Bn n;
  Bn e;
  Pkey pkey;  // public only: OpenSSL verifies with it, and never holds d
  size_t bits = 0;
  size_t size = 0;
};

struct PrivateKey::Impl {
  Pkey pkey;  // RSA: n, e, d and, unless made from components, the CRT factors
  bool crt = false;
};

namespace {

// An RSA key from OSSL_PARAMs built from BIGNUMs (a secure one stays in the secure heap).
Pkey rsa_from_params(std::initializer_list<std::pair<const char*, const BIGNUM*>> values, int selection) {
  ParamBld bld(OSSL_PARAM_BLD_new());
  if (!bld) openssl_fail("OSSL_PARAM_BLD_new");
  for (const auto& [name, bn] : values)
    if (OSSL_PARAM_BLD_push_BN(bld.get(), name, bn) != 1) openssl_fail("RSA key parameters");
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) openssl_fail("RSA key parameters");
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (!ctx) openssl_fail("EVP_PKEY_CTX_new_from_name(RSA)");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1 || EVP_PKEY_fromdata(ctx.get(), &raw, selection, params.get()) != 1)
    openssl_fail("RSA key import");
  return Pkey(raw);
}

// PEM_read_bio_PrivateKey's password callback: an encrypted key is refused, never prompted for.
int no_password(char*, int, int, void*) { return -1; }

}  // namespace

// The operations' way into the keys' innards, which the header does not show.
struct Access {
  static const PublicKey::Impl& of(const PublicKey& key) { return *key.impl_; }
  static const PrivateKey::Impl& of(const PrivateKey& key) { return *key.impl_; }

  static PublicKey make_public(Bn n, Bn e) {
    const size_t bits = static_cast<size_t>(BN_num_bits(n.get()));
    if (!BN_is_odd(n.get())) fail("blind RSA: modulus n is even");
    if (bits < kMinModulusBits) fail("blind RSA: modulus n has ", bits, " bits, under ", kMinModulusBits);
    if (bits > kMaxModulusBits) fail("blind RSA: modulus n has ", bits, " bits, over ", kMaxModulusBits);
    if (!BN_is_odd(e.get()) || BN_is_one(e.get()) || BN_cmp(e.get(), n.get()) >= 0)
      fail("blind RSA: exponent e must be odd, over 1 and below n");
    if (BN_num_bits(e.get()) > kMaxExponentBits)
      fail("blind RSA: exponent e has ", BN_num_bits(e.get()), " bits, over ", kMaxExponentBits);

    Pkey pkey = rsa_from_params({{OSSL_PKEY_PARAM_RSA_N, n.get()}, {OSSL_PKEY_PARAM_RSA_E, e.get()}},
                                EVP_PKEY_PUBLIC_KEY);
    auto impl = std::make_shared<PublicKey::Impl>();
    impl->n = std::move(n);
    impl->e = std::move(e);
    impl->pkey = std::move(pkey);
    impl->bits = bits;
    impl->size = (bits + 7) / 8;
    return PublicKey(std::move(impl));
  }

  // An OpenSSL RSA private key, its n and e checked as PublicKey::from_components does.
  static PrivateKey make_private(Pkey pkey) {
    if (!EVP_PKEY_is_a(pkey.get(), "RSA")) fail("blind RSA: not an RSA key (rsaEncryption)");
    PublicKey pub = make_public(get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N),
                                get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_E));
    auto impl = std::make_unique<PrivateKey::Impl>();
    // Asked without copying a factor out: a null buffer gets only its size.
    OSSL_PARAM query[] = {OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_FACTOR1, nullptr, 0), OSSL_PARAM_END};
    impl->crt = EVP_PKEY_get_params(pkey.get(), query) == 1 && OSSL_PARAM_modified(query) && query[0].return_size > 0;
    ERR_clear_error();
    impl->pkey = std::move(pkey);
    return PrivateKey(std::move(pub), std::move(impl));
  }
};

size_t salt_size(Variant variant) {
  switch (variant) {
    case Variant::sha384_pss_randomized:
    case Variant::sha384_pss_deterministic: return kHashSize;
    case Variant::sha384_psszero_randomized:
    case Variant::sha384_psszero_deterministic: return 0;
  }
  fail("blind RSA: unknown variant ", static_cast<int>(variant));
}

bool randomized(Variant variant) {
  switch (variant) {
    case Variant::sha384_pss_randomized:
    case Variant::sha384_psszero_randomized: return true;
    case Variant::sha384_pss_deterministic:
    case Variant::sha384_psszero_deterministic: return false;
  }
  fail("blind RSA: unknown variant ", static_cast<int>(variant));
}

std::string_view variant_name(Variant variant) {
  switch (variant) {
    case Variant::sha384_pss_randomized: return "RSABSSA-SHA384-PSS-Randomized";
    case Variant::sha384_psszero_randomized: return "RSABSSA-SHA384-PSSZERO-Randomized";
    case Variant::sha384_pss_deterministic: return "RSABSSA-SHA384-PSS-Deterministic";
    case Variant::sha384_psszero_deterministic: return "RSABSSA-SHA384-PSSZERO-Deterministic";
  }
  fail("blind RSA: unknown variant ", static_cast<int>(variant));
}

std::optional<Variant> parse_variant(std::string_view name) {
  for (Variant v : {Variant::sha384_pss_randomized, Variant::sha384_psszero_randomized,
                    Variant::sha384_pss_deterministic, Variant::sha384_psszero_deterministic})
    if (variant_name(v) == name) return v;
  return std::nullopt;
}

PublicKey PublicKey::from_components(ByteView n, ByteView e) {
  check_size(n, "modulus n");
  check_size(e, "exponent e");
  return Access::make_public(to_bn(n), to_bn(e));
}

size_t PublicKey::modulus_bits() const { return impl_->bits; }
size_t PublicKey::modulus_size() const { return impl_->size; }
Bytes PublicKey::modulus() const { return from_bn(impl_->n.get(), impl_->size); }
Bytes PublicKey::exponent() const {
  return from_bn(impl_->e.get(), static_cast<size_t>(BN_num_bytes(impl_->e.get())));
}

PrivateKey::PrivateKey(PublicKey public_key, std::unique_ptr<Impl> impl)
    : public_key_(std::move(public_key)), impl_(std::move(impl)) {}
PrivateKey::PrivateKey(PrivateKey&&) noexcept = default;
PrivateKey& PrivateKey::operator=(PrivateKey&&) noexcept = default;
PrivateKey::~PrivateKey() = default;

PrivateKey PrivateKey::generate(size_t bits) {
  if (bits != 2048 && bits != 3072 && bits != 4096)
    fail("blind RSA: key size ", bits, " bits is not 2048, 3072 or 4096");
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (!ctx) openssl_fail("EVP_PKEY_CTX_new_from_name(RSA)");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), static_cast<int>(bits)) <= 0 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1)
    openssl_fail("RSA key generation");
  return Access::make_private(Pkey(raw));
}

PrivateKey PrivateKey::from_components(ByteView n, ByteView e, ByteView d) {
  check_size(n, "modulus n");
  check_size(e, "exponent e");
  check_size(d, "private exponent d");
  const PublicKey pub = PublicKey::from_components(n, e);
  const Bn d_bn = to_secret_bn(d);
  if (BN_is_zero(d_bn.get()) || BN_cmp(d_bn.get(), Access::of(pub).n.get()) >= 0)
    fail("blind RSA: private exponent d must be over 0 and below n");
  // No CRT factors: OpenSSL's private operation takes d itself (RFC 8017 §5.1.2's first form).
  return Access::make_private(rsa_from_params({{OSSL_PKEY_PARAM_RSA_N, Access::of(pub).n.get()},
                                               {OSSL_PKEY_PARAM_RSA_E, Access::of(pub).e.get()},
                                               {OSSL_PKEY_PARAM_RSA_D, d_bn.get()}},
                                              EVP_PKEY_KEYPAIR));
}

PrivateKey PrivateKey::from_pem(std::string_view pem) {
  if (pem.empty()) fail("blind RSA: private key PEM is empty");
  if (pem.size() > kMaxPemSize) fail("blind RSA: private key PEM of ", pem.size(), " bytes is longer than any RSA key's");
  OpensslOwner<BIO, BIO_free> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) openssl_fail("BIO_new_mem_buf");
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr);
  if (!raw) {
    ERR_clear_error();  // its reasons could name what was read
    fail("blind RSA: not an unencrypted PEM private key");
  }
  return Access::make_private(Pkey(raw));
}

SecretBytes PrivateKey::to_pem() const {
  if (!impl_->crt) fail("blind RSA: a key made from n, e and d alone has no PKCS#8 form (no CRT factors)");
  OpensslOwner<BIO, BIO_free> bio(BIO_new(BIO_s_secmem()));
  if (!bio) openssl_fail("BIO_new");
  if (PEM_write_bio_PrivateKey(bio.get(), impl_->pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    openssl_fail("PEM_write_bio_PrivateKey");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  if (size <= 0 || !data) openssl_fail("BIO_get_mem_data");
  return SecretBytes(ByteView(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(size)));
}

bool PrivateKey::has_crt_factors() const { return impl_->crt; }

Bytes prepare(ByteView msg, Variant variant, std::optional<ByteView> fixed_prefix) {
  if (!randomized(variant)) {
    if (fixed_prefix && !fixed_prefix->empty())
      fail("blind RSA: ", variant_name(variant), " takes no message prefix, got ", fixed_prefix->size(), " bytes");
    return Bytes(msg.begin(), msg.end());
  }
  Bytes out;
  if (fixed_prefix) {
    if (fixed_prefix->size() != kRandomPrefixSize)
      fail("blind RSA: message prefix is ", fixed_prefix->size(), " bytes, expected ", kRandomPrefixSize);
    out.assign(fixed_prefix->begin(), fixed_prefix->end());
  } else {
    out = random_bytes(kRandomPrefixSize);
  }
  out.insert(out.end(), msg.begin(), msg.end());
  return out;
}

Bytes emsa_pss_encode(ByteView msg, size_t em_bits, ByteView salt) {
  const size_t em_len = (em_bits + 7) / 8;
  if (em_len < kHashSize + salt.size() + 2)  // step 3
    fail("blind RSA: EMSA-PSS encoding error: ", em_bits, " bits cannot hold a ", salt.size(), "-byte salt");
  const Bytes m_hash = sha384(msg);  // step 2
  Bytes m_prime(8, 0);               // step 5: 8 zero bytes || mHash || salt
  m_prime.insert(m_prime.end(), m_hash.begin(), m_hash.end());
  m_prime.insert(m_prime.end(), salt.begin(), salt.end());
  const Bytes h = sha384(m_prime);  // step 6
  // Steps 7-8: DB = PS (zeros) || 0x01 || salt.
  const size_t db_len = em_len - kHashSize - 1;
  Bytes em(db_len, 0);
  em[db_len - salt.size() - 1] = 0x01;
  std::copy(salt.begin(), salt.end(), em.end() - static_cast<std::ptrdiff_t>(salt.size()));
  const Bytes db_mask = mgf1(h, db_len);  // steps 9-10
  for (size_t i = 0; i < db_len; ++i) em[i] ^= db_mask[i];
  // Step 11: the top 8 * emLen - emBits bits are zeroed, so that EM read as an integer is below n.
  em[0] &= static_cast<uint8_t>(0xff >> (8 * em_len - em_bits));
  em.insert(em.end(), h.begin(), h.end());  // step 12: maskedDB || H || 0xbc
  em.push_back(0xbc);
  return em;
}

Blinded blind(const PublicKey& key, ByteView prepared_msg, Variant variant, const BlindFixed* fixed) {
  const PublicKey::Impl& k = Access::of(key);
  const BIGNUM* n = k.n.get();
  Bytes salt;
  if (fixed && !fixed->salt.empty())
    salt.assign(fixed->salt.begin(), fixed->salt.end());
  else
    salt = random_bytes(salt_size(variant));
  if (salt.size() != salt_size(variant))
    fail("blind RSA: salt is ", salt.size(), " bytes, ", variant_name(variant), " takes ", salt_size(variant));
  if (fixed && !fixed->r.empty() && !fixed->inv.empty()) fail("blind RSA: fixed r and inv given together");

  const Bytes encoded = emsa_pss_encode(prepared_msg, k.bits - 1, salt);
  BnCtx ctx = new_ctx();
  const Bn m = to_bn(encoded);
  // Step 4: an m sharing a factor with n would be the factorization of n, not a message.
  Bn gcd = new_bn();
  if (BN_gcd(gcd.get(), m.get(), n, ctx.get()) != 1) openssl_fail("BN_gcd");
  if (!BN_is_one(gcd.get())) fail("blind RSA: encoded message is not invertible mod n");

  // Steps 5-6: r uniform in [1, n) and its inverse; a fixed one of either gives the other.
  auto in_range = [n](const BIGNUM* x) { return !BN_is_zero(x) && BN_cmp(x, n) < 0; };
  auto inverse = [&](const BIGNUM* x, const char* what) {
    Bn out = new_bn();
    if (!BN_mod_inverse(out.get(), x, n, ctx.get())) {
      ERR_clear_error();
      fail("blind RSA: blinding error: ", what, " is not invertible mod n");
    }
    return out;
  };
  Bn r;
  Bn inv;
  if (fixed && !fixed->r.empty()) {
    check_size(fixed->r, "fixed r");
    r = to_bn(fixed->r);
    if (!in_range(r.get())) fail("blind RSA: fixed r is not in [1, n)");
    BN_set_flags(r.get(), BN_FLG_CONSTTIME);
    inv = inverse(r.get(), "fixed r");
  } else if (fixed && !fixed->inv.empty()) {
    check_size(fixed->inv, "fixed inv");
    inv = to_bn(fixed->inv);
    if (!in_range(inv.get())) fail("blind RSA: fixed inv is not in [1, n)");
    BN_set_flags(inv.get(), BN_FLG_CONSTTIME);
    r = inverse(inv.get(), "fixed inv");
    BN_set_flags(r.get(), BN_FLG_CONSTTIME);
  } else {
    r = new_bn();
    do {
      if (BN_priv_rand_range(r.get(), n) != 1) openssl_fail("BN_priv_rand_range");
    } while (BN_is_zero(r.get()));
    BN_set_flags(r.get(), BN_FLG_CONSTTIME);  // selects OpenSSL's constant-time inverse
    inv = inverse(r.get(), "r");  // fails only for an r sharing a factor with n
  }

  // Steps 7-9: z = m * r^e mod n. The exponent is public, r is not: the constant-time ladder.
  Bn x = new_bn();
  Bn z = new_bn();
  if (BN_mod_exp_mont_consttime(x.get(), r.get(), k.e.get(), n, ctx.get(), nullptr) != 1)
    openssl_fail("r^e mod n");
  if (BN_mod_mul(z.get(), m.get(), x.get(), n, ctx.get()) != 1) openssl_fail("m * r^e mod n");

  Blinded out{from_bn(z.get(), k.size), SecretBytes(k.size)};
  put_bn(inv.get(), out.inv.data(), k.size);
  return out;
}

Bytes blind_sign(const PrivateKey& key, ByteView blinded_msg) {
  const PublicKey::Impl& k = Access::of(key.public_key());
  const BIGNUM* n = k.n.get();
  if (blinded_msg.size() != k.size)
    fail("blind RSA: blinded message is ", blinded_msg.size(), " bytes, expected ", k.size);
  const Bn m = to_bn(blinded_msg);
  // RSASP1 step 1 (RFC 8017 §5.2.1): the representative must be below n.
  if (BN_cmp(m.get(), n) >= 0) fail("blind RSA: blinded message is not below the modulus n");
  // RSASP1 as OpenSSL's raw private operation: CRT where the key has its factors, d otherwise;
  // constant time, blinded by OpenSSL. One context per call: calls may share the key.
  PkeyCtx pctx(EVP_PKEY_CTX_new_from_pkey(nullptr, Access::of(key).pkey.get(), nullptr));
  if (!pctx) openssl_fail("EVP_PKEY_CTX_new_from_pkey");
  Bytes sig(k.size);
  size_t sig_size = sig.size();
  if (EVP_PKEY_decrypt_init(pctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(pctx.get(), RSA_NO_PADDING) <= 0 ||
      EVP_PKEY_decrypt(pctx.get(), sig.data(), &sig_size, blinded_msg.data(), blinded_msg.size()) != 1)
    openssl_fail("RSA private operation");
  if (sig_size != k.size) fail("blind RSA: RSA private operation gave ", sig_size, " bytes, expected ", k.size);
  // RFC 9474 §4.3 steps 4-5: a faulty s (a glitch, a d that does not match e) can reveal d to the
  // client who receives it; it is checked against m first.
  const Bn s = to_bn(sig);
  BnCtx ctx = new_ctx();
  Bn check = new_bn();
  if (BN_mod_exp_mont(check.get(), s.get(), k.e.get(), n, ctx.get(), nullptr) != 1) openssl_fail("s^e mod n");
  if (BN_cmp(check.get(), m.get()) != 0) fail("blind RSA: signing failure: s^e mod n is not the blinded message");
  return sig;
}

Bytes finalize(const PublicKey& key, ByteView prepared_msg, ByteView blind_sig, ByteView inv, Variant variant) {
  const PublicKey::Impl& k = Access::of(key);
  const BIGNUM* n = k.n.get();
  if (blind_sig.size() != k.size)
    fail("blind RSA: blind signature is ", blind_sig.size(), " bytes, expected ", k.size);
  if (inv.size() != k.size) fail("blind RSA: inv is ", inv.size(), " bytes, expected ", k.size);
  const Bn z = to_bn(blind_sig);
  Bn r_inv = to_bn(inv);
  if (BN_cmp(z.get(), n) >= 0) fail("blind RSA: blind signature is not below the modulus n");
  if (BN_cmp(r_inv.get(), n) >= 0) fail("blind RSA: inv is not below the modulus n");
  BN_set_flags(r_inv.get(), BN_FLG_CONSTTIME);
  BnCtx ctx = new_ctx();
  Bn s = new_bn();
  if (BN_mod_mul(s.get(), z.get(), r_inv.get(), n, ctx.get()) != 1) openssl_fail("z * inv mod n");
  Bytes sig = from_bn(s.get(), k.size);
  if (!verify(key, prepared_msg, sig, variant))
    fail("blind RSA: finalized signature does not verify (", variant_name(variant),
         "): a wrong blind signature, inv or key");
  return sig;
}

bool verify(const PublicKey& key, ByteView prepared_msg, ByteView sig, Variant variant) {
  const PublicKey::Impl& k = Access::of(key);
  // RFC 8017 §8.1.2 step 1; OpenSSL would read a shorter one as if left-padded with zeros.
  if (sig.size() != k.size) return false;
  MdCtx md(EVP_MD_CTX_new());
  if (!md) openssl_fail("EVP_MD_CTX_new");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by md
  if (EVP_DigestVerifyInit(md.get(), &pctx, EVP_sha384(), nullptr, k.pkey.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha384()) <= 0 ||
      // An exact length: OpenSSL then refuses a signature made with any other salt size.
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, static_cast<int>(salt_size(variant))) <= 0)
    openssl_fail("RSA-PSS verify setup");
  const int rc = EVP_DigestVerify(md.get(), sig.data(), sig.size(), nonnull(prepared_msg), prepared_msg.size());
  ERR_clear_error();  // a refused signature leaves its reason on the queue
  return rc == 1;
}

}  // namespace orchard::cloud::blind_rsa
