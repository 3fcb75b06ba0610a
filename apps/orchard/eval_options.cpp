#include "eval_options.h"

#include "base/error.h"
#include "base/mapped_file.h"
#include "model_options.h"
#include "orchard/engine.h"

namespace orchard::cli {

TokenSequences evaluation_sequences(Args& args, const Model& model, int64_t default_seq_len) {
  const auto text_file = args.get("text-file");
  const auto tokens_file = args.get("tokens-file");
  auto count = args.get_int("sequences");
  if (auto random = args.get_int("tokens-random")) count = random;
  const int64_t seq_len = args.get_int("seq-len").value_or(default_seq_len);
  const auto seed = args.get_int("seed");
  const auto max_sequences = args.get_int("max-sequences");
  const auto tokenizer_path = args.get("tokenizer");
  const std::string cmd = "orchard " + args.command();
  if (seq_len < 2) fail(cmd, ": --seq-len must be at least 2");
  if (int(text_file.has_value()) + int(tokens_file.has_value()) + int(count.has_value()) != 1)
    fail(cmd, ": give exactly one of --text-file, --tokens-file or --sequences N");
  if (count) {
    if (*count <= 0) fail(cmd, ": --sequences must be positive");
    return random_sequences(model.config().n_vocab, *count, seq_len, static_cast<uint64_t>(seed.value_or(1)));
  }
  std::vector<int32_t> tokens;
  std::string source;
  if (text_file) {
    auto tokenizer = load_model_tokenizer(model, tokenizer_path.value_or(""));
    tokens = tokenizer->encode(read_text_file(*text_file), false);
    source = *text_file;
  } else {
    tokens = read_token_file(*tokens_file);
    source = *tokens_file;
  }
  TokenSequences sequences = split_sequences(tokens, seq_len, max_sequences.value_or(0));
  if (sequences.empty())
    fail(source, ": ", tokens.size(), " tokens is fewer than one sequence of --seq-len ", seq_len);
  return sequences;
}

}  // namespace orchard::cli
