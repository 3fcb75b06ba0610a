// orchard serve --model PATH [--host H] [--port N] [--parallel K] [--ctx-size N] [--threads N]
//               [--kv-type f32|f16|int8] [--stream-interval-ms MS] [--memory-budget SIZE]
//               [--private [--admin-port N] [--key-rotation-s S] [--replay-window-s S] [--node-name N]
//                [--release NOTE --attester software|tpm:TCTI [--attester-key F] --log-url URL
//                 --log-token-file F [--log-ca-file PEM] [--attestation-validity-s S] [--binary PATH]]
//                [--token-issuer-key PUB --token-issuer-name NAME --token-store FILE [--token-origin-info T]]]
//               [--cloud-relay URL [--cloud-ca-file PEM]] [--router-config FILE] [--router-audit FILE]
//               [--spec ngram | --draft-model PATH] [--draft-max K] [--draft-min N]
//               [--lora NAME=PATH[:SCALE] ...] [--lora-merge] [--allow-adapter-updates]
//               [--api-key KEY ... | --api-key-file F ...] [--cors-origin ORIGIN ...] [--alias NAME]
//               [--chat-template chatml|llama3|qwen | --chat-template-file F]
// An OpenAI-compatible HTTP server (see src/server/); with --private, the private cloud node: the
// same API reachable only through Oblivious HTTP (src/cloud/, docs/cloud.md); with --cloud-relay or
// --router-config, the hybrid router's device endpoint: each request answered here or by the
// private cloud node behind the relay (src/router/endpoint.h, docs/router.md). --lora offers LoRA
// adapters beside the model, chosen per request by "model" (docs/server.md, "Adapters").
#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <cstdio>

#include "adapter_options.h"
#include "base/error.h"
#include "cloud/node.h"
#include "command.h"
#include "model_options.h"
#include "serve_config.h"
#include "router/endpoint.h"
#include "server/api_keys.h"
#include "server/builtin_chat_templates.h"
#include "server/http_server.h"

namespace orchard::cli {

// --api-key, --api-key-file, --cors-origin, --alias, --chat-template, --chat-template-file
// (docs/server.md, "Access" and "Chat templates").
void set_serve_api_surface(ServeConfig& c, Args& args) {
  server::ServerOptions& options = c.server;
  for (const std::string& key : args.get_all("api-key")) {
    server::check_api_key(key, "orchard serve: --api-key");
    options.api_keys.push_back(key);
  }
  for (const std::string& file : args.get_all("api-key-file"))
    for (std::string& key : server::read_api_key_file(file)) options.api_keys.push_back(std::move(key));
  for (const std::string& origin : args.get_all("cors-origin")) {
    // An origin is scheme://host[:port], as a browser sends it in Origin; or * for any.
    if (origin != "*" && (origin.find("://") == std::string::npos || origin.back() == '/' ||
                          origin.find_first_of(" \t\r\n,") != std::string::npos))
      fail("orchard serve: --cors-origin '", origin, "': give an origin as a browser sends it (https://app.example:8443, no "
           "path or trailing '/') or *");
    options.cors_origins.push_back(origin);
  }
  options.alias = args.get_or("alias", "");
  if (args.get("alias") &&
      (options.alias.empty() || options.alias.size() > 256 ||
       std::any_of(options.alias.begin(), options.alias.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; })))
    fail("orchard serve: --alias must be 1 to 256 characters without control characters");
  const std::optional<std::string> name = args.get("chat-template"), file = args.get("chat-template-file");
  if (name && file) fail("orchard serve: give --chat-template or --chat-template-file, not both");
  if (name) options.chat_template = server::builtin_chat_template(*name);
  if (file) options.chat_template = server::read_chat_template_file(*file);
  if (c.private_node && (!options.api_keys.empty() || !options.cors_origins.empty() || !options.alias.empty() ||
                         !options.chat_template.empty()))
    fail("orchard serve: --api-key, --cors-origin, --alias and the chat template options do not go with --private (a node "
         "serves exactly its measured configuration, to clients that Privacy Pass tokens authorize)");
}

