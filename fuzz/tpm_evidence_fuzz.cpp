// The client's reader of a node's TPM evidence (tpm_quote.h): bytes from the node, decoded, parsed
// and checked against the attestation key named in the node's document. Every input is read as:
//   - evidence (decode_tpm_evidence): what decodes must encode to the input's own bytes;
//   - a TPMS_ATTEST (parse_tpm_quote), and so is the attest inside evidence that decodes: what
//     parses is marshalled again here from Part 2's field list and must be the input's bytes;
//   - evidence checked by verify_tpm_evidence with the fixed identity, measurement and document
//     digest below (the seeds of fuzz/corpus/tpm_evidence verify);
//   - the attest bytes (the evidence's, or the whole input) signed here with the fixed attestation
//     key, so that the checks after the signature see every mutation: the verdict must agree with
//     the quote's fields checked here (qualifying data, selection, PCR digest), both ways;
//   - an identity (base64 of a DER SubjectPublicKeyInfo) against fixed good evidence.
// Every refusal must be an AttestationError; anything else, or a disagreement, is a crash.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <string>
#include <utility>

#include "cloud/crypto.h"
#include "cloud/openssl_owner.h"
#include "cloud/signed_note.h"
#include "cloud/tpm_quote.h"
#include "orchard/error.h"

using namespace orchard;
using namespace orchard::cloud;

namespace {

using EcdsaSig = OpensslOwner<ECDSA_SIG, ECDSA_SIG_free>;

Bytes fuzz_secret(const std::string& label) { return sha256(as_bytes("orchard fuzz " + label)); }

// The attestation key: the P-256 scalar SHA-256("orchard fuzz tpm attestation key"), as
// make_seeds.py's TpmKey derives it. An RFC 5915 ECPrivateKey without its public key, which
// OpenSSL computes when it reads one.
Pkey attestation_key() {
  const Bytes scalar = fuzz_secret("tpm attestation key");
  Bytes der = {0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20};
  der.insert(der.end(), scalar.begin(), scalar.end());
  const uint8_t prime256v1[] = {0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  der.insert(der.end(), std::begin(prime256v1), std::end(prime256v1));
  const unsigned char* p = der.data();
  Pkey key(d2i_PrivateKey(EVP_PKEY_EC, nullptr, &p, static_cast<long>(der.size())));
  if (!key) std::abort();
  return key;
}

// ECDSA P-256 over SHA-256 of `attest` with the fixed key: (r, s), 32 bytes each.
std::pair<Bytes, Bytes> sign(EVP_PKEY* key, ByteView attest) {
  MdCtx ctx(EVP_MD_CTX_new());
  size_t size = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &size, nonnull(attest), attest.size()) != 1) {
    std::abort();
  }
  Bytes der(size);
  if (EVP_DigestSign(ctx.get(), der.data(), &size, nonnull(attest), attest.size()) != 1) std::abort();
  const unsigned char* p = der.data();
  EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(size)));
  if (!sig) std::abort();
  Bytes r(32), s(32);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), r.data(), 32) != 32 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), s.data(), 32) != 32) {
    std::abort();
  }
  return {r, s};
}

// TPMS_ATTEST of a quote, marshalled from TPM 2.0 Part 2 (10.12.12, 10.12.1, 10.11.1, 10.6.2).
Bytes marshal(const TpmAttest& a) {
  Bytes out;
  auto u16 = [&](uint64_t v) { put_u16(out, static_cast<uint16_t>(v)); };
  auto u32 = [&](uint64_t v) { u16(v >> 16), u16(v & 0xffff); };
  auto u64 = [&](uint64_t v) { u32(v >> 32), u32(v & 0xffffffff); };
  auto tpm2b = [&](const Bytes& b) { u16(b.size()), put_bytes(out, b); };
  u32(a.magic);
  u16(a.type);
  tpm2b(a.qualified_signer);
  tpm2b(a.extra_data);
  u64(a.clock);
  u32(a.reset_count);
  u32(a.restart_count);
  put_u8(out, a.safe ? 1 : 0);
  u64(a.firmware_version);
  u32(a.quote_selection.size());
  for (const TpmPcrSelection& bank : a.quote_selection) {
    u16(bank.hash);
    put_u8(out, static_cast<uint8_t>(bank.select.size()));
    put_bytes(out, bank.select);
  }
  tpm2b(a.quote_pcr_digest);
  return out;
}

