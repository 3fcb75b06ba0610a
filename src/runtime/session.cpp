// Session: a conversation over an engine of one slot (orchard/engine.h). The slot's cache keeps
// the last turn's tokens, so the engine's prefix match makes each turn prefill only what is new.
#include "orchard/engine.h"
#include "orchard/error.h"

namespace orchard {

static EngineOptions one_slot(EngineOptions options) {
  options.slots = 1;
  return options;
}

Session::Session(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, EngineOptions options)
    : engine_(std::move(model), std::move(tokenizer), one_slot(options)) {}

GenerateResult Session::reply(std::span<const int32_t> prompt, const StreamOptions& options,
                              const std::function<bool(std::string_view)>& on_text, const std::atomic<bool>* cancel) {
  GenerateResult result;
  GenerationJob job;
  job.prompt.assign(prompt.begin(), prompt.end());
  job.options = options;
  job.adapter = adapter_;
  job.on_step = [&](const TokenStep& step) {
    if (cancel && cancel->load()) return false;
    if (step.token >= 0 && step.stop != StopReason::end_of_sequence) result.tokens.push_back(step.token);
    return step.text.empty() || on_text(step.text);
  };
  const JobSummary summary = engine_.run(std::move(job));
  if (!summary.error.empty()) throw Error(summary.error);
  result.stop = summary.stop;
  result.reused_tokens = last_reused_ = summary.cached_prompt_tokens;
  result.summary = summary;
  return result;
}

}  // namespace orchard
