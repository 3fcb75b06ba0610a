// A transparency log witness (c2sp.org/tlog-witness): a second key that signs a log's checkpoint
// only after checking that it extends the last checkpoint it signed. A log that shows one client
// a tree and another client a different one (a fork, to hide a release from the public log) can
// get at most one of the two branches cosigned; clients that require the witness's signature
// refuse the other. The witness keeps one log's state: its key, origin and last checkpoint.
//
// The protocol: the log POSTs to WITNESS/add-checkpoint the body
//   "old M\n", one base64 consistency-proof hash per line (at most 63), "\n", the signed note
// where M is the size the log believes the witness last cosigned. The witness answers
//   200  its signature line(s), "— name base64(key id || signature)\n"
//   400  a malformed body, old > the checkpoint's size, or a proof with old 0
//   403  no signature by the log's key verifies
//   404  the checkpoint's origin is not the log's
//   409  M is not the size it last cosigned (body: that size, "N\n", text/x.tlog.size), or M is
//        the checkpoint's size and the roots differ
//   422  the consistency proof from its last checkpoint does not verify
// so a checkpoint of a smaller size than the last cosigned one is never signed (409, or 400 when
// the log sends the witness's own size), nor a fork of the same or a larger size (409 / 422).
// The new state is on disk (AtomicFile, fsync) before the 200 goes out, under a lock that covers
// the check too, so two concurrent requests cannot roll it back.
//
// The cosignature is an ordinary Ed25519 note signature (type 0x01) by the witness key over the
// checkpoint's note text: clients check it with verify_note and the witness's vkey, like the
// log's. c2sp.org/tlog-cosignature's cosignature/v1 (type 0x04, over a timestamped message) is
// the newer format; this one is the older form the spec still accepts, chosen because it needs
// no second verifier and no clock. What it cannot say: when the witness saw the checkpoint.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/bytes.h"
#include "cloud/signed_note.h"

namespace httplib {
class Server;
}

namespace orchard::cloud {

constexpr size_t kMaxWitnessProofLines = 63;
constexpr size_t kMaxAddCheckpointBody = 1 << 16;

// A tree size as these protocols write it: ASCII decimal, no leading zero (but "0"), at most 64
// bits; nullopt for anything else.
std::optional<uint64_t> parse_tree_size(std::string_view text);

// The request body, as the log sends it.
std::string format_add_checkpoint(uint64_t old_size, const std::vector<Bytes>& proof, std::string_view signed_note);

struct AddCheckpointRequest {
  uint64_t old_size = 0;
  std::vector<Bytes> proof;
  std::string note;  // the signed checkpoint, not yet verified
};
// Throws orchard::Error naming what is malformed.
AddCheckpointRequest parse_add_checkpoint(std::string_view body);

struct WitnessReply {
  int status = 200;
  std::string content_type;
  std::string body;
};

class Witness {
 public:
  // `state_path`: the last checkpoint cosigned, as the log-signed note (made at the first
  // cosignature; read here, checked against `log_key` and `origin`). `origin` empty: the log key's
  // name, as `orchard log serve` names its log by default. Throws orchard::Error naming the file
  // when the state cannot be read or does not check.
  Witness(NoteSigner key, NoteVerifier log_key, std::string state_path, std::string origin = "");

  // One add-checkpoint request; never throws for what the body holds (a 4xx says what was wrong).
  // Thread-safe.
  WitnessReply add_checkpoint(std::string_view body);

  // The last checkpoint cosigned, if any.
  std::optional<Checkpoint> latest() const;
  const std::string& origin() const { return origin_; }
  const NoteSigner& key() const { return key_; }

  // POST /add-checkpoint on `http` (with the body limit).
  void install(httplib::Server& http);

 private:
  NoteSigner key_;
  NoteVerifier log_key_;
  std::string state_path_;
  std::string origin_;
  mutable std::mutex mutex_;
  std::optional<Checkpoint> latest_;
};

}  // namespace orchard::cloud
