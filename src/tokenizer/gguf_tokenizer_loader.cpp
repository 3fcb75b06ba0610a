// A tokenizer from GGUF `tokenizer.ggml.*` metadata, with llama.cpp's semantics.
#include <algorithm>

#include "base/error.h"
#include "formats/gguf.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/tokenizer_loaders.h"

namespace orchard::detail {
namespace {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum TokenType : int64_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// `tokenizer.ggml.pre` names whose pre-tokenizer regex is one we implement.
std::optional<SplitPattern> split_for_pre(const std::string& pre) {
  if (pre == "gpt-2" || pre == "phi-2" || pre == "jina-es" || pre == "jina-de") return SplitPattern::kGpt2;
  if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3" || pre == "smaug-bpe") return SplitPattern::kLlama3;
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return SplitPattern::kQwen2;
  return std::nullopt;
}

std::optional<int32_t> token_id(const GgufFile& gguf, const char* key, int64_t vocab_size) {
  const auto value = gguf.get_int(key);
  if (!value || *value < 0 || *value >= vocab_size) return std::nullopt;  // absent or "none" (-1)
  return int32_t(*value);
}

}  // namespace

std::unique_ptr<TokenizerParts> load_gguf_tokenizer(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  const auto model = gguf.get_string("tokenizer.ggml.model");
  if (!model) fail(path, ": no tokenizer.ggml.model");
  if (*model != "llama" && *model != "gpt2") {
    fail(path, ": unsupported tokenizer.ggml.model \"", *model, "\" (supported: llama, gpt2)");
  }
  const auto* tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) fail(path, ": no tokenizer.ggml.tokens");
  const int64_t n = int64_t(tokens->size());
  const auto* types = gguf.get_int_array("tokenizer.ggml.token_type");
  if (types && int64_t(types->size()) != n) {
    fail(path, ": tokenizer.ggml.token_type has ", types->size(), " entries for ", n, " tokens");
  }
  auto type_of = [&](int64_t id) { return types ? (*types)[size_t(id)] : int64_t(kNormal); };

  auto parts = std::make_unique<TokenizerParts>();
  parts->source = path;
  for (int64_t id = 0; id < n; ++id) parts->vocab.set(int32_t(id), (*tokens)[size_t(id)]);

  // Control, user-defined and unknown tokens are matched in the text as whole tokens.
  for (int64_t id = 0; id < n; ++id) {
    const int64_t type = type_of(id);
    if (type == kControl || type == kUserDefined || type == kUnknown) {
      parts->added_tokens.add({(*tokens)[size_t(id)], int32_t(id), type != kUserDefined, false, false, false});
    }
  }

  const auto unknown_id = token_id(gguf, "tokenizer.ggml.unknown_token_id", n);
  DecoderSpec decoder;
  if (*model == "llama") {
    std::vector<float> scores(size_t(n), 0.0f);
    if (const auto* values = gguf.get_float_array("tokenizer.ggml.scores")) {
      if (int64_t(values->size()) != n) fail(path, ": tokenizer.ggml.scores has ", values->size(), " entries for ", n, " tokens");
      std::transform(values->begin(), values->end(), scores.begin(), [](double s) { return float(s); });
    }
    parts->model = std::make_unique<SpmModel>(parts->vocab, std::move(scores), unknown_id);
    parts->split_at_space_markers_if_exact();
    // llama.cpp writes spaces as U+2581 and, by default, starts each text with one.
    const bool space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    parts->normalizer.add_replace(" ", std::string(kSpaceMarker));
    if (space_prefix) parts->normalizer.add_prepend(std::string(kSpaceMarker));
    decoder.replacements.emplace_back(std::string(kSpaceMarker), " ");
    decoder.byte_fallback = true;
    decoder.strip_leading_spaces = space_prefix ? 1 : 0;
    parts->add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
  } else {
    const std::string pre = gguf.get_string("tokenizer.ggml.pre").value_or("default");
    parts->split = split_for_pre(pre);
    if (!parts->split) fail(path, ": unsupported tokenizer.ggml.pre \"", pre, "\"");
    const auto* merge_texts = gguf.get_string_array("tokenizer.ggml.merges");
    if (!merge_texts) fail(path, ": no tokenizer.ggml.merges");
    std::vector<std::array<int32_t, 3>> merges;
    merges.reserve(merge_texts->size());
    for (size_t i = 0; i < merge_texts->size(); ++i) {
      const std::string& text = (*merge_texts)[i];
      const size_t space = text.find(' ', 1);
      if (space == std::string::npos) fail(path, ": tokenizer.ggml.merges[", i, "] is not \"left right\"");
      const auto left = parts->vocab.find(text.substr(0, space));
      const auto right = parts->vocab.find(text.substr(space + 1));
      const auto merged = parts->vocab.find(text.substr(0, space) + text.substr(space + 1));
      if (!left || !right || !merged) {
        fail(path, ": tokenizer.ggml.merges[", i, "] \"", text, "\" refers to a token missing from the vocabulary");
      }
      merges.push_back({*left, *right, *merged});
    }
    BpeOptions options;
    options.byte_level = true;
    options.ignore_merges = *parts->split == SplitPattern::kLlama3;  // as llama.cpp does for Llama 3
    options.unknown_id = unknown_id;
    parts->model = std::make_unique<BpeModel>(parts->vocab, merges, options);
    decoder.byte_level = true;
    parts->add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
  }

  // Added tokens decode as their text; CONTROL ones are what skip_special drops.
  std::vector<bool> raw_text(size_t(n), false);
  for (const AddedToken& token : parts->added_tokens.tokens()) raw_text[size_t(token.id)] = true;
  if (*model == "llama") {
    // Byte tokens are found by their <0xXX> text, so only BYTE-typed ones may carry it.
    for (int64_t id = 0; id < n; ++id) {
      if (type_of(id) != kByte && (*tokens)[size_t(id)].starts_with("<0x")) raw_text[size_t(id)] = true;
    }
  }
  parts->decoder = std::make_unique<TokenDecoder>(parts->vocab, raw_text, decoder);
  parts->special.assign(size_t(n), false);
  for (int64_t id = 0; id < n; ++id) parts->special[size_t(id)] = type_of(id) == kControl || type_of(id) == kUnknown;

  parts->bos = token_id(gguf, "tokenizer.ggml.bos_token_id", n);
  if (!parts->bos) parts->add_bos = false;
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = token_id(gguf, key, n); id && std::find(parts->eos.begin(), parts->eos.end(), *id) == parts->eos.end()) {
      parts->eos.push_back(*id);
    }
  }
  parts->chat_template = gguf.get_string("tokenizer.chat_template").value_or("");
  return parts;
}

}  // namespace orchard::detail
