#include "cloud/tpm_quote.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <string>
#include <utility>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/openssl_owner.h"
#include "cloud/signed_note.h"

namespace orchard::cloud {
namespace {

// The TPM's own maxima (Part 2): TPM2B_NAME and TPM2B_DATA hold at most a TPMT_HA (a u16
// algorithm and a SHA-512 digest), TPM2B_DIGEST a TPMU_HA. The selection limits are wider than any
// TPM's (a few banks of 24 PCRs) and only bound what is read.
constexpr size_t kMaxNameSize = 2 + 64;
constexpr size_t kMaxDataSize = 2 + 64;
constexpr size_t kMaxDigestSize = 64;
constexpr uint32_t kMaxPcrBanks = 16;
constexpr size_t kMaxPcrSelectSize = 32;
constexpr int kPcrCount = 24;

using EcdsaSig = OpensslOwner<ECDSA_SIG, ECDSA_SIG_free>;

[[noreturn]] void refuse(std::string_view what) { throw AttestationError(std::string(what)); }

// A cursor over bytes from outside: each read checks the bytes are there and names the field.
class Reader {
 public:
  Reader(ByteView data, const char* component) : data_(data), component_(component) {}

  uint8_t u8(const char* field) { return take(1, field)[0]; }
  uint16_t u16(const char* field) {
    const ByteView b = take(2, field);
    return static_cast<uint16_t>(b[0] << 8 | b[1]);
  }
  uint32_t u32(const char* field) {
    const ByteView b = take(4, field);
    return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
  }
  uint64_t u64(const char* field) {
    const uint64_t high = u32(field);
    return high << 32 | u32(field);
  }
  ByteView take(size_t n, const char* field) {
    if (data_.size() - pos_ < n) fail_at("truncated in ", field);
    const ByteView b = data_.subspan(pos_, n);
    pos_ += n;
    return b;
  }
  // A TPM2B: u16 size, then that many bytes, at most `max` (and at least `min`).
  Bytes sized(size_t min, size_t max, const char* field) {
    const uint16_t size = u16(field);
    if (size > max || size < min)
      fail_at("malformed ", field, ": ", size, " bytes (", min, "..", max, " allowed)");
    const ByteView b = take(size, field);
    return Bytes(b.begin(), b.end());
  }
  void end(const char* what) {
    if (pos_ != data_.size()) fail_at(data_.size() - pos_, " bytes after the ", what);
  }

  template <typename... Parts>
  [[noreturn]] void fail_at(Parts&&... parts) {
    throw AttestationError(str_cat(component_, ": ", std::forward<Parts>(parts)...));
  }

 private:
  ByteView data_;
  size_t pos_ = 0;
  const char* component_;
};

// The identity: base64 of a DER SubjectPublicKeyInfo holding a P-256 key, and nothing else.
Pkey identity_key(std::string_view identity) {
  Bytes der;
  try {
    der = base64_decode(identity);
  } catch (const Error&) {
    refuse("TPM quote: the identity is not base64");
  }
  const unsigned char* p = der.data();
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key || p != der.data() + der.size()) refuse("TPM quote: the identity is not a DER SubjectPublicKeyInfo");
  char group[64] = {};
  size_t group_size = 0;
  if (!EVP_PKEY_is_a(key.get(), "EC") ||
      !EVP_PKEY_get_utf8_string_param(key.get(), "group", group, sizeof group, &group_size) ||
      std::string_view(group) != "prime256v1")
    refuse("TPM quote: the identity is not a P-256 public key");
  return key;
}

// r and s as the DER ECDSA-Sig-Value OpenSSL's verifier takes.
Bytes der_signature(ByteView r, ByteView s) {
  EcdsaSig sig(ECDSA_SIG_new());
  if (!sig) openssl_fail("TPM quote", "ECDSA_SIG_new");
  BIGNUM* br = BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr);
  BIGNUM* bs = BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr);
  if (!br || !bs || !ECDSA_SIG_set0(sig.get(), br, bs)) {
    BN_free(br);
    BN_free(bs);
    openssl_fail("TPM quote", "ECDSA_SIG_set0");
  }
  const int size = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (size <= 0) openssl_fail("TPM quote", "i2d_ECDSA_SIG");
  Bytes der(static_cast<size_t>(size));
  unsigned char* out = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &out) != size) openssl_fail("TPM quote", "i2d_ECDSA_SIG");
  return der;
}

bool signature_verifies(EVP_PKEY* key, ByteView message, ByteView der) {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) openssl_fail("TPM quote", "EVP_MD_CTX_new");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1)
    openssl_fail("TPM quote", "EVP_DigestVerifyInit");
  const int ok = EVP_DigestVerify(ctx.get(), der.data(), der.size(), nonnull(message), message.size());
  ERR_clear_error();  // a bad signature leaves its reason on the queue; it is not an error here
  return ok == 1;
}

bool selects_exactly(const std::vector<TpmPcrSelection>& selection, int pcr) {
  if (selection.size() != 1 || selection[0].hash != kTpmAlgSha256) return false;
  const Bytes& bits = selection[0].select;
  for (size_t i = 0; i < bits.size(); ++i) {
    const uint8_t want = static_cast<size_t>(pcr / 8) == i ? static_cast<uint8_t>(1u << (pcr % 8)) : 0;
    if (bits[i] != want) return false;
  }
  return static_cast<size_t>(pcr / 8) < bits.size();
}

}  // namespace

