// The options of a private cloud node (`orchard serve --private`), apart from node.h so that what
// measures a node (release.h) and what attests it (node_attestation.h) read them without
// depending on the node that uses them.
#pragma once
#include <chrono>
#include <string>

#include "cloud/gateway.h"

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

}  // namespace orchard::cloud
