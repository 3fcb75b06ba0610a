// `orchard serve --private`: the private cloud node. The same engine and OpenAI handler as
// `orchard serve`, behind an Oblivious HTTP gateway: its public port answers only GET /ohttp-keys,
// GET /attestation (an attested node's bundle), POST /gateway and GET /health; /metrics (counts,
// no content) is on an admin port bound to loopback. It keeps nothing of a request: no prompt or answer bytes in logs, files, metric
// labels or outer error messages; no KV prefix shared between requests (each job's cache is
// zeroed when it ends); no core dumps; private keys only in locked memory (docs/cloud.md).
#pragma once
#include <functional>
#include <string>

#include "cloud/node_options.h"
#include "server/http_server.h"

namespace orchard::cloud {

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
