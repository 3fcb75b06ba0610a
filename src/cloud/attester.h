// The hardware (or software) root of a node's attestation: something that keeps the node's
// measurement where the node cannot later change it, and produces evidence, over a document the
// node wrote, that a verifier checks against the attester's public identity. Two attesters exist:
// the software one (an Ed25519 key in the node process) and the TPM 2.0 one (a quote by an
// attestation key that lives in the TPM, over the PCR the node extended with its measurement).
// A TEE quote (SEV-SNP, TDX) plugs in the same way: a kind, an identity, evidence, a verifier.
// What each one proves, and what it cannot, is in docs/cloud.md ("Attesters").
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "cloud/bytes.h"

namespace orchard::cloud {

// A refusal by the client's verification: the message names the reason ("attestation expired",
// "TPM quote: PCR digest does not match the measurement", ...).
class AttestationError : public Error {
 public:
  using Error::Error;
};

class Attester {
 public:
  virtual ~Attester() = default;
  // "software" or "tpm": the document's `attester` field, which selects the verifier.
  virtual std::string_view kind() const = 0;
  // The public identity evidence is checked against, as written in the document: the software
  // attester's Ed25519 vkey (signed_note.h), the TPM's attestation key as base64 of its DER
  // SubjectPublicKeyInfo.
  virtual std::string identity() const = 0;
  // Records the node's measurement (32 bytes) where the attester keeps it; once, at start. The TPM
  // attester resets its PCR and extends it with the measurement.
  virtual void record_measurement(ByteView measurement) = 0;
  // Evidence over `document_digest` (SHA-256 of the document's body, 32 bytes).
  virtual Bytes attest(ByteView document_digest) = 0;
};

// The client's check of evidence, the same call for every kind: throws AttestationError naming
// the reason unless `evidence` is by `identity` over `document_digest` and (for a TPM) over a PCR
// that holds exactly `measurement` extended into a reset PCR.
void verify_evidence(std::string_view kind, std::string_view identity, ByteView measurement,
                     ByteView document_digest, ByteView evidence);

}  // namespace orchard::cloud
