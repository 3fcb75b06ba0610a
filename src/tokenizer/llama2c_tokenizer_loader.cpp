// llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length
// and the bytes. Its encoder prepends a space to non-empty text and merges by best score, which
// is SpmModel's algorithm; pieces spell spaces as ' ', stored here as U+2581 like GGUF vocabs.
#include <cstring>

#include "base/error.h"
#include "base/mapped_file.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/tokenizer_loaders.h"

namespace orchard::detail {
namespace {

// llama2.c's fixed ids (SentencePiece defaults).
constexpr int32_t kUnknownId = 0, kBosId = 1, kEosId = 2;

std::string spell_spaces(std::string_view piece) {
  std::string out;
  for (char c : piece) {
    if (c == ' ') {
      out += kSpaceMarker;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<TokenizerParts> load_llama2c_tokenizer(const std::string& path) {
  const auto blob = map_file(path);
  const auto* data = blob->data();
  const size_t size = blob->size();
  size_t pos = 0;
  auto read = [&](void* out, size_t bytes, const char* what) {
    if (size - pos < bytes) fail(path, ": truncated llama2.c tokenizer (", what, " at byte ", pos, ")");
    std::memcpy(out, data + pos, bytes);
    pos += bytes;
  };
  int32_t max_token_length = 0;
  read(&max_token_length, 4, "max_token_length");
  if (max_token_length <= 0 || max_token_length > 1 << 16) {
    fail(path, ": not a llama2.c tokenizer (max_token_length ", max_token_length, ")");
  }

  auto parts = std::make_unique<TokenizerParts>();
  parts->source = path;
  std::vector<float> scores;
  while (pos < size) {
    float score = 0;
    int32_t length = 0;
    read(&score, 4, "score");
    read(&length, 4, "length");
    if (length < 0 || length > max_token_length) {
      fail(path, ": token ", scores.size(), " has length ", length, " (max_token_length ", max_token_length, ")");
    }
    std::string piece(size_t(length), '\0');
    read(piece.data(), size_t(length), "token bytes");
    parts->vocab.set(int32_t(scores.size()), spell_spaces(piece));
    scores.push_back(score);
  }
  if (scores.size() <= size_t(kEosId)) fail(path, ": llama2.c tokenizer has only ", scores.size(), " tokens");

  parts->model = std::make_unique<SpmModel>(parts->vocab, std::move(scores), kUnknownId);
  parts->split_at_space_markers_if_exact();
  parts->normalizer.add_replace(" ", std::string(kSpaceMarker));
  parts->normalizer.add_prepend(std::string(kSpaceMarker));
  DecoderSpec decoder;
  decoder.replacements.emplace_back(std::string(kSpaceMarker), " ");
  decoder.byte_fallback = true;
  decoder.strip_leading_spaces = 1;
  parts->build_decoder(decoder);
  parts->special[size_t(kBosId)] = parts->special[size_t(kEosId)] = true;
  parts->bos = kBosId;
  parts->eos = {kEosId};
  parts->add_bos = true;
  return parts;
}

}  // namespace orchard::detail
