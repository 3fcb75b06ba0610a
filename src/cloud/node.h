// `orchard serve --private`: the private cloud node. The same engine and OpenAI handler as
// `orchard serve`, behind an Oblivious HTTP gateway: its public port answers only GET /ohttp-keys,
// POST /gateway and GET /health; /metrics (counts, no content) is on an admin port bound to
// loopback. It keeps nothing of a request: no prompt or answer bytes in logs, files, metric
// labels or outer error messages; no KV prefix shared between requests (each job's cache is
// zeroed when it ends); no core dumps; private keys only in locked memory (docs/cloud.md).
#pragma once
#include <chrono>
#include <functional>
#include <string>

#include "cloud/gateway.h"
#include "server/http_server.h"

namespace orchard::cloud {

// How a node proves what it runs (issue 16; docs/cloud.md, "Trust chain"). Without a release, a
// node serves unattested, as in part 1.
struct AttestationOptions {
  std::string release;       // the signed release statement this node claims to run (a file)
  std::string node_name;     // the name in its documents; empty: the host name
  std::string attester = "software";  // "software", or "tpm:TCTI" (e.g. tpm:swtpm:port=2321)
  std::string attester_key;  // software: the attester's key file (its identity across restarts)
  std::string log_url;       // the transparency log its documents are appended to
  std::string log_token_file;
  std::string log_ca_file;
  std::string binary = "/proc/self/exe";  // what is measured as the node binary
};

// Anonymous tokens (Privacy Pass type 2; privacy_pass.h): with an issuer key, every request must
// carry a token of that issuer, spent once.
struct TokenOptions {
  std::string issuer_key;   // the issuer's public key file (base64url SPKI, `orchard tokens keygen`)
  std::string issuer_name;  // the challenge's issuer name, as clients fetch tokens for it
  std::string origin_info;  // the challenge's origin info (empty: tokens for any origin)
  std::string store;        // the double-spend store, shared by the nodes of this host
};

struct NodeOptions {
  std::chrono::seconds key_rotation{3600};
  // How long an attestation document is valid; the node makes (and logs) a new one at half of it.
  std::chrono::seconds attestation_validity{86400};
  GatewayOptions gateway;
  AttestationOptions attestation;
  TokenOptions tokens;
};

// Turns off what could write a request's bytes out of the process: core dumps (RLIMIT_CORE 0,
// PR_SET_DUMPABLE 0, which also bars ptrace by other processes of the user) and OpenSSL's
// keys outside locked memory (its secure heap). Throws orchard::Error if a setting fails.
void harden_process();

// Serves until `should_stop` returns true; `server` as for server::serve (its share_prefix is
// forced off, and admin_port -1 becomes 0: any free port).
void serve_private(const std::string& model_path, server::ServerOptions server, const NodeOptions& node,
                   const std::function<void(int port, int admin_port)>& on_ready,
                   const std::function<bool()>& should_stop);

}  // namespace orchard::cloud