Bytes encode_tpm_evidence(const TpmEvidence& e) {
  if (e.pcr < 0 || e.pcr >= kPcrCount) fail("TPM evidence: PCR index ", e.pcr, " is not 0..23");
  if (e.attest.empty() || e.attest.size() > kMaxTpmAttestSize)
    fail("TPM evidence: attest of ", e.attest.size(), " bytes (1..", kMaxTpmAttestSize, " allowed)");
  for (const Bytes* n : {&e.r, &e.s})
    if (n->empty() || n->size() > kTpmEccParameterSize)
      fail("TPM evidence: signature integer of ", n->size(), " bytes (1..32 allowed)");
  Bytes out;
  put_u8(out, kTpmEvidenceVersion);
  put_u8(out, static_cast<uint8_t>(e.pcr));
  put_u16(out, static_cast<uint16_t>(e.attest.size()));
  put_bytes(out, e.attest);
  put_u16(out, kTpmAlgEcdsa);
  put_u16(out, kTpmAlgSha256);
  put_u16(out, static_cast<uint16_t>(e.r.size()));
  put_bytes(out, e.r);
  put_u16(out, static_cast<uint16_t>(e.s.size()));
  put_bytes(out, e.s);
  return out;
}

TpmEvidence decode_tpm_evidence(ByteView evidence) {
  Reader in(evidence, "TPM evidence");
  const uint8_t version = in.u8("version");
  if (version != kTpmEvidenceVersion) in.fail_at("unknown version ", int{version});
  TpmEvidence e;
  e.pcr = in.u8("PCR index");
  if (e.pcr >= kPcrCount) in.fail_at("PCR index ", e.pcr, " is not 0..23");
  e.attest = in.sized(1, kMaxTpmAttestSize, "attest");
  const uint16_t sig_alg = in.u16("signature algorithm");
  if (sig_alg != kTpmAlgEcdsa) in.fail_at("signature algorithm 0x", to_hex(Bytes{uint8_t(sig_alg >> 8), uint8_t(sig_alg)}), " is not ECDSA");
  const uint16_t hash = in.u16("signature hash");
  if (hash != kTpmAlgSha256) in.fail_at("signature hash 0x", to_hex(Bytes{uint8_t(hash >> 8), uint8_t(hash)}), " is not SHA-256");
  e.r = in.sized(1, kTpmEccParameterSize, "signature r");
  e.s = in.sized(1, kTpmEccParameterSize, "signature s");
  in.end("signature");
  return e;
}

TpmAttest parse_tpm_quote(ByteView attest) {
  Reader in(attest, "TPM quote");
  TpmAttest a;
  a.magic = in.u32("magic");
  a.type = in.u16("type");
  if (a.magic != kTpmGeneratedValue || a.type != kTpmStAttestQuote) refuse("TPM quote: not a quote (magic/type)");
  a.qualified_signer = in.sized(0, kMaxNameSize, "qualifiedSigner");
  a.extra_data = in.sized(0, kMaxDataSize, "extraData");
  a.clock = in.u64("clockInfo");
  a.reset_count = in.u32("clockInfo");
  a.restart_count = in.u32("clockInfo");
  const uint8_t safe = in.u8("clockInfo");
  if (safe > 1) in.fail_at("malformed clockInfo: safe is ", int{safe});
  a.safe = safe == 1;
  a.firmware_version = in.u64("firmwareVersion");
  const uint32_t banks = in.u32("pcrSelect");
  if (banks > kMaxPcrBanks) in.fail_at("malformed pcrSelect: ", banks, " banks");
  for (uint32_t i = 0; i < banks; ++i) {
    TpmPcrSelection bank;
    bank.hash = in.u16("pcrSelect");
    const uint8_t size = in.u8("pcrSelect");
    if (size > kMaxPcrSelectSize) in.fail_at("malformed pcrSelect: a bitmap of ", int{size}, " bytes");
    const ByteView bits = in.take(size, "pcrSelect");
    bank.select.assign(bits.begin(), bits.end());
    a.quote_selection.push_back(std::move(bank));
  }
  a.quote_pcr_digest = in.sized(0, kMaxDigestSize, "pcrDigest");
  in.end("quote");
  return a;
}

Bytes expected_pcr_value(ByteView measurement) {
  Bytes in(kSha256Size, 0);
  put_bytes(in, measurement);
  return sha256(in);
}

void verify_tpm_evidence(std::string_view identity, ByteView measurement, ByteView document_digest, ByteView evidence,
                         int pcr) {
  const TpmEvidence e = decode_tpm_evidence(evidence);
  if (e.pcr != pcr) throw AttestationError(str_cat("TPM evidence: quotes PCR ", e.pcr, ", expected PCR ", pcr));
  const Pkey key = identity_key(identity);
  if (!signature_verifies(key.get(), e.attest, der_signature(e.r, e.s)))
    refuse("TPM quote: signature does not verify with the attestation key");
  const TpmAttest quote = parse_tpm_quote(e.attest);
  if (!std::equal(quote.extra_data.begin(), quote.extra_data.end(), document_digest.begin(), document_digest.end()))
    refuse("TPM quote: qualifying data is not this document's digest");
  if (!selects_exactly(quote.quote_selection, pcr))
    throw AttestationError(str_cat("TPM quote: selects PCRs other than sha256:", pcr));
  // The quote's digest is the hash (the signing scheme's, SHA-256) of the selected PCRs' values
  // concatenated in selection order: here one value.
  if (quote.quote_pcr_digest != sha256(expected_pcr_value(measurement)))
    refuse("TPM quote: PCR digest does not match the measurement");
}

}  // namespace orchard::cloud
