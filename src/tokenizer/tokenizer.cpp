#include "orchard/tokenizer.h"

#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "base/error.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer_loaders.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8_assembler.h"

namespace orchard {
namespace {

enum class FileKind { kTokenizerJson, kGguf, kLlama2c };

FileKind sniff(const std::string& path) {
  // Regular files only: a FIFO would block the open, a device would never end.
  const int fd = open_regular_file(path);
  char head[4] = {};
  const ssize_t got = ::pread(fd, head, sizeof head, 0);
  ::close(fd);
  if (got == 4 && std::string_view(head, 4) == "GGUF") return FileKind::kGguf;
  if (path.ends_with(".json")) return FileKind::kTokenizerJson;
  for (long i = 0; i < got; ++i) {
    if (head[i] == '{') return FileKind::kTokenizerJson;
    if (!std::isspace(static_cast<unsigned char>(head[i]))) break;
  }
  return FileKind::kLlama2c;
}

// Words repeat a lot in real text; within one encode call each distinct word is run through
// the model once. Keys view the input or normalized text kept alive for the call.
class WordCache {
 public:
  template <typename Encode>
  void encode(std::string_view word, std::vector<int32_t>& out, Encode&& encode_word) {
    if (word.size() > kMaxCachedWordBytes) {
      encode_word(word, out);
      return;
    }
    auto [it, inserted] = entries_.try_emplace(word);
    if (inserted) {
      const size_t start = out.size();
      encode_word(word, out);
      it->second = {uint32_t(ids_.size()), uint32_t(out.size() - start)};
      ids_.insert(ids_.end(), out.begin() + ptrdiff_t(start), out.end());
      return;
    }
    out.insert(out.end(), ids_.begin() + it->second.first,
               ids_.begin() + it->second.first + it->second.second);
  }

 private:
  static constexpr size_t kMaxCachedWordBytes = 64;
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> entries_;
  std::vector<int32_t> ids_;
};

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<detail::TokenizerParts> parts) : parts_(std::move(parts)) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const std::string json = (std::filesystem::path(path) / "tokenizer.json").string();
    if (!std::filesystem::exists(json, ec)) fail(path, ": folder has no tokenizer.json");
    return std::make_shared<const Tokenizer>(detail::load_tokenizer_json(json));
  }
  switch (sniff(path)) {
    case FileKind::kTokenizerJson:
      return std::make_shared<const Tokenizer>(detail::load_tokenizer_json(path));
    case FileKind::kGguf:
      return from_gguf(*GgufFile::open(path));
    case FileKind::kLlama2c:
      return std::make_shared<const Tokenizer>(detail::load_llama2c_tokenizer(path));
  }
  fail(path, ": unknown tokenizer format");
}

std::shared_ptr<const Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  return std::make_shared<const Tokenizer>(detail::load_gguf_tokenizer(gguf));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const detail::TokenizerParts& p = *parts_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && p.bos) ids.push_back(*p.bos);

  std::vector<Segment> segments;
  if (p.added_tokens.empty()) {
    if (!text.empty()) segments.push_back({text, -1});
  } else {
    p.added_tokens.split(text, segments);
  }

  auto encode_word = [&](std::string_view word, std::vector<int32_t>& out) {
    p.model->encode_word(word, out);
  };
  WordCache cache;
  std::deque<std::string> normalized_texts;  // keeps cache keys valid for the whole call
  std::vector<std::string_view> words;
  for (const Segment& segment : segments) {
    if (segment.token >= 0) {
      ids.push_back(segment.token);
      continue;
    }
    std::string_view normalized = segment.text;
    if (!p.normalizer.empty()) {
      std::string storage;
      normalized = p.normalizer.apply(segment.text, storage);
      if (!storage.empty()) {
        normalized_texts.push_back(std::move(storage));
        normalized = normalized_texts.back();
      }
    }
    if (!p.split) {
      encode_word(normalized, ids);
      continue;
    }
    words.clear();
    split_words(normalized, *p.split, words);
    for (std::string_view word : words) cache.encode(word, ids, encode_word);
  }
  return ids;
}

namespace {
// An id the vocabulary does not have is a caller's error (a wrong model, a corrupt id list), never
// text: decoding it to nothing would hide it.
void check_id(int32_t id, int64_t vocab_size) {
  if (id < 0 || id >= vocab_size)
    fail("token id ", id, " is outside the tokenizer's vocabulary of ", vocab_size, " tokens");
}
}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  TokenDecoder::State state(*parts_->decoder);
  for (int32_t id : ids) check_id(id, vocab_size());
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    state.append(parts_->decoder->piece(id), bytes);
  }
  if (unicode::is_valid_utf8(bytes)) return bytes;
  std::string text;
  unicode::append_valid_utf8(bytes, text);
  return text;
}

std::string Tokenizer::token_text(int32_t id) const {
  return parts_->vocab.contains_id(id) ? parts_->vocab.text(id) : std::string();
}

std::string Tokenizer::token_bytes(int32_t id) const { return std::string(parts_->decoder->piece(id)); }

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  return parts_->vocab.find(token_text);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < parts_->special.size() && parts_->special[size_t(id)];
}

int64_t Tokenizer::vocab_size() const { return parts_->vocab.size(); }
std::optional<int32_t> Tokenizer::bos_id() const { return parts_->bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return parts_->eos; }
bool Tokenizer::adds_bos() const { return parts_->add_bos; }
const std::string& Tokenizer::chat_template() const { return parts_->chat_template; }

struct StreamingDecoder::State {
  explicit State(const TokenDecoder& decoder) : position(decoder) {}
  TokenDecoder::State position;
  Utf8Assembler assembler;
};

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer),
      skip_special_(skip_special),
      state_(std::make_unique<State>(*tokenizer.parts().decoder)) {}

StreamingDecoder::~StreamingDecoder() = default;

std::string StreamingDecoder::push(int32_t id) {
  check_id(id, tokenizer_.vocab_size());
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  std::string bytes;
  state_->position.append(tokenizer_.parts().decoder->piece(id), bytes);
  return state_->assembler.push(bytes);
}

std::string StreamingDecoder::finish() {
  std::string rest = state_->assembler.finish();
  state_ = std::make_unique<State>(*tokenizer_.parts().decoder);
  return rest;
}

}  // namespace orchard