ServeConfig parse_serve_config(Args& args) {
  ServeConfig c;
  c.model = args.require("model");
  server::ServerOptions& options = c.server;
  cloud::NodeOptions& node = c.node;
  options.host = args.get_or("host", options.host);
  options.port = static_cast<int>(args.get_int("port").value_or(options.port));
  options.parallel = static_cast<int>(args.get_int("parallel").value_or(options.parallel));
  options.n_ctx = context_size(args);
  options.tokenizer_path = args.get_or("tokenizer", "");
  options.threads = static_cast<int>(args.get_int("threads").value_or(0));
  options.kv_cache = kv_cache_type(args);
  const int64_t interval_ms = args.get_int("stream-interval-ms").value_or(options.stream_interval_us / 1000);
  options.kernels = kernel_choice(args);
  options.memory_budget = memory_budget(args);
  options.measure_activation_levels = measure_activation_levels(args);
  c.private_node = args.flag("private");
  options.share_prefix = !args.flag("no-prefix-reuse");
  if (const std::string pooling = args.get_or("pooling", "last"); pooling == "mean") options.pooling = Pooling::mean;
  else if (pooling != "last") fail("orchard serve: --pooling must be last or mean, got '", pooling, "'");
  options.admin_port = static_cast<int>(args.get_int("admin-port").value_or(c.private_node ? 0 : -1));
  const std::optional<int64_t> rotation = args.get_int("key-rotation-s"), window = args.get_int("replay-window-s");
  const std::optional<int64_t> validity = args.get_int("attestation-validity-s");
  cloud::AttestationOptions& attest = node.attestation;
  attest.release = args.get_or("release", "");
  attest.node_name = args.get_or("node-name", "");
  attest.attester = args.get_or("attester", attest.attester);
  attest.attester_key = args.get_or("attester-key", "");
  attest.log_url = args.get_or("log-url", "");
  attest.log_token_file = args.get_or("log-token-file", "");
  attest.log_ca_file = args.get_or("log-ca-file", "");
  attest.binary = args.get_or("binary", attest.binary);
  cloud::TokenOptions& tokens = node.tokens;
  tokens.issuer_key = args.get_or("token-issuer-key", "");
  tokens.issuer_name = args.get_or("token-issuer-name", "");
  tokens.origin_info = args.get_or("token-origin-info", "");
  tokens.store = args.get_or("token-store", "");
  c.cloud_relay = args.get_or("cloud-relay", "");
  c.cloud_ca_file = args.get_or("cloud-ca-file", "");
  c.router_config = args.get_or("router-config", "");
  c.router_audit = args.get_or("router-audit", "");
  const bool routed = !c.cloud_relay.empty() || !c.router_config.empty();
  if (c.private_node && routed) fail("orchard serve: --private (a cloud node) and the router's options do not go together");
  if (!routed && (!c.cloud_ca_file.empty() || !c.router_audit.empty()))
    fail("orchard serve: --cloud-ca-file and --router-audit go with --cloud-relay or --router-config");
  const int64_t rotation_s = rotation.value_or(node.key_rotation.count());
  const int64_t window_s = window.value_or(node.gateway.replay_window.count());
  if (!c.private_node && (rotation || window || validity || !attest.release.empty() || !attest.node_name.empty() ||
                          !tokens.issuer_key.empty()))
    fail("orchard serve: --key-rotation-s, --replay-window-s, --node-name, the attestation and the token options go with "
         "--private");
  const int64_t validity_s = validity.value_or(node.attestation_validity.count());
  if (validity_s < 2 || validity_s > 30 * 86400) fail("orchard serve: --attestation-validity-s must be between 2 and 2592000");
  node.attestation_validity = std::chrono::seconds(validity_s);
  if (options.admin_port < -1 || options.admin_port > 65535) fail("orchard serve: --admin-port must be between 0 and 65535");
  // Two seconds at least (RFC 9458 §6.5 and the OHAI discussion); a day at most.
  if (window_s < 2 || window_s > 86400) fail("orchard serve: --replay-window-s must be between 2 and 86400");
  if (rotation_s < 1 || rotation_s > 30 * 86400) fail("orchard serve: --key-rotation-s must be between 1 and 2592000");
  node.key_rotation = std::chrono::seconds(rotation_s);
  node.gateway.replay_window = std::chrono::seconds(window_s);
  if (options.port < 0 || options.port > 65535) fail("orchard serve: --port must be between 0 and 65535");
  if (options.parallel < 1 || options.parallel > 256) fail("orchard serve: --parallel must be between 1 and 256");
  if (options.threads < 0 || options.threads > 256) fail("orchard serve: --threads must be between 0 and 256");
  if (interval_ms < 0 || interval_ms > 1000) fail("orchard serve: --stream-interval-ms must be between 0 and 1000");
  options.stream_interval_us = interval_ms * 1000;
  options.allow_adapter_updates = args.flag("allow-adapter-updates");
  if (c.private_node && options.allow_adapter_updates)
    fail("orchard serve: --allow-adapter-updates does not go with --private (a node serves exactly its measured model)");
  set_serve_api_surface(c, args);
  return c;
}

