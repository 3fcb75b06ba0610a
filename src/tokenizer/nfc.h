// Unicode Normalization Form C, for tokenizer.json files whose normalizer asks for it (Qwen2/3).
#pragma once
#include <string>
#include <string_view>

namespace orchard::unicode {

// True when NFC leaves the text unchanged according to the quick check (no combining marks and
// no characters that NFC_Quick_Check rejects). Cheap; most text passes.
bool is_nfc_quick(std::string_view text);

// NFC of text. Invalid UTF-8 bytes are kept as they are and block composition across them.
std::string to_nfc(std::string_view text);

}  // namespace orchard::unicode
