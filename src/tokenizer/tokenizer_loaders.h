// The file formats a Tokenizer loads from. Each throws orchard::Error naming the file and the
// problem.
#pragma once
#include <memory>
#include <string>

#include "tokenizer/tokenizer_parts.h"

namespace orchard {
class GgufFile;
}

namespace orchard::detail {

// tokenizer.json, with tokenizer_config.json from the same folder when present.
std::unique_ptr<TokenizerParts> load_tokenizer_json(const std::string& path);
// `tokenizer.ggml.*` metadata: model "llama" (SentencePiece scores) or "gpt2" (byte-level BPE).
std::unique_ptr<TokenizerParts> load_gguf_tokenizer(const GgufFile& gguf);
// llama2.c tokenizer.bin.
std::unique_ptr<TokenizerParts> load_llama2c_tokenizer(const std::string& path);

}  // namespace orchard::detail
