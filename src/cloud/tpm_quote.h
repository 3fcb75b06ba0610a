// The client's side of the TPM 2.0 attester (tpm_attester.h): the evidence a node's TPM produces,
// and its check, with OpenSSL and a parser of the TPM's structures of its own, without tpm2-tss,
// so that a client verifies quotes on a machine that has no TPM and no TPM library.
//
// What is checked (TPM 2.0 Library, Part 2 "Structures": TPMS_ATTEST, TPMS_QUOTE_INFO,
// TPMT_SIGNATURE): the quote is signed (ECDSA P-256 over SHA-256 of the attest bytes) by the
// attestation key the identity names; it is a TPM-generated quote (magic and type); its qualifying
// data is the digest of the document the node wrote (so the quote was made for this document, and
// is as fresh as the document's own issue and expiry times); it selects exactly the SHA-256 bank's
// PCR the verifier expects; and that PCR held exactly the measurement extended once into a reset
// PCR. What this proves, and what it cannot, is in tpm_attester.h and docs/cloud.md ("Attesters").
//
// Evidence (what TpmAttester::attest returns; every integer big-endian, nothing after the end):
//   u8   version = 1
//   u8   PCR index (0..23): the PCR the node extended. Not signed: only a statement of what the
//        quote covers; the signed selection inside the attest bytes is what the verifier checks,
//        and both must name the PCR the verifier expects.
//   TPM2B_ATTEST    as the TPM returned it: u16 size (1..kMaxTpmAttestSize), then the marshalled
//                   TPMS_ATTEST, the bytes the signature covers
//   TPMT_SIGNATURE  as the TPM marshals it: u16 sigAlg = TPM_ALG_ECDSA (0x0018),
//                   u16 hash = TPM_ALG_SHA256 (0x000b), u16 size || r, u16 size || s
//                   (r and s 1..32 bytes each)
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "cloud/attester.h"
#include "cloud/bytes.h"

namespace orchard::cloud {

constexpr uint8_t kTpmEvidenceVersion = 1;
constexpr int kTpmDefaultPcr = 23;                  // resettable at locality 0, like 16 (the debug PCR)
constexpr uint32_t kTpmGeneratedValue = 0xff544347;  // TPM_GENERATED_VALUE, "\xffTCG"
constexpr uint16_t kTpmStAttestQuote = 0x8018;      // TPM_ST_ATTEST_QUOTE
constexpr uint16_t kTpmAlgSha256 = 0x000b;
constexpr uint16_t kTpmAlgEcdsa = 0x0018;
constexpr size_t kMaxTpmAttestSize = 1024;  // a quote of one bank is about 130 bytes
constexpr size_t kTpmEccParameterSize = 32;  // P-256

// The evidence's fields, decoded but not verified.
struct TpmEvidence {
  int pcr = kTpmDefaultPcr;
  Bytes attest;  // the marshalled TPMS_ATTEST (without the TPM2B size)
  Bytes r, s;    // the ECDSA signature's integers, big-endian, as the TPM gave them
};

// The encoding above; throws orchard::Error on a field out of its bounds.
Bytes encode_tpm_evidence(const TpmEvidence& evidence);
// Strict: the version, every length within its bound and within the evidence, the signature's
// algorithms, nothing after the end. Throws AttestationError "TPM evidence: ...".
TpmEvidence decode_tpm_evidence(ByteView evidence);

// TPMS_PCR_SELECTION: one bank and a bitmap of its PCRs (PCR i is bit i % 8 of byte i / 8).
struct TpmPcrSelection {
  uint16_t hash = 0;
  Bytes select;
};

// A TPMS_ATTEST of any type whose fields up to `attested` are read; `quote_*` only when the type is
// a quote (the only type this parser reads further).
struct TpmAttest {
  uint32_t magic = 0;
  uint16_t type = 0;
  Bytes qualified_signer;  // TPM2B_NAME: the signing key's name
  Bytes extra_data;        // TPM2B_DATA: the qualifying data the quote was asked for
  uint64_t clock = 0;      // TPMS_CLOCK_INFO
  uint32_t reset_count = 0, restart_count = 0;
  bool safe = false;
  uint64_t firmware_version = 0;
  std::vector<TpmPcrSelection> quote_selection;  // TPMS_QUOTE_INFO
  Bytes quote_pcr_digest;
};

// Bounds-checked: every TPM2B within its TPM maximum and the input, a quote's TPMS_QUOTE_INFO read
// to the last byte and nothing after it. Throws AttestationError "TPM quote: not a quote
// (magic/type)" when the magic or type is not a quote's, "TPM quote: truncated ..." or
// "TPM quote: malformed ..." otherwise.
TpmAttest parse_tpm_quote(ByteView attest);

// The value of a reset PCR (all zeros) after one extension with `measurement`:
// SHA-256(32 zero bytes || measurement).
Bytes expected_pcr_value(ByteView measurement);

// Throws AttestationError naming the reason unless `evidence` is a quote signed by the P-256
// attestation key `identity` (base64 of its DER SubjectPublicKeyInfo), over `document_digest` as
// qualifying data, of exactly SHA-256 PCR `pcr`, whose value is expected_pcr_value(measurement).
// The evidence's own PCR index must be `pcr` too. In this order: "TPM evidence: ..." (decoding,
// then "quotes PCR N, expected PCR M"), "TPM quote: the identity is not ...",
// "TPM quote: signature does not verify with the attestation key" (nothing signed is read before
// the signature is checked), "TPM quote: not a quote (magic/type)", "TPM quote: qualifying data is
// not this document's digest", "TPM quote: selects PCRs other than sha256:23",
// "TPM quote: PCR digest does not match the measurement".
void verify_tpm_evidence(std::string_view identity, ByteView measurement, ByteView document_digest, ByteView evidence,
                         int pcr = kTpmDefaultPcr);

}  // namespace orchard::cloud
