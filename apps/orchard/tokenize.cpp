// `orchard tokenize` and `orchard detokenize`: text to ids and back with a model's tokenizer.
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mapped_file.h"
#include "command.h"
#include "orchard/model.h"
#include "orchard/engine.h"
#include "orchard/tokenizer.h"

namespace orchard::cli {
namespace {

// --tokenizer PATH (tokenizer.json, folder, .gguf, tokenizer.bin) or --model PATH (any model
// Orchard loads; its own tokenizer).
std::shared_ptr<const Tokenizer> tokenizer_from_args(Args& args) {
  auto tokenizer = args.get("tokenizer");
  auto model = args.get("model");
  if (tokenizer && model) fail("give either --tokenizer or --model, not both");
  if (!tokenizer && !model) fail("missing --tokenizer PATH (or --model PATH)");
  if (tokenizer) return Tokenizer::load(*tokenizer);
  return load_model_tokenizer(*Model::load(*model));
}

// Ids separated by commas and/or white space, optionally inside a JSON array's brackets.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& source) {
  std::vector<int32_t> ids;
  std::string number;
  auto flush = [&] {
    if (number.empty()) return;
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(number, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != number.size() || value < 0 || value > INT32_MAX) fail(source, ": bad token id '", number, "'");
    ids.push_back(int32_t(value));
    number.clear();
  };
  for (char c : text) {
    if (c == ',' || c == '[' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      flush();
    } else {
      number.push_back(c);
    }
  }
  flush();
  return ids;
}

int tokenize_command(Args& args) {
  const auto tokenizer = tokenizer_from_args(args);
  const std::string text = read_text_file(args.require("text-file"));
  args.finish();
  const std::vector<int32_t> ids = tokenizer->encode(text);
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int detokenize_command(Args& args) {
  const auto tokenizer = tokenizer_from_args(args);
  auto ids_file = args.get("ids-file");
  auto ids_text = args.get("ids");
  if (ids_file.has_value() == ids_text.has_value()) fail("give exactly one of --ids-file F or --ids 1,2,3");
  const std::vector<int32_t> ids =
      ids_file ? parse_ids(read_text_file(*ids_file), *ids_file) : parse_ids(*ids_text, "--ids");
  args.finish();
  const std::string text = tokenizer->decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

const RegisterCommand kTokenize("tokenize", "print the token ids of a text file as a JSON array",
                                tokenize_command);
const RegisterCommand kDetokenize("detokenize", "print the text of token ids", detokenize_command);

}  // namespace
}  // namespace orchard::cli
