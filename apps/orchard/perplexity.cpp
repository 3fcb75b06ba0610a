// orchard perplexity --model M (--text-file F | --tokens-file F | --sequences N) [--seq-len L]
// Perplexity of the text cut into sequences of --seq-len tokens (default 512), each scored on
// predicting its tokens after the first.
#include <cstdio>

#include "command.h"
#include "eval_options.h"
#include "model_options.h"
#include "progress.h"

namespace orchard::cli {
namespace {

int run_perplexity(Args& args) {
  const std::string path = args.require("model");
  const KernelChoice kernels = kernel_choice(args);
  auto model = Model::load(path, {.kernels = kernels});
  const TokenSequences sequences = evaluation_sequences(args, *model, 512);
  args.finish();

  ProgressBar bar("perplexity");
  const PerplexityResult r = perplexity(model, sequences, {.kernels = kernels},
                                        [&](int64_t done, int64_t total) { bar.update(double(done) / total); });
  bar.done();
  std::printf("model:       %s\n", path.c_str());
  std::printf("predictions: %lld in %zu sequences of %zu tokens\n", static_cast<long long>(r.predictions),
              sequences.size(), sequences[0].size());
  std::printf("mean NLL:    %.6f nats\n", r.mean_nll);
  std::printf("perplexity:  %.4f\n", r.perplexity);
  return 0;
}

const RegisterCommand kPerplexity("perplexity", "perplexity of a model over a text or token file", run_perplexity);

}  // namespace
}  // namespace orchard::cli
