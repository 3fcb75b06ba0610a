#include "cloud/node.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include <cstdio>

#include "base/error.h"
#include "cloud/node_attestation.h"
#include "server/front_stage.h"
#include "server/openai_handler.h"

namespace orchard::cloud {

void harden_process() {
  const rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) fail("private node: cannot turn core dumps off (RLIMIT_CORE)");
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail("private node: cannot turn core dumps off (PR_SET_DUMPABLE)");
  // OpenSSL keeps private keys (its copies of ours, made per request) in this heap: locked and
  // cleared on free. 64 KiB holds thousands of X25519 keys; beyond it OpenSSL falls back to the
  // plain heap (and still clears them).
  if (!CRYPTO_secure_malloc_initialized() && CRYPTO_secure_malloc_init(64 << 10, 32) == 0)
    fail("private node: cannot set up OpenSSL's secure heap");
}

void serve_private(const std::string& model_path, server::ServerOptions server, const NodeOptions& node,
                   const std::function<void(int, int)>& on_ready, const std::function<bool()>& should_stop) {
  harden_process();
  server.share_prefix = false;
  if (server.admin_port < 0) server.admin_port = 0;
  KeyRing keys(node.key_rotation);
  // Attested (issue 16) when the node is given its release: measured before the model loads.
  std::unique_ptr<NodeAttestation> attestation;
  if (!node.attestation.release.empty()) {
    attestation = std::make_unique<NodeAttestation>(node, server, model_path);
    std::fprintf(stderr, "orchard: node %s measures %s%s\n", attestation->node_name().c_str(),
                 to_hex(attestation->measurement().digest()).c_str(),
                 attestation->matches_release() ? ", as its release states"
                                                : ", NOT what its release states: clients will refuse this node");
  }
  // Anonymous tokens: the redeemer and its double-spend store, when the node has an issuer.
  std::unique_ptr<privacy_pass::DoubleSpendStore> spent;
  std::unique_ptr<privacy_pass::TokenRedeemer> tokens;
  if (!node.tokens.issuer_key.empty()) {
    const TokenOptions& t = node.tokens;
    if (t.issuer_name.empty() || t.store.empty())
      fail("a node that takes tokens needs the issuer's name (--token-issuer-name) and a store (--token-store)");
    const Bytes spki = privacy_pass::load_public_key_file(t.issuer_key);
    spent = std::make_unique<privacy_pass::DoubleSpendStore>(t.store, privacy_pass::token_key_id(spki));
    privacy_pass::TokenChallenge challenge;
    challenge.issuer_name = t.issuer_name;
    challenge.origin_info = t.origin_info;
    tokens = std::make_unique<privacy_pass::TokenRedeemer>(privacy_pass::parse_public_key(spki), challenge, *spent);
  }
  std::unique_ptr<Gateway> gateway;  // made once the handler exists, in the route installer
  auto install = [&](server::FrontServer& http, const server::ServedModel& served) {
    gateway = std::make_unique<Gateway>(served.handler, keys, node.gateway,
                                        attestation ? &attestation->signing_key() : nullptr, tokens.get());
    const Gateway& g = *gateway;
    const size_t max_body = served.options.max_body_bytes;
    http.Post("/gateway", [&g, max_body](const httplib::Request& req, httplib::Response& res,
                                         const httplib::ContentReader& reader) {
      server::ApiRequest outer{.method = req.method, .path = req.path, .headers = {}, .body = {},
                               .client_left = server::client_reset};
      outer.headers.assign(req.headers.begin(), req.headers.end());
      try {
        outer.body = server::read_body(req, res, reader, max_body);
      } catch (const server::RequestError& e) {
        server::send(server::error_response(e), res);
        return;
      }
      server::send(g.handle(outer), res);
    });
    // ?format=hex: the same bytes as hex text, for the relay's node list (deploy/nginx), which
    // gathers the nodes' keys into one JSON document.
    http.Get("/ohttp-keys", [&g](const httplib::Request& req, httplib::Response& res) {
      server::ApiResponse keys = g.keys();
      if (req.get_param_value("format") == "hex") {
        keys.body = to_hex(as_bytes(keys.body));
        keys.content_type = "text/plain";
      }
      server::send(std::move(keys), res);
    });
    // The node's attestation bundle (node_bundle.h), which the relay gathers into /nodes.
    http.Get("/attestation", [&attestation, &keys](const httplib::Request&, httplib::Response& res) {
      if (!attestation) {
        res.status = 404;
        res.set_content("{\"title\":\"this node is not attested (started without --release)\",\"status\":404}",
                        "application/problem+json");
        return;
      }
      res.set_header("Cache-Control", "no-store");
      res.set_content(attestation->bundle(keys), "application/json");
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"status\":\"ok\"}", "application/json");
    });
    // Statuses httplib sets itself (unknown route, body too large), without echoing the request.
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const char* title = res.status == 404   ? "this node answers GET /ohttp-keys, GET /attestation, POST /gateway and GET /health only"
                          : res.status == 413 ? "the request body is too large"
                                              : "the request could not be processed";
      res.set_content(std::string("{\"title\":\"") + title + "\",\"status\":" + std::to_string(res.status) + "}",
                      "application/problem+json");
    });
  };
  server::serve(model_path, server, on_ready, should_stop, install);
}

}  // namespace orchard::cloud
