// orchard logits --model PATH --tokens 1,2,3 --out FILE [--kernels reference|fast] [--threads N]
//                [--kv-type f32|f16|int8] [--memory-budget SIZE] [--verbose]
// Writes the logits of every position as little-endian float32, shape [n_tokens, n_vocab].
#include <algorithm>
#include <bit>
#include <cstdio>

#include "command.h"
#include "model/context_size.h"
#include "model_options.h"
#include "orchard/model.h"

namespace orchard::cli {
namespace {

int run_logits(Args& args) {
  const std::string path = args.require("model");
  const std::vector<int32_t> tokens = parse_token_list(args.require("tokens"), "--tokens");
  const std::string out = args.require("out");
  const KernelChoice kernels = kernel_choice(args);
  const uint64_t budget = memory_budget(args);
  const KvCacheType kv_cache = kv_cache_type(args);
  const bool verbose = args.flag("verbose");
  const int64_t n_ctx = context_size(args);
  const int n_threads = static_cast<int>(args.get_int("threads").value_or(0));
  const bool measure_levels = measure_activation_levels(args);
  args.finish();

  auto model = Model::load(path, {.kernels = kernels, .memory_budget = budget, .measure_activation_levels = measure_levels});
  ContextOptions options{.n_ctx = n_ctx, .kernels = kernels, .n_threads = n_threads, .kv_cache = kv_cache};
  // More tokens than the default context holds: the model's whole trained context.
  if (options.n_ctx == 0 && static_cast<int64_t>(tokens.size()) > default_context_size(model->config()))
    options.n_ctx = model->config().context_length;
  Context context(model, options);
  const std::vector<float> logits = context.eval(tokens);
  static_assert(std::endian::native == std::endian::little, "logits are written in host order");
  write_file_atomically(out, logits.data(), logits.size() * sizeof(float));
  std::fprintf(stderr, "wrote %zu x %lld logits to %s\n", tokens.size(),
               (long long)model->config().n_vocab, out.c_str());
  if (verbose) print_flash_stats(context.flash_stats());
  return 0;
}

const RegisterCommand kLogits("logits", "write the logits of every position of a token sequence", run_logits,
                            {"verbose"});

}  // namespace
}  // namespace orchard::cli
