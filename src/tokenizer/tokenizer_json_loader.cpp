// Hugging Face tokenizer.json (+ tokenizer_config.json, generation_config.json beside it).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/tokenizer_loaders.h"

namespace orchard::detail {
namespace {

using nlohmann::json;

// Ids beyond this are rejected: no real vocabulary comes near, and a hostile file must not make
// the id tables huge.
constexpr int64_t kMaxTokenId = 1 << 24;

json read_json(const std::string& path) {
  return parse_json(read_text_file(path), path, "invalid JSON");  // regular files only, at most kMaxTextFileBytes
}

// Typed access that names the offending field in its error.
class Fields {
 public:
  explicit Fields(std::string path) : path_(std::move(path)) {}

  const json& object(const json& parent, const char* key, const std::string& where) const {
    auto it = parent.find(key);
    if (it == parent.end()) fail(path_, ": ", where, " has no \"", key, "\"");
    if (!it->is_object()) fail(path_, ": ", where, ".", key, " must be an object");
    return *it;
  }
  std::string string(const json& value, const std::string& where) const {
    if (!value.is_string()) fail(path_, ": ", where, " must be a string");
    return value.get<std::string>();
  }
  std::string string_or(const json& parent, const char* key, const std::string& fallback,
                        const std::string& where) const {
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return fallback;
    return string(*it, where + "." + key);
  }
  bool flag(const json& parent, const char* key, bool fallback, const std::string& where) const {
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(path_, ": ", where, ".", key, " must be true or false");
    return it->get<bool>();
  }
  int64_t integer(const json& value, const std::string& where) const {
    if (!value.is_number_integer()) fail(path_, ": ", where, " must be an integer");
    return value.get<int64_t>();
  }
  int32_t token_id(const json& value, const std::string& where) const {
    const int64_t id = integer(value, where);
    if (id < 0 || id >= kMaxTokenId) fail(path_, ": ", where, " is out of range: ", id);
    return int32_t(id);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string type_of(const Fields& f, const json& step, const std::string& where) {
  if (!step.is_object()) fail(f.path(), ": ", where, " must be an object");
  auto it = step.find("type");
  if (it == step.end()) fail(f.path(), ": ", where, " has no \"type\"");
  return f.string(*it, where + ".type");
}

// A pattern of Split/Replace: {"String": s} or {"Regex": r}; only literal strings are
// supported by Replace.
std::string literal_pattern(const Fields& f, const json& step, const std::string& where) {
  const json& pattern = f.object(step, "pattern", where);
  if (auto it = pattern.find("String"); it != pattern.end()) return f.string(*it, where + ".pattern.String");
  fail(f.path(), ": ", where, ": only literal String patterns are supported");
}

void load_normalizer(const Fields& f, const json& step, const std::string& where, Normalizer& out) {
  if (step.is_null()) return;
  const std::string type = type_of(f, step, where);
  if (type == "Sequence") {
    auto it = step.find("normalizers");
    if (it == step.end() || !it->is_array()) fail(f.path(), ": ", where, ".normalizers must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      load_normalizer(f, (*it)[i], str_cat(where, ".normalizers[", i, "]"), out);
    }
  } else if (type == "NFC") {
    out.add_nfc();
  } else if (type == "Prepend") {
    out.add_prepend(f.string_or(step, "prepend", "", where));
  } else if (type == "Replace") {
    const std::string from = literal_pattern(f, step, where);
    if (from.empty()) fail(f.path(), ": ", where, ": empty Replace pattern");
    out.add_replace(from, f.string_or(step, "content", "", where));
  } else {
    fail(f.path(), ": ", where, ": unsupported normalizer type \"", type, "\"");
  }
}

struct PreTokenizerSpec {
  std::optional<SplitPattern> split;
  bool byte_level = false;
};

void load_pre_tokenizer(const Fields& f, const json& step, const std::string& where,
                        PreTokenizerSpec& out) {
  if (step.is_null()) return;
  const std::string type = type_of(f, step, where);
  auto set_split = [&](SplitPattern pattern) {
    if (out.split) fail(f.path(), ": ", where, ": more than one splitting pre-tokenizer is not supported");
    out.split = pattern;
  };
  if (type == "Sequence") {
    auto it = step.find("pretokenizers");
    if (it == step.end() || !it->is_array()) fail(f.path(), ": ", where, ".pretokenizers must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      load_pre_tokenizer(f, (*it)[i], str_cat(where, ".pretokenizers[", i, "]"), out);
    }
  } else if (type == "Split") {
    const json& pattern = f.object(step, "pattern", where);
    auto regex = pattern.find("Regex");
    if (regex == pattern.end()) fail(f.path(), ": ", where, ": only Regex split patterns are supported");
    const std::string source = f.string(*regex, where + ".pattern.Regex");
    const auto known = split_pattern_from_regex(source);
    if (!known) fail(f.path(), ": ", where, ": unsupported split regex ", json(source).dump());
    if (f.string_or(step, "behavior", "Isolated", where) != "Isolated" || f.flag(step, "invert", false, where)) {
      fail(f.path(), ": ", where, ": only the Isolated, non-inverted Split behavior is supported");
    }
    set_split(*known);
  } else if (type == "ByteLevel") {
    out.byte_level = true;
    if (f.flag(step, "add_prefix_space", false, where)) {
      fail(f.path(), ": ", where, ": ByteLevel add_prefix_space is not supported");
    }
    if (f.flag(step, "use_regex", true, where)) set_split(SplitPattern::kGpt2);
  } else {
    fail(f.path(), ": ", where, ": unsupported pre_tokenizer type \"", type, "\"");
  }
}

void load_decoder(const Fields& f, const json& step, const std::string& where, DecoderSpec& out) {
  if (step.is_null()) return;
  const std::string type = type_of(f, step, where);
  if (type == "Sequence") {
    auto it = step.find("decoders");
    if (it == step.end() || !it->is_array()) fail(f.path(), ": ", where, ".decoders must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      load_decoder(f, (*it)[i], str_cat(where, ".decoders[", i, "]"), out);
    }
  } else if (type == "ByteLevel") {
    out.byte_level = true;
  } else if (type == "ByteFallback") {
    out.byte_fallback = true;
  } else if (type == "Fuse") {
    // Decoding concatenates anyway.
  } else if (type == "Replace") {
    out.replacements.emplace_back(literal_pattern(f, step, where), f.string_or(step, "content", "", where));
  } else if (type == "Strip") {
    const std::string content = f.string_or(step, "content", " ", where);
    const int64_t start = step.contains("start") ? f.integer(step["start"], where + ".start") : 0;
    const int64_t stop = step.contains("stop") ? f.integer(step["stop"], where + ".stop") : 0;
    if (content != " " || stop != 0 || start < 0) {
      fail(f.path(), ": ", where, ": only Strip of leading spaces is supported");
    }
    out.strip_leading_spaces = size_t(start);
  } else if (type == "Metaspace") {
    const std::string replacement = f.string_or(step, "replacement", "\u2581", where);
    out.replacements.emplace_back(replacement, " ");
    const std::string scheme = f.string_or(step, "prepend_scheme", "always", where);
    if (f.flag(step, "add_prefix_space", true, where) && scheme != "never") out.strip_leading_spaces = 1;
  } else {
    fail(f.path(), ": ", where, ": unsupported decoder type \"", type, "\"");
  }
}

// The token text of a config entry: "text", {"content": "text"} or null.
std::optional<std::string> config_token(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

void load_config(const std::string& folder, TokenizerParts& parts, const json& post_processor) {
  const std::string path = (std::filesystem::path(folder) / "tokenizer_config.json").string();
  std::error_code ec;
  json config = std::filesystem::exists(path, ec) ? read_json(path) : json::object();
  if (!config.is_object()) fail(path, ": must hold a JSON object");

  auto id_of = [&](const std::optional<std::string>& text) -> std::optional<int32_t> {
    return text ? parts.vocab.find(*text) : std::nullopt;
  };
  parts.bos = id_of(config_token(config, "bos_token"));
  if (auto eos = id_of(config_token(config, "eos_token"))) parts.eos.push_back(*eos);

  if (auto it = config.find("add_bos_token"); it != config.end() && it->is_boolean()) {
    parts.add_bos = it->get<bool>() && parts.bos;
  } else if (post_processor.is_object() && post_processor.value("type", "") == "TemplateProcessing") {
    // BOS is added when the single-sequence template starts with it.
    const json& single = post_processor.value("single", json::array());
    if (parts.bos && single.is_array() && !single.empty() && single[0].contains("SpecialToken")) {
      const json& special = single[0]["SpecialToken"];
      parts.add_bos = special.is_object() && special.value("id", "") == parts.vocab.text(*parts.bos);
    }
  }

  if (auto it = config.find("chat_template"); it != config.end()) {
    if (it->is_string()) {
      parts.chat_template = it->get<std::string>();
    } else if (it->is_array()) {  // named templates: the default one
      for (const json& entry : *it) {
        if (entry.is_object() && entry.value("name", "") == "default" && entry["template"].is_string()) {
          parts.chat_template = entry["template"].get<std::string>();
        }
      }
    }
  }

  // generation_config.json may name more end-of-sequence ids (e.g. <|im_end|> and <|endoftext|>).
  const std::string generation = (std::filesystem::path(folder) / "generation_config.json").string();
  if (std::filesystem::exists(generation, ec)) {
    const json gen = read_json(generation);
    const json eos = gen.is_object() ? gen.value("eos_token_id", json()) : json();
    for (const json& id : eos.is_array() ? eos : json::array({eos})) {
      if (id.is_number_integer() && std::find(parts.eos.begin(), parts.eos.end(), id.get<int32_t>()) == parts.eos.end()) {
        parts.eos.push_back(id.get<int32_t>());
      }
    }
  }
}

}  // namespace

std::unique_ptr<TokenizerParts> load_tokenizer_json(const std::string& path) {
  const json root = read_json(path);
  const Fields f(path);
  if (!root.is_object()) fail(path, ": must hold a JSON object");
  auto parts = std::make_unique<TokenizerParts>();
  parts->source = path;

  const json& model = f.object(root, "model", "tokenizer");
  const std::string model_type = f.string_or(model, "type", "BPE", "model");
  if (model_type != "BPE") fail(path, ": unsupported model type \"", model_type, "\" (only BPE)");
  const json& vocab = f.object(model, "vocab", "model");
  for (const auto& [text, id] : vocab.items()) {
    parts->vocab.set(f.token_id(id, "model.vocab[" + json(text).dump() + "]"), text);
  }
  if (!f.string_or(model, "continuing_subword_prefix", "", "model").empty() ||
      !f.string_or(model, "end_of_word_suffix", "", "model").empty()) {
    fail(path, ": BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  }

  // Added tokens may extend the vocabulary beyond the model's ids.
  if (auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) {
    if (!it->is_array()) fail(path, ": added_tokens must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& entry = (*it)[i];
      const std::string where = str_cat("added_tokens[", i, "]");
      if (!entry.is_object()) fail(path, ": ", where, " must be an object");
      if (!entry.contains("id") || !entry.contains("content")) fail(path, ": ", where, " needs id and content");
      AddedToken token;
      token.id = f.token_id(entry["id"], where + ".id");
      token.content = f.string(entry["content"], where + ".content");
      token.special = f.flag(entry, "special", false, where);
      token.lstrip = f.flag(entry, "lstrip", false, where);
      token.rstrip = f.flag(entry, "rstrip", false, where);
      token.single_word = f.flag(entry, "single_word", false, where);
      if (!parts->vocab.contains_id(token.id) || parts->vocab.text(token.id) != token.content) {
        parts->vocab.set(token.id, token.content);
      }
      parts->added_tokens.add(token);
    }
  }

  PreTokenizerSpec pre;
  load_pre_tokenizer(f, root.value("pre_tokenizer", json()), "pre_tokenizer", pre);
  parts->split = pre.split;
  load_normalizer(f, root.value("normalizer", json()), "normalizer", parts->normalizer);

  BpeOptions options;
  options.byte_level = pre.byte_level;
  options.byte_fallback = f.flag(model, "byte_fallback", false, "model");
  options.fuse_unknown = f.flag(model, "fuse_unk", false, "model");
  options.ignore_merges = f.flag(model, "ignore_merges", false, "model");
  const std::string unk = f.string_or(model, "unk_token", "", "model");
  if (!unk.empty()) {
    options.unknown_id = parts->vocab.find(unk);
    if (!options.unknown_id) fail(path, ": model.unk_token ", json(unk).dump(), " is not in the vocabulary");
  }

  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) fail(path, ": model.merges must be an array");
  std::vector<std::array<int32_t, 3>> merges;
  merges.reserve(merges_it->size());
  for (size_t i = 0; i < merges_it->size(); ++i) {
    const json& entry = (*merges_it)[i];
    const std::string where = str_cat("model.merges[", i, "]");
    std::string left, right;
    if (entry.is_string()) {  // "left right"
      const std::string text = entry.get<std::string>();
      const size_t space = text.find(' ', 1);
      if (space == std::string::npos) fail(path, ": ", where, " ", entry.dump(), " is not \"left right\"");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2) {  // ["left", "right"]
      left = f.string(entry[0], where + "[0]");
      right = f.string(entry[1], where + "[1]");
    } else {
      fail(path, ": ", where, " must be a string or a pair of strings");
    }
    const auto left_id = parts->vocab.find(left), right_id = parts->vocab.find(right);
    const auto merged_id = parts->vocab.find(left + right);
    if (!left_id || !right_id || !merged_id) {
      fail(path, ": ", where, " ", entry.dump(), " refers to a token missing from the vocabulary");
    }
    merges.push_back({*left_id, *right_id, *merged_id});
  }
  parts->model = std::make_unique<BpeModel>(parts->vocab, merges, options);
  if (!options.byte_level) parts->split_at_space_markers_if_exact();

  DecoderSpec decoder;
  load_decoder(f, root.value("decoder", json()), "decoder", decoder);
  parts->build_decoder(decoder);
  for (const AddedToken& token : parts->added_tokens.tokens()) {
    if (token.special) parts->special[size_t(token.id)] = true;
  }

  load_config(std::filesystem::path(path).parent_path().string(), *parts, root.value("post_processor", json()));
  return parts;
}

}  // namespace orchard::detail
