#include "runtime/speculation.h"

#include <algorithm>

#include "base/error.h"

namespace orchard {

std::vector<int32_t> prompt_lookup(std::span<const int32_t> context, int64_t k, int ngram_max, int ngram_min) {
  const int64_t length = static_cast<int64_t>(context.size());
  for (int64_t n = std::min<int64_t>(ngram_max, length - 1); n >= std::max(1, ngram_min); --n) {
    const std::span<const int32_t> suffix = context.subspan(static_cast<size_t>(length - n));
    // Latest first: the most recent occurrence is the likeliest to continue the same way. But
    // in a repetition the latest ones end just before the suffix, with a token or two after
    // them: take the latest followed by k tokens, else the one followed by most. A match must
    // end before the suffix does, so that something follows it.
    int64_t best_from = -1, best_count = 0;
    for (int64_t start = length - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), context.begin() + start)) continue;
      const int64_t from = start + n, count = std::min(k, length - from);
      if (count > best_count) best_from = from, best_count = count;
      if (count == k) break;
    }
    if (best_count > 0)
      return std::vector<int32_t>(context.begin() + best_from, context.begin() + best_from + best_count);
  }
  return {};
}

void check_speculation(const SpeculationOptions& options, const Model& model, const Tokenizer& tokenizer) {
  if (options.mode == SpeculationMode::off) return;
  if (options.draft_max < 1 || options.draft_max > 64) fail("--draft-max must be between 1 and 64, got ", options.draft_max);
  if (options.draft_min < 0 || options.draft_min > options.draft_max)
    fail("--draft-min must be between 0 and --draft-max (", options.draft_max, "), got ", options.draft_min);
  if (options.mode == SpeculationMode::ngram) {
    if (options.ngram_min < 1 || options.ngram_max < options.ngram_min)
      fail("speculation: n-gram sizes must satisfy 1 <= min <= max, got ", options.ngram_min, " and ", options.ngram_max);
    return;
  }
  if (!options.draft_model) fail("speculation: a draft model is needed (--draft-model)");
  const Model& draft = *options.draft_model;
  const std::string& path = draft.path();
  // Token ids must mean the same text in both: the draft's ids are verified as the model's.
  if (draft.config().n_vocab < tokenizer.vocab_size())
    fail("--draft-model ", path, ": its vocabulary has ", draft.config().n_vocab, " tokens, the model's tokenizer ",
         tokenizer.vocab_size(), "; a draft must share the model's tokenizer");
  std::shared_ptr<const Tokenizer> own;
  try {
    own = load_model_tokenizer(draft);
  } catch (const Error&) {
    // A checkpoint without a tokenizer of its own (a llama2.c .bin alone): its size is all
    // there is to check.
    if (draft.config().n_vocab != model.config().n_vocab)
      fail("--draft-model ", path, ": ", draft.config().n_vocab, " vocabulary rows, the model has ",
           model.config().n_vocab, "; a draft must share the model's tokenizer");
    return;
  }
  if (own->vocab_size() != tokenizer.vocab_size())
    fail("--draft-model ", path, ": its tokenizer has ", own->vocab_size(), " tokens, the model's ",
         tokenizer.vocab_size(), "; a draft must share the model's tokenizer");
  for (int64_t id = 0; id < tokenizer.vocab_size(); ++id) {
    const int32_t t = static_cast<int32_t>(id);
    if (own->token_text(t) != tokenizer.token_text(t))
      fail("--draft-model ", path, ": token ", id, " is \"", own->token_text(t), "\" there and \"",
           tokenizer.token_text(t), "\" in the model's tokenizer; a draft must share the model's tokenizer");
  }
}

}  // namespace orchard
