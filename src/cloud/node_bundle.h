// What a client is shown about a node before it sends it anything, and the client's checks of it.
//
// A node serves its bundle at GET /attestation, and the relay gathers the bundles into its /nodes
// list. A bundle holds the node's attestation document (attestation.h), the release statement it
// claims (release.h), a log checkpoint with the inclusion proofs of both, and the node's current
// OHTTP key configurations signed by the attested signing key. Nothing in it is taken on trust:
// the relay and the node may both lie, and the client checks every link (docs/cloud.md, "Trust
// chain"):
//   1. the checkpoint is signed by the log key and by every required witness;
//   2. it is consistent with the last checkpoint this client saw (kept in its state file), so the
//      log cannot show it a fork;
//   3. the release statement is signed by a trusted release key and included in the log;
//   4. the attestation document is included in the log, its evidence verifies (attester.h), and
//      it has not expired;
//   5. the document's measurement is the release's;
//   6. the key configurations are signed by the document's signing key and not expired.
// Only then are the node's keys used; each refusal is an AttestationError naming its reason.
#pragma once
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cloud/attestation.h"
#include "cloud/ohttp.h"
#include "cloud/signed_note.h"

namespace orchard::cloud {

struct InclusionProof {
  uint64_t index = 0;
  std::vector<Bytes> hashes;
};

struct NodeBundle {
  std::string node;
  std::string document;    // AttestationDocument::serialize()
  std::string release;     // the signed release statement
  std::string checkpoint;  // the signed checkpoint note
  std::optional<InclusionProof> document_proof, release_proof;  // absent: not (yet) in the log
  std::string keys;        // the signed key note (sign_node_keys)
};
std::string format_bundle(const NodeBundle& bundle);  // JSON
// Throws AttestationError naming what is malformed.
NodeBundle parse_bundle(std::string_view json);

// The node's key configurations, signed by its attested key:
//   orchard node keys v1 / node NAME / keys HEX(application/ohttp-keys) / expires UNIX
std::string sign_node_keys(const NoteSigner& signing_key, const std::string& node, ByteView encoded_configs,
                           std::chrono::system_clock::time_point expires);

// What a client trusts: the keys it ships with.
struct TrustPolicy {
  std::vector<NoteVerifier> release_keys;  // a release must be signed by one of these
  NoteVerifier log_key;
  std::string log_origin;                  // the checkpoints' origin line; empty: the log key's name
  std::vector<NoteVerifier> witnesses;     // every one must have signed the checkpoint
  std::vector<std::string> attester_identities;  // if any, a document's identity must be one
  std::string state_file;                  // the last checkpoint seen; empty: none kept
};

struct VerifiedNode {
  std::string name;
  std::vector<KeyConfig> keys;
  NoteVerifier signing_key;
  Bytes measurement;
};

class NodeVerifier {
 public:
  // `consistency_proof(first, second)` fetches a proof from the log (LogClient); it may throw.
  using ConsistencyFetch = std::function<std::vector<Bytes>(uint64_t first, uint64_t second)>;
  NodeVerifier(TrustPolicy policy, ConsistencyFetch consistency_proof,
               std::function<std::chrono::system_clock::time_point()> now = [] { return std::chrono::system_clock::now(); });

  // The checks above, in that order; the state file moves to a newer checkpoint once all pass.
  // Throws AttestationError naming the first that fails.
  VerifiedNode verify(const NodeBundle& bundle);

 private:
  Checkpoint check_checkpoint(const std::string& note);
  void check_consistency(const Checkpoint& seen, const Checkpoint& now_shown);
  TrustPolicy policy_;
  ConsistencyFetch consistency_proof_;
  std::function<std::chrono::system_clock::time_point()> now_;
  std::mutex mutex_;
  std::optional<Checkpoint> seen_;  // the state file's
  std::string seen_note_;
};

}  // namespace orchard::cloud