struct Fixed {
  Pkey key = attestation_key();
  std::string identity;
  Bytes measurement = fuzz_secret("measurement");
  Bytes digest = fuzz_secret("document");
  Bytes good;  // evidence that verifies: a quote of PCR 23 over the two above

  Fixed() {
    unsigned char* der = nullptr;
    const int size = i2d_PUBKEY(key.get(), &der);
    if (size <= 0) std::abort();
    identity = base64_encode(ByteView(der, static_cast<size_t>(size)));
    OPENSSL_free(der);
    // A quote as a TPM fills it: a SHA-256 name as the signer, PCR 23 of the SHA-256 bank, the
    // digest of that PCR's value after one extension of a reset PCR.
    TpmAttest quote;
    quote.magic = kTpmGeneratedValue;
    quote.type = kTpmStAttestQuote;
    quote.qualified_signer = {0x00, 0x0b};
    put_bytes(quote.qualified_signer, fuzz_secret("AK name"));
    quote.extra_data = digest;
    quote.clock = 123456789;
    quote.safe = true;
    quote.quote_selection = {{kTpmAlgSha256, {0, 0, 0x80}}};
    Bytes pcr(32, 0);
    put_bytes(pcr, measurement);
    quote.quote_pcr_digest = sha256(sha256(pcr));
    const Bytes attest = marshal(quote);
    const auto [r, s] = sign(key.get(), attest);
    good = encode_tpm_evidence({kTpmDefaultPcr, attest, r, s});
  }
};

Fixed& fixed() {
  static Fixed f;
  return f;
}

std::optional<TpmAttest> check_quote(ByteView attest) {
  TpmAttest quote;
  try {
    quote = parse_tpm_quote(attest);
  } catch (const AttestationError&) {
    return std::nullopt;
  }
  if (marshal(quote) != Bytes(attest.begin(), attest.end())) std::abort();
  return quote;
}

bool verifies(std::string_view identity, ByteView evidence, int pcr) {
  try {
    verify_tpm_evidence(identity, fixed().measurement, fixed().digest, evidence, pcr);
    return true;
  } catch (const AttestationError&) {
    return false;
  }
}

// What verify_tpm_evidence must accept once the signature is good, checked from the fields.
bool acceptable(const std::optional<TpmAttest>& quote, int pcr) {
  if (!quote || quote->extra_data != fixed().digest || quote->quote_selection.size() != 1) return false;
  const TpmPcrSelection& bank = quote->quote_selection[0];
  if (bank.hash != kTpmAlgSha256 || bank.select.size() <= static_cast<size_t>(pcr / 8)) return false;
  for (size_t i = 0; i < bank.select.size(); ++i)
    if (bank.select[i] != (i == static_cast<size_t>(pcr / 8) ? 1u << (pcr % 8) : 0u)) return false;
  Bytes zeros_then_measurement(32, 0);
  put_bytes(zeros_then_measurement, fixed().measurement);
  return quote->quote_pcr_digest == sha256(sha256(zeros_then_measurement));
}

void resigned(ByteView attest, int pcr) {
  if (attest.empty() || attest.size() > kMaxTpmAttestSize) return;
  const auto [r, s] = sign(fixed().key.get(), attest);
  const Bytes evidence = encode_tpm_evidence({pcr, Bytes(attest.begin(), attest.end()), r, s});
  if (verifies(fixed().identity, evidence, pcr) != acceptable(check_quote(attest), pcr)) std::abort();
}

}  // namespace

// The fixed evidence must verify, or every verdict below would mean nothing.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!verifies(fixed().identity, fixed().good, kTpmDefaultPcr)) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);
  std::optional<TpmEvidence> evidence;
  try {
    evidence = decode_tpm_evidence(input);
  } catch (const AttestationError&) {
  }
  if (evidence) {
    try {
      if (encode_tpm_evidence(*evidence) != Bytes(input.begin(), input.end())) std::abort();
    } catch (const Error&) {
      std::abort();  // what decoded must encode
    }
    (void)check_quote(evidence->attest);
  }
  (void)check_quote(input);

  // As evidence under the fixed identity: only this key's signatures verify.
  if (verifies(fixed().identity, input, kTpmDefaultPcr) && !acceptable(check_quote(evidence->attest), kTpmDefaultPcr))
    std::abort();

  // Signed here, so that what follows the signature check is reached.
  if (evidence) resigned(evidence->attest, evidence->pcr);
  else resigned(input, kTpmDefaultPcr);

  // As an identity.
  (void)verifies(std::string_view(reinterpret_cast<const char*>(data), size), fixed().good, kTpmDefaultPcr);
  return 0;
}
