// Streaming UTF-8 repair: bytes go in as tokens produce them; only whole characters come out.
// A character cut across tokens is held until its last byte arrives; bytes that can never form
// a character come out as U+FFFD, so the output is always valid UTF-8.
#pragma once
#include <string>
#include <string_view>

namespace orchard {

class Utf8Assembler {
 public:
  // Appends bytes and returns the text that is now complete.
  std::string push(std::string_view bytes);
  // Returns what is left, with an unfinished character as U+FFFD.
  std::string finish();

 private:
  std::string pending_;
};

}  // namespace orchard