void set_serve_adapters(ServeConfig& c, const LoraArgs& lora) {
  server::ServerOptions& options = c.server;
  if (lora.adapters.empty()) return;
  if (c.private_node) fail("orchard serve: --lora does not go with --private (a node serves exactly its measured model)");
  if (lora.merge && options.allow_adapter_updates)
    fail("orchard serve: --lora-merge and --allow-adapter-updates do not go together (merged adapters cannot be unloaded)");
  for (const LoraSpec& spec : lora.adapters) {
    if (!server::valid_adapter_name(spec.name))
      fail("orchard serve: --lora ", spec.name, "=", spec.path, ": an adapter's name must be 1 to 64 characters of A-Z, a-z, "
           "0-9, '.', '_' and '-' (requests choose it by \"model\")");
    options.adapters.push_back({.name = spec.name, .path = spec.path, .scale = spec.scale});
  }
  options.merge_adapters = lora.merge;
}

namespace {

volatile std::sig_atomic_t stop_requested = 0;

int run_serve(Args& args) {
  ServeConfig config = parse_serve_config(args);
  set_serve_adapters(config, lora_args(args));
  const SpeculationArgs spec = speculation_args(args);
  args.finish();
  if (config.private_node && spec.mode != SpeculationMode::off)
    fail("orchard serve: speculation (--spec, --draft-model) does not go with --private: the node's measured "
         "configuration does not cover a draft model");
  config.server.speculation = load_speculation(spec, config.server.kernels, config.server.memory_budget);
  const std::string& model = config.model;
  const server::ServerOptions& options = config.server;
  const cloud::NodeOptions& node = config.node;
  const bool private_node = config.private_node;
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGPIPE, SIG_IGN);
  auto should_stop = [] { return stop_requested != 0; };
  if (private_node) {
    cloud::serve_private(
        model, options, node,
        [&](int port, int admin_port) {
          std::fprintf(stderr,
                       "orchard: private node for %s: gateway on http://%s:%d, admin (/metrics) on http://127.0.0.1:%d "
                       "(%d parallel)\n",
                       model.c_str(), options.host.c_str(), port, admin_port, options.parallel);
        },
        should_stop);
    return 0;
  }
  std::unique_ptr<router::DeviceRouter> routed;
  if (!config.cloud_relay.empty() || !config.router_config.empty()) {
    router::EndpointOptions endpoint;
    if (!config.router_config.empty()) endpoint.config = router::load_router_config(config.router_config);
    endpoint.cloud.relay = config.cloud_relay;
    endpoint.cloud.ca_file = config.cloud_ca_file;
    // A dead relay holds a request's cloud thread no longer than this (the client was answered
    // by the device at the deadline already).
    endpoint.cloud.timeout = std::chrono::seconds(120);
    endpoint.audit_log = config.router_audit;
    routed = std::make_unique<router::DeviceRouter>(std::move(endpoint));
  }
  server::serve(
      model, options,
      [&](int port, int admin_port) {
        std::fprintf(stderr, "orchard: serving %s on http://%s:%d (%d parallel)\n", model.c_str(),
                     options.host.c_str(), port, options.parallel);
        if (admin_port >= 0) std::fprintf(stderr, "orchard: admin (/metrics, /health) on http://127.0.0.1:%d\n", admin_port);
        for (const server::AdapterSpec& a : options.adapters)
          std::fprintf(stderr, "orchard: adapter %s from %s (scale %g%s)\n", a.name.c_str(), a.path.c_str(), a.scale,
                       options.merge_adapters ? ", merged into the weights" : "");
        if (options.allow_adapter_updates)
          std::fprintf(stderr, "orchard: adapters may be loaded and unloaded at /v1/adapters\n");
        if (routed)
          std::fprintf(stderr, "orchard: routing requests between this device and %s\n",
                       config.cloud_relay.empty() ? "no cloud (no --cloud-relay)" : config.cloud_relay.c_str());
      },
      should_stop,
      routed ? server::RouteInstaller([&](server::FrontServer& http, const server::ServedModel& served) {
        routed->install(http, served);
      })
             : server::RouteInstaller{});
  return 0;
}

const RegisterCommand kServe("serve", "serve a model over the OpenAI HTTP API (--private: as a private cloud node)", run_serve,
                           {"private", "no-prefix-reuse", "allow-adapter-updates", "lora-merge"});

}  // namespace
}  // namespace orchard::cli
