// The model step of a tokenizer: turns one pre-tokenized word into token ids.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace orchard {

class WordEncoder {
 public:
  virtual ~WordEncoder() = default;
  // Appends the ids of `word` (any bytes, possibly invalid UTF-8) to `out`.
  virtual void encode_word(std::string_view word, std::vector<int32_t>& out) const = 0;
};

}  // namespace orchard
