// Each answer of an attested node is bound to the node's attested signing key: every piece of
// the inner response (each chunk's plaintext; the whole message of a plain OHTTP answer) carries
// an Ed25519 signature over a running hash of the answer so far, its index, whether it is the
// last, and the hash of the encapsulated request it answers. A client checks each piece before it
// hands out a byte of it, so no unverified text reaches the caller, and the last signature covers
// the whole answer.
//
// Why a signature rather than a MAC under a key exported from the HPKE context: the AEAD of each
// chunk already proves that whoever holds the context wrote it, and a MAC would prove nothing
// more. A signature by the key the attestation names proves it to anyone: a client that keeps an
// answer can show an auditor that the attested release gave it, which no MAC can. It costs
// about 50 us per chunk at the node and 64 bytes per chunk on the wire (docs/cloud.md).
//
// The client asks for it with the inner request field `orchard-binding: ed25519-v1`; the node
// then appends the 64-byte signature to each piece. Nodes without a signing key (unattested)
// ignore the field, and a client that required the binding refuses what they send.
#pragma once
#include <string_view>

#include "cloud/bytes.h"
#include "cloud/signed_note.h"

namespace orchard::cloud {

constexpr std::string_view kBindingField = "orchard-binding";
constexpr std::string_view kBindingEd25519 = "ed25519-v1";

class ResponseSigner {
 public:
  // `key` must outlive this; `encapsulated_request` is the whole outer request body.
  ResponseSigner(const NoteSigner& key, ByteView encapsulated_request);
  // `piece` followed by its signature.
  Bytes sign(ByteView piece, bool final);

 private:
  const NoteSigner& key_;
  Bytes request_hash_;
  Bytes running_hash_;
  uint64_t index_ = 0;
};

class ResponseVerifier {
 public:
  ResponseVerifier(NoteVerifier key, ByteView encapsulated_request);
  // The piece without its signature; throws AttestationError ("response binding: ...") when it is
  // too short, its signature does not verify, or a piece comes after the final one.
  Bytes open(Bytes signed_piece, bool final);
  bool finished() const { return finished_; }

 private:
  NoteVerifier key_;
  Bytes request_hash_;
  Bytes running_hash_;
  uint64_t index_ = 0;
  bool finished_ = false;
};

}  // namespace orchard::cloud
