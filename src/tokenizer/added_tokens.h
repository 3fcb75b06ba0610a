// Added and special tokens (tokenizer.json `added_tokens`, GGUF CONTROL/USER_DEFINED tokens):
// their text is split out of the input before normalization and BPE, so "<|im_end|>" in the
// input is one token, not BPE pieces.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace orchard {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;       // the match swallows white space before it
  bool rstrip = false;       // the match swallows white space after it
  bool single_word = false;  // matches only where no word character touches it
};

// A piece of input: either text for the model or an added token's id.
struct Segment {
  std::string_view text;
  int32_t token = -1;  // >= 0: the added token found here
};

class AddedTokenMatcher {
 public:
  void add(AddedToken token);
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Splits text into segments at the leftmost-longest matches of added tokens. Text segments
  // may be empty only when the whole text is (then there are none).
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // Index into tokens_ of the longest token matching at `pos` that may stand there, or -1.
  int longest_match(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  // Tokens by first byte, longest first.
  std::array<std::vector<int>, 256> by_first_byte_;
};

}  // namespace orchard
