// The node's side of issue 16's chain of trust. At start the node measures itself (its binary,
// model and configuration: release.h), has its attester record the measurement, draws the Ed25519
// signing key that will sign its key configurations and every answer (kept only in this process's
// locked memory), and makes its attestation document, which it appends to the transparency log.
// GET /attestation then serves the node's bundle (node_bundle.h): the document, the release
// statement it claims, the log's latest checkpoint and both inclusion proofs, and the current key
// configurations signed by the attested key. The document is made again (and logged) at half its
// validity; proofs are fetched again when older than 5 s. When the log cannot be reached the
// bundle goes out without what is missing, and clients refuse the node: it fails closed.
#pragma once
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "cloud/attestation.h"
#include "cloud/key_ring.h"
#include "cloud/log_client.h"
#include "cloud/node_options.h"
#include "cloud/node_bundle.h"
#include "cloud/release.h"

namespace orchard::cloud {

class NodeAttestation {
 public:
  // Throws orchard::Error for a missing release file, attester or log token.
  NodeAttestation(const NodeOptions& node, const server::ServerOptions& server, const std::string& model_path);

  const std::string& node_name() const { return name_; }
  const NoteSigner& signing_key() const { return signing_; }
  const Measurement& measurement() const { return measurement_; }
  // The release statement's measurement differs from this node's (it will be refused).
  bool matches_release() const { return matches_release_; }
  // GET /attestation's JSON.
  std::string bundle(KeyRing& keys);

 private:
  void attest_locked(std::chrono::system_clock::time_point now);
  void refresh_locked(std::chrono::system_clock::time_point now);

  NodeOptions options_;
  std::string name_;
  Measurement measurement_;
  std::unique_ptr<Attester> attester_;
  NoteSigner signing_;
  std::string release_note_;
  bool matches_release_ = false;
  std::unique_ptr<LogClient> log_;
  std::string log_token_;

  std::mutex mutex_;
  AttestationDocument document_;
  std::string document_text_;
  std::chrono::system_clock::time_point renew_at_{};
  bool document_logged_ = false;
  std::string checkpoint_;
  std::optional<InclusionProof> document_proof_, release_proof_;
  std::chrono::steady_clock::time_point refreshed_{};
};

}  // namespace orchard::cloud
