// Where `orchard kld` and `orchard perplexity` take their token sequences from:
//   --text-file F     text, tokenized with the model's tokenizer, cut into --seq-len pieces
//   --tokens-file F   token ids separated by commas or whitespace, cut likewise
//   --sequences N (or --tokens-random N) --seq-len L --seed S   random ids (for random models)
#pragma once
#include "args.h"
#include "eval/divergence.h"
#include "orchard/model.h"

namespace orchard::cli {

TokenSequences evaluation_sequences(Args& args, const Model& model, int64_t default_seq_len);

}  // namespace orchard::cli
