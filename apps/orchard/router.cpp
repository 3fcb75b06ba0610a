// `orchard router explain` and `orchard router calibrate` (issue 19, docs/router.md): the router's
// decision for one prompt as JSON, and the calibration over a prompt set: `pre`'s model, fitted
// to predict the device's own answer confidence from the prompt's features, and its threshold,
// or the cascade's threshold, each sending a chosen fraction of the prompts to the cloud. Both run
// the local model's prefill for the prompt's signals, as the device endpoint does per request.
#include <algorithm>
#include <cmath>
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

json distribution(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {{"min", v.front()}, {"p10", quantile(v, 0.1)}, {"p25", quantile(v, 0.25)}, {"p50", quantile(v, 0.5)},
          {"p75", quantile(v, 0.75)}, {"p90", quantile(v, 0.9)}, {"max", v.back()}};
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = double(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

// The device's own answer to a prompt (greedy, as the endpoint answers) and its cascade signals.
AnswerSignals local_answer(Engine& engine, const std::vector<int32_t>& tokens, int64_t max_tokens) {
  GenerationJob job;
  job.prompt = tokens;
  job.options.sampling.temperature = 0;
  job.options.max_tokens = max_tokens;
  job.options.top_logprobs = kCascadeTopLogprobs;
  std::vector<TokenStep> steps;
  job.on_step = [&](const TokenStep& step) {
    steps.push_back(step);
    return true;
  };
  const JobSummary summary = engine.run(std::move(job));
  if (!summary.error.empty()) fail("router calibrate: ", summary.error);
  return answer_signals(steps);
}

std::vector<std::string> split_names(const std::string& list) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(list);
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// The cascade signal's value and which side of the threshold the cloud takes.
double cascade_value(const AnswerSignals& a, CascadeSignal signal) {
  switch (signal) {
    case CascadeSignal::mean_logprob: return a.mean_logprob;
    case CascadeSignal::min_margin: return a.min_margin;
    case CascadeSignal::mean_entropy: return a.mean_entropy;
  }
  return 0;
}

int run_calibrate(Args& args) {
  const std::string model_path = args.require("model");
  const std::string prompts_path = args.require("prompts");
  const std::string out_path = args.require("out");
  const std::optional<double> fraction = args.get_double("cloud-fraction");
  const std::string mode = args.get_or("mode", "pre");
  const std::string pre_rule = args.get_or("pre-rule", "fitted");
  const std::optional<std::string> config_path = args.get("config");
  const int64_t max_tokens = args.get_int("max-tokens").value_or(64);
  const double ridge = args.get_double("ridge").value_or(1.0);
  const std::optional<std::string> feature_list = args.get("features");
  const std::optional<std::string> signal_name = args.get("signal");
  const KernelChoice kernels = kernel_choice(args);
  args.finish();
  if (!fraction) fail("router calibrate: --cloud-fraction is required");
  if (!(*fraction >= 0 && *fraction <= 1)) fail("--cloud-fraction: must be in [0, 1], got ", *fraction);
  if (mode != "pre" && mode != "cascade") fail("--mode: must be pre or cascade, got '", mode, "'");
  if (pre_rule != "fitted" && pre_rule != "surprisal")
    fail("--pre-rule: must be fitted or surprisal, got '", pre_rule, "'");
  if (max_tokens < 1 || max_tokens > 4096) fail("--max-tokens: must be in [1, 4096], got ", max_tokens);
  if (!(ridge >= 0) || !std::isfinite(ridge)) fail("--ridge: must be >= 0, got ", ridge);
  RouterConfig config = config_path ? load_router_config(*config_path) : RouterConfig{};
  if (signal_name) {
    if (*signal_name == "mean_logprob") config.cascade_signal = CascadeSignal::mean_logprob;
    else if (*signal_name == "min_margin") config.cascade_signal = CascadeSignal::min_margin;
    else if (*signal_name == "mean_entropy") config.cascade_signal = CascadeSignal::mean_entropy;
    else fail("--signal: must be mean_logprob, min_margin or mean_entropy, got '", signal_name->substr(0, 64), "'");
  }
  const std::vector<std::string> features = feature_list ? split_names(*feature_list) : pre_feature_names();
  for (const std::string& f : features)
    if (!pre_feature(PreSignals{}, f)) fail("--features: unknown feature '", f.substr(0, 64), "'");
  // The fitted pre model and the cascade learn from the device's own answers; the surprisal rule
  // needs only the prefill.
  const bool fitted = mode == "pre" && pre_rule == "fitted";
  const bool needs_answers = mode == "cascade" || fitted;

  Device d = load_device(model_path, config, kernels);
  std::vector<PreSignals> signals;
  std::vector<AnswerSignals> answers;
  int64_t too_long = 0, empty_answers = 0, line_no = 0;
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
    if (needs_answers) {
      const AnswerSignals a = local_answer(*d.engine, tokens, max_tokens);
      if (a.tokens == 0) {
        ++empty_answers;  // nothing to judge: the cascade accepts it; no confidence to learn from
        continue;
      }
      answers.push_back(a);
    }
    signals.push_back(*s);
  }
  if (signals.empty()) fail(prompts_path, ": no prompt that fits the device's context (and gets a non-empty answer)");

  json summary = {{"mode", mode}, {"prompts", signals.size()}, {"too_long_for_device", too_long},
                  {"cloud_fraction", *fraction}};
  if (needs_answers) summary["empty_answers"] = empty_answers;
  std::vector<double> values;  // the routed value per prompt, the cloud taking the high ones
  if (mode == "pre") {
    config.mode = RouterMode::pre;
    if (fitted) {
      std::vector<double> confidence;
      for (const AnswerSignals& a : answers) confidence.push_back(a.mean_logprob);
      config.pre_model = fit_pre_model(signals, confidence, features, ridge);
      std::vector<double> predicted;
      for (const PreSignals& s : signals) predicted.push_back(-pre_score(s, config.pre_model));
      summary["fit"] = {{"target", "mean_logprob of the device's answer"}, {"features", features.size()},
                        {"ridge", ridge}, {"max_tokens", max_tokens},
                        {"r_predicted_vs_answer", correlation(predicted, confidence)},
                        {"answer_mean_logprob", distribution(confidence)}};
    } else {
      config.pre_model = PreModel{};
    }
    for (const PreSignals& s : signals) values.push_back(pre_score(s, config.pre_model));
    config.pre_threshold = threshold_for_fraction(values, *fraction);
    summary["threshold"] = config.pre_threshold;
    summary["score"] = distribution(values);
    summary["mean_surprisal"] = distribution([&] {
      std::vector<double> v;
      for (const PreSignals& s : signals) v.push_back(s.mean_surprisal);
      return v;
    }());
  } else {
    config.mode = RouterMode::cascade;
    // threshold_for_fraction sends the high values; the cascade escalates the low mean logprob
    // and margin (the unsure side), so those are negated and so is their threshold.
    const bool low_is_unsure = config.cascade_signal != CascadeSignal::mean_entropy;
    for (const AnswerSignals& a : answers)
      values.push_back(low_is_unsure ? -cascade_value(a, config.cascade_signal) : cascade_value(a, config.cascade_signal));
    const double t = threshold_for_fraction(values, *fraction);
    config.cascade_threshold = low_is_unsure ? -t : t;
    std::vector<double> raw;
    for (const AnswerSignals& a : answers) raw.push_back(cascade_value(a, config.cascade_signal));
    summary["signal"] = cascade_signal_name(config.cascade_signal);
    summary["threshold"] = config.cascade_threshold;
    summary["max_tokens"] = max_tokens;
    summary[std::string(cascade_signal_name(config.cascade_signal))] = distribution(raw);
  }
  int64_t to_cloud = 0;
  if (mode == "pre") {
    to_cloud = std::count_if(values.begin(), values.end(), [&](double v) { return v > config.pre_threshold; });
  } else {
    for (const AnswerSignals& a : answers) to_cloud += accept_local_answer(a, config) ? 0 : 1;
  }
  summary["to_cloud"] = to_cloud;
  if (config.default_class == PrivacyClass::device_only)
    std::fprintf(stderr, "note: default_class is device-only: requests that name no class stay on the device\n");
  const std::string text = to_json(config).dump(2) + "\n";
  write_file_atomically(out_path, text.data(), text.size());
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

const RegisterCommand kExplain("router explain", "the hybrid router's decision for a prompt, as JSON", run_explain);
const RegisterCommand kCalibrate("router calibrate",
                                 "fit pre's model and threshold, or the cascade's threshold, to send a fraction to the cloud",
                                 run_calibrate);

}  // namespace
}  // namespace orchard::cli
