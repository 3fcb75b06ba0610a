// The transparency log's client (the API of log_server.h), for nodes that log their key bindings
// and for the cloud client that checks a node's release: it fetches checkpoints, proofs and
// entries and appends with a bearer token. It checks the shape of every answer and nothing of its
// meaning: the caller verifies the checkpoint's signatures and the proofs (signed_note.h,
// merkle.h). Every answer is bounded (kMaxLogResponse, an entry kMaxLogEntrySize) and every
// malformed one (a wrong status, type, field, count or hash length) is an orchard::Error naming
// the request and what was wrong.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloud/bytes.h"

namespace orchard::cloud {

constexpr size_t kMaxLogResponse = 1 << 20;
// A proof of a tree of up to 2^64 leaves has at most 64 (inclusion) or 65 (consistency) hashes.
constexpr size_t kMaxProofHashes = 65;

// An http(s) base address split for httplib: "scheme://host[:port]" and the path prefix ("" or
// "/a/b", no trailing slash). Throws orchard::Error for anything else (a query, a fragment, user
// info, another scheme, an empty host).
struct BaseUrl {
  std::string origin;
  std::string prefix;
};
BaseUrl parse_base_url(const std::string& url);

class LogClient {
 public:
  // base_url: http(s)://host:port[/path-prefix] (the relay serves the log at https://relay/log);
  // https verifies the server's certificate with `ca_file` (PEM; empty: the system's CAs).
  explicit LogClient(std::string base_url, std::string ca_file = "");
  ~LogClient();
  LogClient(const LogClient&) = delete;
  LogClient& operator=(const LogClient&) = delete;

  // The signed note of GET /checkpoint, not verified.
  std::string checkpoint();
  std::vector<Bytes> inclusion_proof(uint64_t index, uint64_t size);
  std::vector<Bytes> consistency_proof(uint64_t first, uint64_t second);
  Bytes entry(uint64_t index);
  // nullopt on 404 (no such entry); `leaf_hash` must be 32 bytes.
  std::optional<uint64_t> find(ByteView leaf_hash);

  struct Added {
    uint64_t index = 0;
    uint64_t size = 0;  // the log's size after the append
  };
  Added add_entry(ByteView entry, const std::string& bearer_token);
  uint64_t add(ByteView entry, const std::string& bearer_token) { return add_entry(entry, bearer_token).index; }

 private:
  struct Response;
  Response request(const std::string& method, const std::string& path, size_t limit, ByteView body = {},
                   const std::string& token = "");
  std::string base_url_;
  BaseUrl base_;
  std::string ca_file_;
};

}  // namespace orchard::cloud
