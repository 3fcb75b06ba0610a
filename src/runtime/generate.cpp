#include "runtime/generate.h"

#include "base/error.h"

namespace orchard {

GenerateResult generate(Context& context, const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                        const StreamOptions& options, const std::function<bool(std::string_view)>& on_text,
                        const std::atomic<bool>* cancel) {
  if (prompt.empty()) fail("generate: the prompt has no tokens");
  if (context.n_past() >= static_cast<int64_t>(prompt.size()))
    fail("generate: the context already holds the whole prompt");
  // The constraint steers to a close within what the context leaves when no budget is set.
  StreamOptions bounded = options;
  bounded.sampling.kernels = context.kernels();
  const int64_t room = context.n_ctx() - static_cast<int64_t>(prompt.size());
  if (bounded.max_tokens < 0 || bounded.max_tokens > room) bounded.max_tokens = room;
  TokenStream stream(tokenizer, prompt, bounded);
  GenerateResult result;
  auto end = [&](StopReason reason) {
    const TokenStep last = stream.finish(reason);
    if (!last.text.empty() && reason != StopReason::cancelled) on_text(last.text);
    result.stop = reason;
    return result;
  };
  std::vector<float> logits = context.eval_last(prompt.subspan(static_cast<size_t>(context.n_past())));
  while (true) {
    if (cancel && cancel->load()) return end(StopReason::cancelled);
    const TokenStep step = stream.next(logits);
    if (step.token >= 0 && step.stop != StopReason::end_of_sequence) result.tokens.push_back(step.token);
    if (!step.text.empty() && !on_text(step.text)) return end(StopReason::cancelled);
    if (step.stop != StopReason::none) {
      result.stop = step.stop;
      return result;
    }
    if (context.n_past() >= context.n_ctx()) return end(StopReason::context_full);
    logits = context.eval_last(std::span<const int32_t>(&step.token, 1));
  }
}

}  // namespace orchard
