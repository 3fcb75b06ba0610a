// The options of `orchard serve`, parsed once for `serve` and for `release measure`, which must
// measure exactly the configuration a node started with the same options will measure.
#pragma once
#include <string>

#include "adapter_options.h"
#include "args.h"
#include "cloud/node_options.h"
#include "server/http_server.h"

namespace orchard::cli {

struct ServeConfig {
  std::string model;
  server::ServerOptions server;
  cloud::NodeOptions node;
  bool private_node = false;
  // The hybrid router's device endpoint (docs/router.md): set when --cloud-relay or
  // --router-config is given.
  std::string cloud_relay, cloud_ca_file, router_config, router_audit;
};

// Reads serve's options from `args` (the caller calls args.finish()); throws on a bad value.
ServeConfig parse_serve_config(Args& args);
// Adds --lora's adapters (and --lora-merge) to `config`; throws for names a request could not
// choose and for combinations that do not go together (--private, --allow-adapter-updates with
// --lora-merge).
void set_serve_adapters(ServeConfig& config, const LoraArgs& lora);

}  // namespace orchard::cli
