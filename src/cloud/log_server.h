// `orchard log serve`: the transparency log's HTTP API over a TransparencyLog and the log's
// signing key. Clients fetch the signed checkpoint, proofs and entries; nodes and release tools
// append with a bearer token. Reads pick up entries appended by other processes (`orchard log
// append --dir`): each request first checks the file's size (one fstat).
//
//   GET  /checkpoint                         text/plain: the signed note (c2sp tlog-checkpoint) of
//                                            the current size, the log's signature first, then the
//                                            cosignatures of the witnesses that gave one
//   GET  /proof/inclusion?index=I&size=N     {"index":I,"size":N,"hashes":[base64,...]}
//   GET  /proof/consistency?first=M&second=N {"first":M,"second":N,"hashes":[...]}
//   GET  /entries/I                          application/octet-stream: the entry's bytes
//   GET  /lookup?leaf_hash=HEX               {"index":I}, or 404
//   POST /add   Authorization: Bearer TOKEN  body: the entry; {"index":I,"size":N}
//
// Errors are application/problem+json {"title","status"} with "parameter" naming the query
// parameter when one is at fault: 400 for a missing, non-decimal (or leading-zero, or over 64
// bits) number or a malformed hash, and for sizes and indexes beyond the tree (size > the log's,
// index >= size, first = 0 or first > second); 404 for an entry past the end or an unknown leaf
// hash; 401 for POST /add without the right token (compared in constant time), 403 when the
// server has no token (appends over HTTP are off), 413 over the entry limit.
//
// Witnesses (witness.h): whenever the log's size changed (checked at start, on each request for
// the checkpoint, after each append, and by update()), the server signs the new checkpoint and
// asks each witness for its cosignature, retrying once after a 409 with the size the witness
// names and a proof from it. A witness that is down or refuses leaves the checkpoint without its
// signature, and is asked again at most every `witness_retry` while the size stays the same.
// Clients that require that witness then refuse the checkpoint: failing closed is the point.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cloud/signed_note.h"
#include "cloud/tlog.h"

namespace httplib {
class Server;
}

namespace orchard::cloud {

struct WitnessEndpoint {
  std::string url;      // http(s)://host:port[/prefix]; the server POSTs to URL/add-checkpoint
  NoteVerifier key;     // its cosignatures are checked before they are attached
};

struct LogServerOptions {
  std::string append_token;  // empty: POST /add answers 403
  std::vector<WitnessEndpoint> witnesses;
  std::string ca_file;       // PEM CA certificates for https:// witnesses; empty: the system's
  std::chrono::seconds witness_retry{10};
  std::chrono::seconds witness_timeout{5};
};

class LogServer {
 public:
  // Signs the current checkpoint and asks the witnesses (a witness down is not an error).
  LogServer(TransparencyLog& log, const NoteSigner& key, LogServerOptions options = {});
  ~LogServer();

  // Registers the endpoints above on `http`, its body limit (the entry limit) and problem bodies
  // for the statuses httplib sets itself.
  void install(httplib::Server& http);

  // Picks up appends by other processes and, when the size changed (or a witness that failed is
  // due again), signs and gathers cosignatures. Returns the current signed note.
  std::string update();

  // Why each witness that has not cosigned the current checkpoint failed (empty when all did).
  std::vector<std::string> witness_errors() const;

 private:
  struct WitnessState;
  void ask(WitnessState& witness, const std::string& note, const Checkpoint& checkpoint);

  TransparencyLog& log_;
  const NoteSigner& key_;
  LogServerOptions options_;
  mutable std::mutex mutex_;  // the signed state below, and the witness round that makes it
  uint64_t signed_size_ = 0;
  bool signed_ = false;
  std::string text_;          // the checkpoint's note text
  NoteSignature signature_;   // the log's
  std::vector<std::unique_ptr<WitnessState>> witnesses_;
};

// Serves `http` on host:port (0: any free port) until `should_stop` returns true (polled every
// 100 ms; `tick`, when given, is called about once a second meanwhile). `on_ready` gets the bound
// port once the server accepts connections. Throws orchard::Error when the address cannot be bound.
void run_http_server(httplib::Server& http, const std::string& host, int port, const std::function<void(int port)>& on_ready,
                     const std::function<bool()>& should_stop, const std::function<void()>& tick = {});

}  // namespace orchard::cloud
