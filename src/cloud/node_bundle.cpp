#include "cloud/node_bundle.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "base/atomic_file.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "cloud/crypto.h"
#include "cloud/merkle.h"
#include "cloud/release.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;
using Clock = std::chrono::system_clock;

constexpr std::string_view kKeysHeader = "orchard node keys v1";
constexpr size_t kMaxProofHashes = 64;  // a tree of 2^64 leaves needs fewer

[[noreturn]] void refuse(const std::string& reason) { throw AttestationError(reason); }

int64_t unix_seconds(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string string_member(const json& j, const char* name, bool required = true) {
  if (!j.contains(name)) {
    if (required) refuse(std::string("node bundle: no \"") + name + "\"");
    return "";
  }
  if (!j[name].is_string()) refuse(std::string("node bundle: \"") + name + "\" is not a string");
  return j[name].get<std::string>();
}

std::optional<InclusionProof> proof_member(const json& j, const char* name) {
  if (!j.contains(name) || j[name].is_null()) return std::nullopt;
  const json& p = j[name];
  if (!p.is_object() || !p.contains("index") || !p["index"].is_number_unsigned() || !p.contains("hashes") ||
      !p["hashes"].is_array() || p["hashes"].size() > kMaxProofHashes)
    refuse(std::string("node bundle: \"") + name + "\" is not {index, hashes}");
  InclusionProof proof{p["index"].get<uint64_t>(), {}};
  for (const json& h : p["hashes"]) {
    if (!h.is_string()) refuse(std::string("node bundle: a hash of \"") + name + "\" is not a string");
    try {
      proof.hashes.push_back(base64_decode(h.get<std::string>()));
    } catch (const Error&) {
      refuse(std::string("node bundle: a hash of \"") + name + "\" is not base64");
    }
  }
  return proof;
}

json proof_json(const std::optional<InclusionProof>& proof) {
  if (!proof) return nullptr;
  json hashes = json::array();
  for (const Bytes& h : proof->hashes) hashes.push_back(base64_encode(h));
  return {{"index", proof->index}, {"hashes", hashes}};
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = text.find('\n', start);
    if (end == std::string_view::npos) break;
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string short_hex(ByteView b) { return to_hex(b).substr(0, 16); }

}  // namespace

std::string format_bundle(const NodeBundle& b) {
  return json{{"node", b.node},
              {"document", b.document},
              {"release", b.release},
              {"checkpoint", b.checkpoint},
              {"document_proof", proof_json(b.document_proof)},
              {"release_proof", proof_json(b.release_proof)},
              {"keys", b.keys}}
      .dump();
}

NodeBundle parse_bundle(std::string_view text) {
  json j;
  try {
    j = parse_json(text, "node bundle");
  } catch (const Error& e) {
    refuse(e.what());
  }
  if (!j.is_object()) refuse("node bundle: not a JSON object");
  NodeBundle b;
  b.node = string_member(j, "node");
  b.document = string_member(j, "document");
  b.release = string_member(j, "release");
  b.checkpoint = string_member(j, "checkpoint", false);
  b.keys = string_member(j, "keys");
  b.document_proof = proof_member(j, "document_proof");
  b.release_proof = proof_member(j, "release_proof");
  return b;
}

std::string sign_node_keys(const NoteSigner& signing_key, const std::string& node, ByteView encoded_configs,
                           Clock::time_point expires) {
  return sign_note(std::string(kKeysHeader) + "\nnode " + node + "\nkeys " + to_hex(encoded_configs) + "\nexpires " +
                       std::to_string(unix_seconds(expires)) + "\n",
                   signing_key);
}

NodeVerifier::NodeVerifier(TrustPolicy policy, ConsistencyFetch consistency_proof, std::function<Clock::time_point()> now)
    : policy_(std::move(policy)), consistency_proof_(std::move(consistency_proof)), now_(std::move(now)) {
  if (policy_.log_origin.empty()) policy_.log_origin = policy_.log_key.name;
  if (policy_.state_file.empty() || ::access(policy_.state_file.c_str(), F_OK) != 0) return;
  const std::string note = read_text_file(policy_.state_file, kMaxNoteSize);
  try {
    const NoteVerifier log[] = {policy_.log_key};
    seen_ = parse_checkpoint(verify_note(note, log).text);
    seen_note_ = note;
  } catch (const Error& e) {
    fail("cloud client state ", policy_.state_file, ": not a checkpoint signed by the log key (", e.what(),
         "); remove it only if the log key changed on purpose");
  }
}

Checkpoint NodeVerifier::check_checkpoint(const std::string& note) {
  if (note.empty()) refuse("no log checkpoint (the node could not reach the log)");
  std::vector<NoteVerifier> keys = {policy_.log_key};
  keys.insert(keys.end(), policy_.witnesses.begin(), policy_.witnesses.end());
  VerifiedNote verified;
  try {
    verified = verify_note(note, keys);
  } catch (const Error& e) {
    refuse(std::string("log checkpoint does not verify: ") + e.what());
  }
  auto signed_by = [&](const NoteVerifier& k) {
    return std::any_of(verified.verified.begin(), verified.verified.end(),
                       [&](const NoteSignature& s) { return s.name == k.name && s.key_id == k.key_id; });
  };
  if (!signed_by(policy_.log_key)) refuse("log checkpoint not signed by the log key");
  for (const NoteVerifier& w : policy_.witnesses)
    if (!signed_by(w)) refuse("witness signature missing: " + w.name + " has not cosigned the log checkpoint");
  Checkpoint c;
  try {
    c = parse_checkpoint(verified.text);
  } catch (const Error& e) {
    refuse(std::string("log checkpoint malformed: ") + e.what());
  }
  if (c.origin != policy_.log_origin) refuse("log checkpoint is of another log ('" + c.origin + "')");
  return c;
}

void NodeVerifier::check_consistency(const Checkpoint& seen, const Checkpoint& shown) {
  if (seen.size == shown.size) {
    if (seen.root_hash != shown.root_hash)
      refuse("log checkpoint inconsistent with the one seen before: same size " + std::to_string(seen.size) +
             ", another root (a forked log)");
    return;
  }
  const Checkpoint& older = seen.size < shown.size ? seen : shown;
  const Checkpoint& newer = seen.size < shown.size ? shown : seen;
  std::vector<Bytes> proof;
  try {
    proof = consistency_proof_(older.size, newer.size);
  } catch (const Error& e) {
    refuse(std::string("cannot check the log checkpoint against the one seen before: ") + e.what());
  }
  if (older.size == 0) return;  // every tree extends the empty one
  if (!verify_consistency(older.size, newer.size, older.root_hash, newer.root_hash, proof))
    refuse("log checkpoint inconsistent with the one seen before (sizes " + std::to_string(seen.size) + " and " +
           std::to_string(shown.size) + "): a forked log");
}

VerifiedNode NodeVerifier::verify(const NodeBundle& b) {
  // 1-2: the checkpoint, and the log's history as this client saw it.
  const Checkpoint checkpoint = check_checkpoint(b.checkpoint);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (seen_) check_consistency(*seen_, checkpoint);
  }
  auto included = [&](const std::optional<InclusionProof>& proof, const std::string& entry, const char* what) {
    if (!proof) refuse(std::string(what) + " not in the log (no inclusion proof)");
    if (!verify_inclusion(proof->index, checkpoint.size, merkle_leaf_hash(as_bytes(entry)), proof->hashes,
                          checkpoint.root_hash))
      refuse(std::string(what) + " not in the log: its inclusion proof does not verify against the checkpoint");
  };
  // 3: the release.
  const Release release = verify_release(b.release, policy_.release_keys);
  included(b.release_proof, b.release, "release statement");
  // 4: the attestation document.
  AttestationDocument document;
  try {
    document = AttestationDocument::parse(b.document);
  } catch (const Error& e) {
    refuse(e.what());
  }
  if (document.node != b.node) refuse("attestation document is for node '" + document.node + "', not '" + b.node + "'");
  if (!policy_.attester_identities.empty() &&
      std::find(policy_.attester_identities.begin(), policy_.attester_identities.end(), document.identity) ==
          policy_.attester_identities.end())
    refuse("attester identity not among the trusted ones");
  verify_attestation(document, now_());
  included(b.document_proof, b.document, "attestation document");
  // 5: what the node runs is what was released.
  const Bytes released = release.measurement.digest();
  if (document.measurement != released)
    refuse("measurement differs from the release's: the node runs " + short_hex(document.measurement) +
           "..., release '" + release.name + "' is " + short_hex(released) + "... (another binary, model or configuration)");
  // 6: the keys, vouched for by the attested key.
  VerifiedNode node{b.node, {}, NoteVerifier::parse(document.signing_key), document.measurement};
  VerifiedNote keys;
  try {
    const NoteVerifier signer[] = {node.signing_key};
    keys = verify_note(b.keys, signer);
  } catch (const Error& e) {
    refuse(std::string("key configurations not signed by the attested key: ") + e.what());
  }
  const std::vector<std::string_view> lines = lines_of(keys.text);
  if (lines.size() != 4 || lines[0] != kKeysHeader || lines[1] != "node " + b.node || lines[2].substr(0, 5) != "keys " ||
      lines[3].substr(0, 8) != "expires ")
    refuse("key configurations: not an '" + std::string(kKeysHeader) + "' note for this node");
  int64_t expires = 0;
  const std::string_view e = lines[3].substr(8);
  if (std::from_chars(e.data(), e.data() + e.size(), expires).ptr != e.data() + e.size())
    refuse("key configurations: bad expiry");
  if (expires <= unix_seconds(now_())) refuse("key configurations expired");
  try {
    node.keys = parse_key_configs(from_hex(lines[2].substr(5)));
  } catch (const Error& ex) {
    refuse(std::string("key configurations malformed: ") + ex.what());
  }
  if (node.keys.empty()) refuse("key configurations: none");

  // All checks passed: remember the newest checkpoint.
  std::lock_guard<std::mutex> lock(mutex_);
  if (!seen_ || checkpoint.size > seen_->size) {
    if (seen_) check_consistency(*seen_, checkpoint);  // another thread may have moved it meanwhile
    seen_ = checkpoint;
    seen_note_ = b.checkpoint;
    if (!policy_.state_file.empty()) {
      AtomicFile file(policy_.state_file);
      file.write(seen_note_);
      file.commit();
    }
  }
  return node;
}

}  // namespace orchard::cloud
