#include "runtime/generate.h"

#include <algorithm>

#include "base/error.h"

namespace orchard {

GenerateResult generate(Context& context, const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                        const GenerateOptions& options,
                        const std::function<bool(std::string_view)>& on_text) {
  if (prompt.empty()) fail("generate: the prompt has no tokens");
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  Sampler sampler(options.sampling);
  for (int32_t t : prompt) sampler.remember(t);

  // The decoder sees the prompt first so that the generated text is decoded in context (a
  // SentencePiece decoder, for one, strips the space only at the very start of a text).
  StreamingDecoder decoder(tokenizer);
  for (int32_t t : prompt) decoder.push(t);

  GenerateResult result;
  std::vector<float> logits = context.eval_last(prompt);
  while (true) {
    if (options.max_tokens >= 0 && static_cast<int64_t>(result.tokens.size()) >= options.max_tokens) {
      result.stop = StopReason::max_tokens;
      break;
    }
    if (options.constraint) {
      // The constraint steers to a close within whichever limit comes first.
      int64_t left = context.n_ctx() - context.n_past() + 1;
      if (options.max_tokens >= 0) left = std::min<int64_t>(left, options.max_tokens - int64_t(result.tokens.size()));
      options.constraint->apply(logits, left);
    }
    const int32_t next = sampler.sample(logits);
    if (options.constraint) options.constraint->accept(next);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
      result.stop = StopReason::end_of_sequence;
      break;
    }
    result.tokens.push_back(next);
    const std::string piece = decoder.push(next);
    if (!piece.empty() && !on_text(piece)) {
      result.stop = StopReason::cancelled;
      return result;
    }
    if (options.constraint && options.constraint->finished()) {
      result.stop = StopReason::end_of_sequence;  // only end of sequence could follow
      break;
    }
    if (context.n_past() >= context.n_ctx()) {
      result.stop = StopReason::context_full;
      break;
    }
    logits = context.eval_last(std::span<const int32_t>(&next, 1));
  }
  const std::string rest = decoder.finish();
  if (!rest.empty()) on_text(rest);
  return result;
}

}  // namespace orchard
