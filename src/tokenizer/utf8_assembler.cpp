#include "tokenizer/utf8_assembler.h"

#include "tokenizer/unicode.h"

namespace orchard {

std::string Utf8Assembler::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const unicode::Decoded d = unicode::decode_utf8(pending_, pos);
    if (d.codepoint != unicode::kInvalid) {
      out.append(pending_, pos, d.length);
      pos += d.length;
      continue;
    }
    const size_t bad = unicode::invalid_sequence_length(pending_, pos);
    // A valid beginning that runs to the end of the buffer may still be completed.
    if (pos + bad == pending_.size() && static_cast<unsigned char>(pending_[pos]) >= 0xC2 &&
        static_cast<unsigned char>(pending_[pos]) <= 0xF4) {
      const size_t need = static_cast<unsigned char>(pending_[pos]) >= 0xF0   ? 4
                          : static_cast<unsigned char>(pending_[pos]) >= 0xE0 ? 3
                                                                               : 2;
      if (bad < need) break;
    }
    unicode::append_utf8(unicode::kReplacementCharacter, out);
    pos += bad;
  }
  pending_.erase(0, pos);
  return out;
}

std::string Utf8Assembler::finish() {
  std::string out;
  unicode::append_valid_utf8(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace orchard
