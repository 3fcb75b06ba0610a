// The JSON-schema compiler of constrained decoding: the input is a schema (as the server gets it
// in response_format / tools), compiled against a small vocabulary with small bounds, and then a
// few steps of decoding walk the compiled automaton and its token masks.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "runtime/constraint/json_schema_constraint.h"

using namespace orchard;

namespace {

// A byte-level-ish vocabulary: every printable ASCII character, newline, some multi-byte JSON
// pieces (so tokens cross automaton boundaries), a UTF-8 character and an EOS special token.
std::string vocabulary_json() {
  std::string vocab = "{";
  int id = 0;
  auto add = [&](const std::string& token) {
    std::string escaped;
    for (char c : token) {
      if (c == '"' || c == '\\') escaped += '\\';
      if (c == '\n') { escaped += "\\n"; continue; }
      escaped += c;
    }
    vocab += (id ? ", \"" : "\"") + escaped + "\": " + std::to_string(id);
    ++id;
  };
  for (int c = 32; c < 127; ++c) add(std::string(1, char(c)));
  add("\n");
  const char* merged[] = {"{\"", "\":", "\",", "tr", "ue", "true", "nu", "ll", "null", "12", "\xc3\xa9"};
  for (const char* token : merged) add(token);
  vocab += "}";
  const std::string merges = R"(["{ \"", "\" :", "\" ,", "t r", "u e", "tr ue", "n u", "l l", "nu ll", "1 2"])";
  return R"({"added_tokens": [{"id": )" + std::to_string(id) +
         R"(, "content": "<eos>", "special": true}], "model": {"type": "BPE", "vocab": )" + vocab +
         R"(, "merges": )" + merges + "}}";
}

struct Setup {
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const TokenVocabulary> vocab;
};

const Setup& setup() {
  static const Setup s = [] {
    const auto& scratch = fuzz::ScratchDir::get();
    scratch.write("tokenizer.json", vocabulary_json());
    scratch.write("tokenizer_config.json", R"({"eos_token": "<eos>"})");
    Setup made;
    made.tokenizer = Tokenizer::load(scratch.path("tokenizer.json"));
    made.vocab = TokenVocabulary::build(*made.tokenizer);
    return made;
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)setup();  // a broken vocabulary is the target's bug: fail at start, not per input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Setup& s = setup();
  SchemaOptions options;
  options.max_indent = 2;
  options.free_form_depth = 2;
  options.max_ref_depth = 2;
  options.max_states = 20000;
  // The last input byte picks whether a tool-call style wrapper surrounds the value.
  if (size > 0 && (data[size - 1] & 1)) {
    options.prefix = "<tool_call>";
    options.suffix = "</tool_call>";
  }
  try {
    const auto schema = JsonSchemaConstraint::compile_text(fuzz::as_text(data, size), s.vocab, options);
    JsonSchemaConstraint constraint(schema);
    const size_t n = s.vocab->size();
    std::vector<float> logits(n + 3);  // longer than the vocabulary, as model heads can be
    // Greedy steps that prefer a token chosen by the input, so different inputs walk different paths.
    for (int step = 0; step < 24 && !constraint.finished(); ++step) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      const size_t preferred = size ? data[size_t(step) % size] % n : 0;
      logits[preferred] = 1.0f;
      constraint.apply(logits, /*tokens_left=*/24 - step);
      int32_t best = -1;
      for (size_t i = 0; i < logits.size(); ++i)
        if (std::isfinite(logits[i]) && (best < 0 || logits[i] > logits[size_t(best)])) best = int32_t(i);
      if (best < 0) break;  // nothing allowed: the constraint has said so, no token to accept
      (void)constraint.allows(best);
      constraint.accept(best);
      (void)constraint.closing_distance();
    }
    (void)constraint.complete();
  } catch (const Error&) {
  }
  return 0;
}
