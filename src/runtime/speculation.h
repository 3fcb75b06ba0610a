// Speculative decoding's pieces outside the engine loop: prompt lookup (n-gram drafts) and the
// checks of the options and of a draft model. The loop itself (draft, verify, roll back) is the
// engine's (engine.cpp; docs/architecture.md, "Speculative decoding").
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "orchard/engine.h"

namespace orchard {

// Prompt lookup: the up to `k` tokens that followed the latest earlier occurrence of the
// context's last n tokens that has k tokens after it (else the occurrence with most after it),
// for n from ngram_max down to ngram_min (a longer match predicts better). Empty when no suffix
// recurs. Summaries, quotes and code edits copy spans of their
// input, which this drafts at no cost; so does a model that repeats itself.
std::vector<int32_t> prompt_lookup(std::span<const int32_t> context, int64_t k, int ngram_max, int ngram_min);

// Throws orchard::Error for options that cannot work: draft sizes out of range, a draft model
// missing or of another vocabulary than `tokenizer` (naming the draft's file).
void check_speculation(const SpeculationOptions& options, const Model& model, const Tokenizer& tokenizer);

}  // namespace orchard
