// A node's attestation document: which node, what it measured itself to be, the key it answers
// with, until when, and the attester's evidence over all of that. The document is logged in the
// transparency log and served in the node's bundle (node_bundle.h), where the client checks it.
//
// Its body is text, one "key value" line each:
//   orchard attestation v1
//   node NAME
//   measurement HEX        the node's Measurement::digest, which the attester recorded
//   signing-key VKEY       the node's Ed25519 key, drawn at start and held only in its memory: it
//                          signs the node's OHTTP key configurations and every answer
//   attester KIND          software | tpm
//   identity ID            the attester's public identity (attester.h)
//   issued UNIX
//   expires UNIX
// and the serialized document is the body followed by "evidence BASE64\n", the attester's
// evidence over SHA-256(body).
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "cloud/attester.h"
#include "cloud/signed_note.h"

namespace orchard::cloud {

struct AttestationDocument {
  std::string node;
  Bytes measurement;  // 32 bytes
  std::string signing_key;  // a vkey
  std::string attester;
  std::string identity;
  int64_t issued = 0, expires = 0;  // Unix seconds
  Bytes evidence;

  std::string body() const;
  std::string serialize() const;
  // Strict: the lines above in order, nothing else; throws orchard::Error naming what is wrong.
  static AttestationDocument parse(std::string_view text);
};

// The document for this node, with the attester's evidence over its body.
AttestationDocument make_attestation(Attester& attester, const std::string& node, ByteView measurement,
                                     const NoteVerifier& signing_key, std::chrono::system_clock::time_point issued,
                                     std::chrono::seconds validity);

// The client's check of a document on its own: the evidence (verify_evidence, by the document's
// attester kind), the time window (issued no later than now + 5 minutes of clock skew, not yet
// expired), and the signing key's form. Throws AttestationError naming the reason.
void verify_attestation(const AttestationDocument& document, std::chrono::system_clock::time_point now);

// The software attester: an Ed25519 key in the node process (kept in a key file across restarts,
// so its identity can be pinned). Its evidence is a signature over the document's digest. It
// proves only that the holder of that key vouched for the measurement: a process that holds the
// key can claim any measurement (docs/cloud.md, "Attesters").
class SoftwareAttester : public Attester {
 public:
  explicit SoftwareAttester(NoteSigner key) : key_(std::move(key)) {}
  std::string_view kind() const override { return "software"; }
  std::string identity() const override { return key_.verifier().format(); }
  void record_measurement(ByteView) override {}
  Bytes attest(ByteView document_digest) override;

 private:
  NoteSigner key_;
};

// "software" (with its key file) or "tpm:TCTI".
std::unique_ptr<Attester> make_attester(const std::string& spec, const std::string& key_file);

}  // namespace orchard::cloud
