// orchard run --model PATH --prompt TEXT [--raw] [sampling options] [--max-tokens N]
//             [--kv-type f32|f16|int8] [--memory-budget SIZE] [--verbose]
//             [--spec ngram | --draft-model PATH] [--draft-max K] [--draft-min N]
//             [--lora NAME=PATH[:SCALE] [--lora-merge]]
// Streams exactly the generated text to stdout; everything else goes to stderr.
#include <cstdio>

#include "base/error.h"
#include "command.h"
#include "adapter_options.h"
#include "model_options.h"
#include "orchard/engine.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "runtime/chat_prompt.h"

namespace orchard::cli {
namespace {

int run_generation(Args& args) {
  const std::string path = args.require("model");
  const std::string prompt = args.require("prompt");
  const bool raw = args.flag("raw");
  const std::optional<std::string> tokenizer_path = args.get("tokenizer");
  const std::optional<int64_t> max_tokens = args.get_int("max-tokens");
  const int64_t n_ctx = context_size(args);
  const KernelChoice kernels = kernel_choice(args);
  uint64_t budget = memory_budget(args);
  const KvCacheType kv_cache = kv_cache_type(args);
  const bool verbose = args.flag("verbose");
  const SpeculationArgs spec = speculation_args(args);
  const LoraArgs lora = lora_args(args);
  StreamOptions options{.sampling = sampling_params(args), .max_tokens = max_tokens.value_or(-1)};
  const bool measure_levels = measure_activation_levels(args);
  args.finish();
  if (max_tokens && *max_tokens < 0) fail("orchard run: --max-tokens must be >= 0");

  const SpeculationOptions speculation = load_speculation(spec, kernels, budget);
  std::shared_ptr<const Model> model =
      Model::load(path, {.kernels = kernels, .memory_budget = budget, .measure_activation_levels = measure_levels});
  const std::vector<NamedAdapter> adapters = load_lora(lora, model, kernels);
  if (adapters.size() > 1) fail("orchard run: a generation applies one --lora (several together: --lora-merge)");
  auto tokenizer = load_model_tokenizer(*model, tokenizer_path.value_or(""));
  const std::vector<int32_t> prompt_ids = raw ? tokenizer->encode(prompt, tokenizer->adds_bos())
                                              : chat_prompt_ids(*tokenizer, prompt);
  Engine engine(model, tokenizer,
                {.n_ctx = n_ctx, .kernels = kernels, .kv_cache = kv_cache, .speculation = speculation});
  GenerationJob job{.prompt = prompt_ids, .options = options};
  if (!adapters.empty()) job.adapter = adapters.front().adapter;
  job.on_step = [](const TokenStep& step) {
    std::fwrite(step.text.data(), 1, step.text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  const JobSummary summary = engine.run(std::move(job));
  if (!summary.error.empty()) fail("orchard run: ", summary.error);
  std::fputc('\n', stdout);
  if (verbose) {
    print_flash_stats(engine.flash_stats());
    print_speculation(summary, engine.flash_stats());
  }
  return 0;
}

const RegisterCommand kRun("run", "generate text from a prompt (chat template applied unless --raw)",
                           run_generation, {"raw", "verbose", "lora-merge"});

}  // namespace
}  // namespace orchard::cli
