// orchard quantize --model IN --out OUT.gguf --type TYPE [--calibration TEXT | --calibration-tokens-file IDS]
//                  [--calibration-tokens N (default 4096)] [--calibration-chunk N (default 512)]
//                  [--threads N]
// Writes IN (GGUF, Hugging Face folder or llama2.c checkpoint) as a GGUF of standard block types,
// with error-minimizing scales, weighted by activation statistics: measured on a calibration text
// when one is given, else estimated from the weights (quant/activation_moments.h).
#include <cstdio>
#include <thread>

#include "base/error.h"
#include "base/mapped_file.h"
#include "command.h"
#include "model_options.h"
#include "progress.h"
#include "quant/activation_moments.h"
#include "quant/quantize_model.h"
#include "orchard/engine.h"

namespace orchard::cli {
namespace {

int run_quantize(Args& args) {
  const std::string in = args.require("model");
  const std::string out = args.require("out");
  const std::string type = args.require("type");
  const auto calibration = args.get("calibration");
  const auto calibration_ids = args.get("calibration-tokens-file");
  const int64_t calibration_tokens = args.get_int("calibration-tokens").value_or(4096);
  const int64_t chunk = args.get_int("calibration-chunk").value_or(512);
  const auto tokenizer_path = args.get("tokenizer");
  const int threads = static_cast<int>(args.get_int("threads").value_or(0));
  args.finish();
  find_recipe(type);  // a bad --type fails before any loading
  if (calibration_tokens <= 0) fail("orchard quantize: --calibration-tokens must be positive");
  if (threads < 0) fail("orchard quantize: --threads must be >= 0");
  if (is_directory(out)) fail(out, ": is a folder; --out names the GGUF file to write");

  auto model = Model::load(in, {.kernels = KernelChoice::reference});
  ImportanceTable importance;
  if (calibration && calibration_ids)
    fail("orchard quantize: give --calibration (text) or --calibration-tokens-file (ids), not both");
  const std::optional<std::string> calibration_source = calibration ? calibration : calibration_ids;
  if (calibration_source) {
    std::vector<int32_t> tokens;
    if (calibration) {
      auto tokenizer = load_model_tokenizer(*model, tokenizer_path.value_or(""));
      tokens = tokenizer->encode(read_text_file(*calibration), false);
    } else {
      tokens = read_token_file(*calibration_ids);
    }
    if (tokens.empty()) fail(*calibration_source, ": calibration text holds no tokens");
    if (static_cast<int64_t>(tokens.size()) > calibration_tokens) tokens.resize(static_cast<size_t>(calibration_tokens));
    ProgressBar bar("calibrating");
    importance = collect_importance(model, tokens, chunk,
                                    [&](int64_t done, int64_t total) { bar.update(double(done) / total); });
    bar.done();
    std::fprintf(stderr, "calibration: %lld tokens of %s in %.1f s\n", static_cast<long long>(importance.tokens),
                 calibration_source->c_str(), bar.seconds());
  }

  ProgressBar bar("quantizing");
  QuantizeOptions options;
  options.type = type;
  // Without calibration, the statistics are estimated from the weights.
  if (!calibration_source) importance = estimate_activation_moments(*model);
  options.importance = &importance;
  options.threads = threads;
  options.progress = [&](uint64_t done, uint64_t total, const std::string& tensor) {
    bar.update(total ? double(done) / double(total) : 1.0, tensor);
  };
  const QuantizeResult r = quantize_model(*model, out, options);
  bar.done();
  std::fprintf(stderr, "wrote %s: %s, %.2f MiB, %.3f bits per weight, %.1f s\n", out.c_str(), type.c_str(),
               r.file_bytes / 1048576.0, 8.0 * double(r.file_bytes) / double(r.parameters), bar.seconds());
  return 0;
}

const RegisterCommand kQuantize("quantize", "write a model as a quantized GGUF (--type q4_os, q4_om, q4_0, q8_0, ...)",
                                run_quantize);

}  // namespace
}  // namespace orchard::cli
