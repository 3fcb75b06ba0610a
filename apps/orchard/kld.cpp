// orchard kld --base M0 --model M1 (--text-file F | --tokens-file F | --sequences N --seq-len L --seed S)
// Mean KL divergence of M1's next-token distributions from M0's over every position.
#include <cstdio>

#include "command.h"
#include "eval_options.h"
#include "model_options.h"
#include "progress.h"

namespace orchard::cli {
namespace {

int run_kld(Args& args) {
  const std::string base_path = args.require("base");
  const std::string model_path = args.require("model");
  const KernelChoice kernels = kernel_choice(args);
  auto base = Model::load(base_path, {.kernels = kernels});
  auto model = Model::load(model_path, {.kernels = kernels});
  const TokenSequences sequences = evaluation_sequences(args, *base, 64);
  args.finish();

  ProgressBar bar("kld");
  const DivergenceResult r = compare_models(base, model, sequences, {.kernels = kernels},
                                            [&](int64_t done, int64_t total) { bar.update(double(done) / total); });
  bar.done();
  std::printf("base:            %s (%.2f MiB)\n", base_path.c_str(), base->file_bytes() / 1048576.0);
  std::printf("model:           %s (%.2f MiB)\n", model_path.c_str(), model->file_bytes() / 1048576.0);
  std::printf("sequences:       %zu x %zu tokens (%lld positions)\n", sequences.size(), sequences[0].size(),
              static_cast<long long>(r.positions));
  std::printf("mean KL:         %.6g +- %.2g nats\n", r.mean_kl, r.kl_standard_error);
  std::printf("max KL:          %.6g\n", r.max_kl);
  std::printf("top-1 agreement: %.2f%%\n", 100.0 * r.top1_agreement);
  return 0;
}

const RegisterCommand kKld("kld", "mean KL divergence of a model's next-token distributions from a base model's", run_kld);

}  // namespace
}  // namespace orchard::cli
