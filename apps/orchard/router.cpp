// `orchard router explain` and `orchard router calibrate` (issue 19, docs/router.md): the router's
// decision for one prompt as JSON, and the `pre` threshold that sends a chosen fraction of a
// prompt set to the cloud. Both run the local model's prefill for the prompt's signals, as the
// device endpoint will per request.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "command.h"
#include "model_options.h"
#include "orchard/chat_template.h"
#include "orchard/engine.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "router/config.h"
#include "router/decision.h"
#include "router/signals.h"

namespace orchard::cli {
namespace {

using nlohmann::json;
using namespace orchard::router;

struct Device {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};

Device load_device(const std::string& path, const RouterConfig& config, KernelChoice kernels) {
  Device d;
  d.model = Model::load(path, {.kernels = kernels});
  d.tokenizer = load_model_tokenizer(*d.model);
  d.engine = std::make_unique<Engine>(d.model, d.tokenizer, EngineOptions{.n_ctx = config.device_context, .kernels = kernels});
  return d;
}

// The signals when the prompt fits the device's context (one more token is needed for its
// logits); a prompt that does not fit is routed by capability and needs none.
std::optional<PreSignals> signals_if_fits(Engine& engine, const std::vector<int32_t>& tokens) {
  if (tokens.empty() || int64_t(tokens.size()) + 1 > engine.n_ctx()) return std::nullopt;
  return compute_pre_signals(engine, tokens);
}

int run_explain(Args& args) {
  const std::string model_path = args.require("model");
  const std::string prompt = args.require("prompt");
  const std::optional<std::string> config_path = args.get("config");
  const std::optional<std::string> privacy = args.get("class");
  const std::string model_name = args.get_or("model-name", "");
  const KernelChoice kernels = kernel_choice(args);
  args.finish();
  const RouterConfig config = config_path ? load_router_config(*config_path) : RouterConfig{};
  if (privacy) parse_privacy_class(*privacy, "--class");  // a typo fails before the model loads

  Device d = load_device(model_path, config, kernels);
  const std::vector<int32_t> tokens = d.tokenizer->encode(prompt, d.tokenizer->adds_bos());
  const std::optional<PreSignals> signals = signals_if_fits(*d.engine, tokens);

  RouteRequest request;
  request.privacy_class = privacy;
  request.texts = {prompt};
  request.model = model_name;
  request.prompt_tokens = int64_t(tokens.size());
  request.device_context = d.engine->n_ctx();
  const Decision decision = decide(request, config, signals ? &*signals : nullptr);
  std::printf("%s\n", to_json(decision).dump().c_str());
  return 0;
}

// A calibration prompt's text as the device sees it: a "prompt" as is, "messages" through the
// model's chat template (their contents joined by newlines when it has none).
std::vector<int32_t> prompt_tokens(const json& line, const Tokenizer& tokenizer, const std::string& where) {
  if (!line.is_object()) fail(where, ": expected an object with \"prompt\" or \"messages\"");
  if (line.contains("prompt")) {
    if (!line["prompt"].is_string()) fail(where, ": \"prompt\" must be a string");
    return tokenizer.encode(line["prompt"].get<std::string>(), tokenizer.adds_bos());
  }
  if (!line.contains("messages")) fail(where, ": expected \"prompt\" or \"messages\"");
  const json& messages = line["messages"];
  if (!messages.is_array() || messages.empty()) fail(where, ": \"messages\" must be a non-empty array");
  for (const json& m : messages)
    if (!m.is_object() || !m.contains("content") || !m["content"].is_string())
      fail(where, ": each message needs a string \"content\"");
  if (tokenizer.chat_template().empty()) {
    std::string text;
    for (const json& m : messages) {
      if (!text.empty()) text += '\n';
      text += m["content"].get_ref<const std::string&>();
    }
    return tokenizer.encode(text, tokenizer.adds_bos());
  }
  const std::optional<int32_t> bos = tokenizer.bos_id();
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  const std::string bos_text = bos ? tokenizer.token_text(*bos) : "";
  const ChatTemplate tpl(tokenizer.chat_template(), bos_text, eos.empty() ? "" : tokenizer.token_text(eos[0]));
  const std::string rendered = tpl.render_chat(messages.dump());
  // A template that writes BOS itself gets none prepended.
  const bool add_bos = tokenizer.adds_bos() && !(bos && !bos_text.empty() && rendered.starts_with(bos_text));
  return tokenizer.encode(rendered, add_bos);
}

double quantile(const std::vector<double>& sorted, double q) {
  return sorted[size_t(std::llround(q * double(sorted.size() - 1)))];
}

int run_calibrate(Args& args) {
  const std::string model_path = args.require("model");
  const std::string prompts_path = args.require("prompts");
  const std::string out_path = args.require("out");
  const std::optional<double> fraction = args.get_double("cloud-fraction");
  const std::string mode = args.get_or("mode", "pre");
  const std::optional<std::string> config_path = args.get("config");
  const KernelChoice kernels = kernel_choice(args);
  args.finish();
  if (!fraction) fail("router calibrate: --cloud-fraction is required");
  if (!(*fraction >= 0 && *fraction <= 1)) fail("--cloud-fraction: must be in [0, 1], got ", *fraction);
  // The cascade's signal needs the local answers generated; not built yet (docs/router.md).
  if (mode != "pre") fail("--mode: only 'pre' can be calibrated so far, got '", mode, "'");
  RouterConfig config = config_path ? load_router_config(*config_path) : RouterConfig{};

  Device d = load_device(model_path, config, kernels);
  std::vector<double> values;
  int64_t too_long = 0, line_no = 0;
  std::istringstream lines(read_text_file(prompts_path));
  std::string line;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = prompts_path + ":" + std::to_string(line_no);
    const std::vector<int32_t> tokens = prompt_tokens(parse_json(line, where), *d.tokenizer, where);
    const std::optional<PreSignals> s = signals_if_fits(*d.engine, tokens);
    if (!s) {
      ++too_long;  // goes to the cloud by capability, whatever the threshold
      continue;
    }
    values.push_back(s->mean_surprisal);
  }
  if (values.empty()) fail(prompts_path, ": no prompt that fits the device's context");
  const double threshold = threshold_for_fraction(values, *fraction);
  config.mode = RouterMode::pre;
  config.pre_threshold = threshold;
  if (config.default_class == PrivacyClass::device_only)
    std::fprintf(stderr, "note: default_class is device-only: requests that name no class stay on the device\n");
  const std::string text = to_json(config).dump(2) + "\n";
  write_file_atomically(out_path, text.data(), text.size());

  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  const int64_t to_cloud = std::count_if(values.begin(), values.end(), [&](double v) { return v > threshold; });
  const json summary = {
      {"prompts", values.size()},
      {"too_long_for_device", too_long},
      {"cloud_fraction", *fraction},
      {"threshold", threshold},
      {"to_cloud", to_cloud},
      {"mean_surprisal",
       {{"min", sorted.front()}, {"p10", quantile(sorted, 0.1)}, {"p25", quantile(sorted, 0.25)},
        {"p50", quantile(sorted, 0.5)}, {"p75", quantile(sorted, 0.75)}, {"p90", quantile(sorted, 0.9)},
        {"max", sorted.back()}}}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

const RegisterCommand kExplain("router explain", "the hybrid router's decision for a prompt, as JSON", run_explain);
const RegisterCommand kCalibrate("router calibrate",
                                 "the pre-mode threshold that sends a fraction of a prompt set to the cloud",
                                 run_calibrate);

}  // namespace
}  // namespace orchard::cli
