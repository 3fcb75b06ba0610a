// The client of the private cloud node: it fetches the relay's node list (each node's name and
// key configurations), picks a node, encapsulates an OpenAI request to that node's key, posts it
// through the relay over HTTPS (the relay's certificate verified), and decrypts the answer as it
// streams in. A request that fails on one node (unreachable, 5xx, keys rotated) is sent again,
// with a fresh encapsulation, to another, as long as nothing of its answer was handed out. This
// is the library call the router uses; `orchard cloud ask` is a thin layer over it.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/binary_http.h"
#include "cloud/node_bundle.h"
#include "cloud/ohttp.h"

namespace orchard::cloud {

// A failure to get an answer (relay unreachable, certificate refused, no node left, a response
// that does not decrypt); the message says which.
class CloudError : public Error {
 public:
  using Error::Error;
};

struct CloudClientOptions {
  std::string relay;    // https://host:port (http:// only for tests on loopback)
  std::string ca_file;  // PEM CA certificates that verify the relay; empty: the system's
  std::string source_address;  // the local address to connect from; empty: the system's choice
  std::chrono::seconds timeout{600};
  int attempts = 3;                        // nodes tried per request
  std::chrono::seconds node_pause{30};     // a node that failed is skipped this long
  OhttpMode mode = OhttpMode::chunked;     // chunked: answers stream
  size_t request_padding = 1024;           // Binary HTTP requests are padded to a multiple of this
  // Attested mode (node_bundle.h): only nodes whose bundle passes every check are used, and
  // every answer must carry a valid response binding. Null: part 1's unattested mode.
  std::shared_ptr<NodeVerifier> verifier;
  // Called before each attempt for the outer `Authorization` value (a Privacy Pass token), or
  // empty: none sent. Each attempt spends one token.
  std::function<std::string()> token;
};

struct CloudNode {
  std::string name;
  std::vector<KeyConfig> keys;
  std::optional<NodeBundle> bundle;         // as the relay listed it
  std::optional<NoteVerifier> signing_key;  // set once the bundle verified: answers must be bound to it
};

struct CloudAnswer {
  int status = 0;  // the inner (OpenAI) response's
  std::vector<HttpField> headers;
  std::string node;  // which node answered
  int attempts = 0;
};

class CloudClient {
 public:
  explicit CloudClient(CloudClientOptions options);
  ~CloudClient();

  // Sends `body` to the node's OpenAI `path` (POST; GET when `body` is empty). `on_head` gets the
  // inner status and fields before any content; `on_content` the inner content as it decrypts
  // (returning false cancels). Throws CloudError.
  CloudAnswer send(const std::string& path, const std::string& body,
                   const std::function<void(int status, const std::vector<HttpField>& headers)>& on_head,
                   const std::function<bool(std::string_view)>& on_content);

  // The relay's node list, fetched again; in attested mode, only the nodes that verified.
  // Throws CloudError when no node verified, with each node's reason.
  std::vector<CloudNode> refresh_nodes();
  // The nodes the last refresh refused, with their reasons.
  std::vector<std::pair<std::string, std::string>> refused_nodes();

 private:
  struct Relay;
  const CloudNode* pick_node(const std::vector<std::string>& tried);
  CloudClientOptions options_;
  std::unique_ptr<Relay> relay_;
  std::mutex mutex_;
  std::vector<CloudNode> nodes_;
  std::vector<std::pair<std::string, std::string>> refused_;
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> failed_;
  std::vector<std::pair<std::string, int>> in_flight_;  // this client's requests per node
  std::mt19937_64 random_;
};

// `/nodes` as the relay serves it: {"nodes": [{"name": ..., "keys": hex of application/ohttp-keys,
// "attestation": the node's bundle or null}]}. Nodes whose keys are missing or malformed (a node
// down when the list was gathered) are left out; a malformed bundle is left for the verifier to
// refuse (the node keeps its place with no bundle).
std::vector<CloudNode> parse_node_list(std::string_view json);

}  // namespace orchard::cloud
