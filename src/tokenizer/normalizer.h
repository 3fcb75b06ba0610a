// Text normalization before pre-tokenization, as tokenizer.json `normalizer` steps describe it
// (and as llama.cpp's SentencePiece path does: a space prefix, then spaces written as U+2581).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace orchard {

class Normalizer {
 public:
  void add_nfc() { steps_.push_back({Step::kNfc, {}, {}}); }
  // Prepends `prefix` to non-empty text.
  void add_prepend(std::string prefix) { steps_.push_back({Step::kPrepend, std::move(prefix), {}}); }
  // Replaces every occurrence of `from` (non-empty) with `to`.
  void add_replace(std::string from, std::string to) {
    steps_.push_back({Step::kReplace, std::move(from), std::move(to)});
  }
  bool empty() const { return steps_.empty(); }

  // Returns the normalized text; `storage` holds it when it differs from the input.
  std::string_view apply(std::string_view text, std::string& storage) const;

 private:
  struct Step {
    enum Kind { kNfc, kPrepend, kReplace } kind;
    std::string a;
    std::string b;
  };
  std::vector<Step> steps_;
};

}  // namespace orchard
