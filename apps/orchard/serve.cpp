// orchard serve --model PATH [--host H] [--port N] [--parallel K] [--ctx-size N] [--threads N]
//               [--kv-type f32|f16|int8] [--stream-interval-ms MS] [--memory-budget SIZE]
// An OpenAI-compatible HTTP server (see src/server/).
#include <csignal>
#include <cstdio>

#include "base/error.h"
#include "command.h"
#include "model_options.h"
#include "server/http_server.h"

namespace orchard::cli {
namespace {

volatile std::sig_atomic_t stop_requested = 0;

int run_serve(Args& args) {
  const std::string model = args.require("model");
  server::ServerOptions options;
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
  args.finish();
  if (options.port < 0 || options.port > 65535) fail("orchard serve: --port must be between 0 and 65535");
  if (options.parallel < 1 || options.parallel > 256) fail("orchard serve: --parallel must be between 1 and 256");
  if (options.threads < 0 || options.threads > 256) fail("orchard serve: --threads must be between 0 and 256");
  if (interval_ms < 0 || interval_ms > 1000) fail("orchard serve: --stream-interval-ms must be between 0 and 1000");
  options.stream_interval_us = interval_ms * 1000;
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGPIPE, SIG_IGN);
  server::serve(
      model, options,
      [&](int port) {
        std::fprintf(stderr, "orchard: serving %s on http://%s:%d (%d parallel)\n", model.c_str(),
                     options.host.c_str(), port, options.parallel);
      },
      [] { return stop_requested != 0; });
  return 0;
}

const RegisterCommand kServe("serve", "serve a model over the OpenAI HTTP API", run_serve);

}  // namespace
}  // namespace orchard::cli
