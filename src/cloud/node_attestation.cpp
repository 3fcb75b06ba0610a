#include "cloud/node_attestation.h"

#include <unistd.h>

#include <cstdio>

#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/merkle.h"

namespace orchard::cloud {
namespace {

using Clock = std::chrono::system_clock;

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "node";
  return name;
}

// The size of the checkpoint in a note, read without verifying it: the node only passes it on,
// and the proofs it fetches are for that size. Clients check everything.
uint64_t checkpoint_size(const std::string& note) {
  const Note parsed = parse_note(note);
  return parse_checkpoint(parsed.text).size;
}

}  // namespace

NodeAttestation::NodeAttestation(const NodeOptions& node, const server::ServerOptions& server, const std::string& model_path)
    : options_(node),
      name_(node.attestation.node_name.empty() ? host_name() : node.attestation.node_name),
      measurement_(measure_node(node.attestation.binary, model_path, server, node)),
      attester_(make_attester(node.attestation.attester, node.attestation.attester_key)),
      signing_(NoteSigner::generate(name_)) {
  const AttestationOptions& a = node.attestation;
  release_note_ = read_text_file(a.release, 64 << 10);
  try {
    matches_release_ = parse_release(parse_note(release_note_).text).measurement == measurement_;
  } catch (const Error& e) {
    fail("release statement ", a.release, ": ", e.what());
  }
  if (a.log_url.empty()) fail("an attested node needs the transparency log's address (--log-url)");
  if (a.log_token_file.empty()) fail("an attested node needs the log's append token (--log-token-file)");
  log_token_ = read_text_file(a.log_token_file, 4096);
  while (!log_token_.empty() && (log_token_.back() == '\n' || log_token_.back() == '\r')) log_token_.pop_back();
  log_ = std::make_unique<LogClient>(a.log_url, a.log_ca_file);
  attester_->record_measurement(measurement_.digest());
  std::lock_guard<std::mutex> lock(mutex_);
  attest_locked(Clock::now());
  refresh_locked(Clock::now());
}

void NodeAttestation::attest_locked(Clock::time_point now) {
  document_ = make_attestation(*attester_, name_, measurement_.digest(), signing_.verifier(), now,
                               options_.attestation_validity);
  document_text_ = document_.serialize();
  renew_at_ = now + options_.attestation_validity / 2;
  document_logged_ = false;
  document_proof_.reset();
  refreshed_ = {};
}

void NodeAttestation::refresh_locked(Clock::time_point) {
  refreshed_ = std::chrono::steady_clock::now();
  try {
    if (!document_logged_) {
      log_->add(as_bytes(document_text_), log_token_);
      document_logged_ = true;
    }
    checkpoint_ = log_->checkpoint();
    const uint64_t size = checkpoint_size(checkpoint_);
    auto proof = [&](const std::string& entry) -> std::optional<InclusionProof> {
      const std::optional<uint64_t> index = log_->find(merkle_leaf_hash(as_bytes(entry)));
      if (!index || *index >= size) return std::nullopt;  // not (yet) in the checkpoint's tree
      return InclusionProof{*index, log_->inclusion_proof(*index, size)};
    };
    document_proof_ = proof(document_text_);
    release_proof_ = proof(release_note_);
  } catch (const Error& e) {
    // No content of any request is involved here: the message is about the log.
    std::fprintf(stderr, "orchard: transparency log: %s\n", e.what());
  }
}

std::string NodeAttestation::bundle(KeyRing& keys) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  if (now >= renew_at_) attest_locked(now);
  // Proofs at most 5 s old; while the log is out of reach, tried again at most once a second.
  const auto age = std::chrono::steady_clock::now() - refreshed_;
  if (age > std::chrono::seconds(5) || (!document_proof_ && age > std::chrono::seconds(1))) refresh_locked(now);
  NodeBundle b;
  b.node = name_;
  b.document = document_text_;
  b.release = release_note_;
  b.checkpoint = checkpoint_;
  b.document_proof = document_proof_;
  b.release_proof = release_proof_;
  b.keys = sign_node_keys(signing_, name_, keys.encoded_configs(), now + keys.max_age());
  return format_bundle(b);
}

}  // namespace orchard::cloud
