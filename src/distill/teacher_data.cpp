#include "distill/teacher_data.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "base/text_lines.h"
#include "tokenizer/api_token_text.h"
#include "tokenizer/unicode.h"
#include "train/teacher_store.h"

namespace orchard::distill {
namespace {

using nlohmann::json;

// A collection with a teacher's top 20 at every token is ~500 bytes a token as JSON; this only
// stops a wrong path (as train/dataset.cpp's limit does).
constexpr uint64_t kMaxDataBytes = uint64_t{4} << 30;
constexpr uint64_t kMaxPackBytes = uint64_t{4} << 30;
constexpr size_t kMaxTopK = 65536;  // teacher_store's limit on k

std::string at_line(const std::string& where, int64_t line) {
  return (where.empty() ? std::string("records") : where) + ":" + std::to_string(line);
}

// A token text for a message: printable ASCII as is, anything else as \xNN.
std::string printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_byte_fallback(const std::string& text) {
  return text.size() == 6 && text.starts_with("<0x") && text[5] == '>' && hex_digit(text[3]) >= 0 &&
         hex_digit(text[4]) >= 0;
}

const json& field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) fail(where, ": missing field \"", key, "\"");
  return *it;
}

std::string string_of(const json& v, const char* key, const std::string& where) {
  if (!v.is_string()) fail(where, ": \"", key, "\" must be a string, not ", v.type_name());
  return v.get<std::string>();
}

TeacherRecord parse_record(std::string_view text, int64_t line, const std::string& where) {
  const json j = parse_json(text, where, "malformed JSON");
  if (!j.is_object()) fail(where, ": a line must be a JSON object, not ", j.type_name());
  TeacherRecord r;
  r.line = line;
  r.id = field(j, "id", where);
  if (!r.id.is_string() && !r.id.is_number_integer()) fail(where, ": \"id\" must be a string or an integer");
  if (const auto it = j.find("sample"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX)
      fail(where, ": \"sample\" must be an integer >= 0");
    r.sample = it->get<int>();
  }
  const bool has_prompt = j.contains("prompt"), has_messages = j.contains("messages");
  if (has_prompt == has_messages) fail(where, ": the record needs exactly one of \"prompt\" and \"messages\"");
  if (has_prompt) {
    r.prompt = string_of(j["prompt"], "prompt", where);
  } else {
    r.messages = j["messages"];
    if (!r.messages.is_array() || r.messages.empty()) fail(where, ": \"messages\" must be a non-empty array");
  }
  r.completion = string_of(field(j, "completion", where), "completion", where);
  if (const auto it = j.find("reasoning"); it != j.end() && !it->is_null())
    r.reasoning = string_of(*it, "reasoning", where);
  if (const auto it = j.find("finish_reason"); it != j.end() && !it->is_null())
    r.finish_reason = string_of(*it, "finish_reason", where);

  const json& tokens = field(j, "teacher_tokens", where);
  const json& logprobs = field(j, "teacher_logprobs", where);
  const json& top = field(j, "teacher_top", where);
  if (!tokens.is_array()) fail(where, ": \"teacher_tokens\" must be an array, not ", tokens.type_name());
  if (!logprobs.is_array()) fail(where, ": \"teacher_logprobs\" must be an array, not ", logprobs.type_name());
  if (!top.is_array()) fail(where, ": \"teacher_top\" must be an array, not ", top.type_name());
  if (logprobs.size() != tokens.size())
    fail(where, ": \"teacher_logprobs\" has ", logprobs.size(), " entries but \"teacher_tokens\" has ", tokens.size());
  if (top.size() != tokens.size())
    fail(where, ": \"teacher_top\" has ", top.size(), " rows but \"teacher_tokens\" has ", tokens.size());
  r.tokens.reserve(tokens.size());
  r.logprobs.reserve(tokens.size());
  r.top.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i].is_string())
      fail(where, ": \"teacher_tokens\"[", i, "] must be a string, not ", tokens[i].type_name());
    r.tokens.push_back(tokens[i].get<std::string>());
    const json& lp = logprobs[i];
    if (lp.is_null()) {
      r.logprobs.push_back(std::numeric_limits<double>::quiet_NaN());
    } else {
      if (!lp.is_number())
        fail(where, ": \"teacher_logprobs\"[", i, "] must be a number or null, not ", lp.type_name());
      r.logprobs.push_back(lp.get<double>());
    }
    const json& row = top[i];
    if (!row.is_object())
      fail(where, ": \"teacher_top\"[", i, "] must be an object {token text: logprob}, not ", row.type_name());
    if (row.size() > kMaxTopK)
      fail(where, ": \"teacher_top\"[", i, "] has ", row.size(), " entries (at most ", kMaxTopK, ")");
    std::vector<std::pair<std::string, double>> entries;
    entries.reserve(row.size());
    for (const auto& [text, value] : row.items()) {
      if (!value.is_number())
        fail(where, ": \"teacher_top\"[", i, "] entry '", printable(text), "' must be a number, not ",
             value.type_name());
      const double v = value.get<double>();
      if (!std::isfinite(v))
        fail(where, ": \"teacher_top\"[", i, "] entry '", printable(text), "' is ", v, " (not finite)");
      entries.emplace_back(text, v);
    }
    // Likeliest first; ties by text so that the order does not depend on the parser's.
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    r.top.push_back(std::move(entries));
  }
  return r;
}

// Where the completion's tokens begin among the teacher's: 0 when the tokens spell the completion;
// with reasoning, the tokens may also spell a thinking block first (collect splits <think>...</think>
// off the text but keeps every token), so the first token from which the rest spells the completion
// (exactly, or after the whitespace split_reasoning strips) is taken. nullopt: no such token.
std::optional<size_t> answer_start(const std::vector<std::string>& bytes, const std::string& completion,
                                   bool has_reasoning) {
  std::string concat;
  for (const std::string& b : bytes) concat += b;
  if (concat == completion) return 0;
  // A teacher may sample a token that starts a character and a next one that does not finish it:
  // its text then has U+FFFD where the tokens have the bytes (one per maximal invalid subpart, as
  // Orchard's decoder and Python's writes it). The tokens are still what the teacher said.
  if (!unicode::is_valid_utf8(concat)) {
    std::string valid;
    unicode::append_valid_utf8(concat, valid);
    if (valid == completion) return 0;
  }
  if (!has_reasoning) return std::nullopt;
  std::optional<size_t> stripped;
  size_t offset = 0;
  for (size_t s = 0; s <= bytes.size(); ++s) {
    std::string_view rest = std::string_view(concat).substr(offset);
    if (rest == completion) return s;
    const size_t first = rest.find_first_not_of(" \t\r\n");
    rest = first == std::string_view::npos ? std::string_view() : rest.substr(first);
    if (!stripped && rest == completion) stripped = s;
    if (s < bytes.size()) offset += bytes[s].size();
  }
  return stripped;
}

using TeacherRow = std::vector<std::pair<int32_t, float>>;  // (student id, probability), distinct ids

// prompt + trained tokens as an Example: rows[j] is the teacher row of the token at position
// prompt_len + j (empty: cross-entropy only; rows may be shorter than the trained tokens). nullopt
// when nothing is left to train on (an empty answer).
std::optional<train::Example> lay_out(const std::vector<int32_t>& tokens, size_t prompt_len,
                                      const std::vector<TeacherRow>& rows, bool rationale, int64_t line,
                                      const std::string& at, const MappingOptions& o) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T <= static_cast<int64_t>(prompt_len)) return std::nullopt;
  if (o.max_seq > 0 && T > o.max_seq && !o.truncate)
    fail(at, ": the ", rationale ? "rationale " : "", "sequence is ", T, " tokens, longer than the limit of ",
         o.max_seq, " (raise --max-seq or pass --truncate)");
  const int64_t kept = o.max_seq > 0 ? std::min(T, o.max_seq) : T;
  // A position p is predicted by row p - 1: position 0 (an empty prompt without BOS) is never trained.
  const int64_t first = std::max<int64_t>(static_cast<int64_t>(prompt_len), 1);
  int64_t k = 0;
  for (int64_t p = first; p < kept; ++p) {
    const size_t j = static_cast<size_t>(p) - prompt_len;
    if (j < rows.size()) k = std::max<int64_t>(k, static_cast<int64_t>(rows[j].size()));
  }
  train::Example e;
  e.tokens.assign(tokens.begin(), tokens.begin() + kept);
  e.targets.assign(kept, 0);
  for (int64_t i = 0; i + 1 < kept; ++i) e.targets[i] = e.tokens[i + 1];
  e.ce_mask.assign(kept, 0);
  e.kd_mask.assign(kept, 0);
  e.teacher_k = k;
  e.teacher_ids.assign(kept * k, 0);
  e.teacher_probs.assign(kept * k, 0.0f);
  bool any = false;
  for (int64_t p = first; p < kept; ++p) {
    const int64_t row = p - 1;
    e.ce_mask[row] = 1;
    any = true;
    const size_t j = static_cast<size_t>(p) - prompt_len;
    if (j >= rows.size() || rows[j].empty()) continue;
    e.kd_mask[row] = 1;
    int32_t* ids = e.teacher_ids.data() + row * k;
    float* probs = e.teacher_probs.data() + row * k;
    std::vector<int32_t> used;
    for (size_t c = 0; c < rows[j].size(); ++c) {
      ids[c] = rows[j][c].first;
      probs[c] = rows[j][c].second;
      used.push_back(rows[j][c].first);
    }
    // Narrower rows are padded to k with the smallest ids the row does not hold, at probability 0:
    // the losses need k distinct ids a row, and a zero term adds nothing to forward KL.
    std::sort(used.begin(), used.end());
    int32_t next = 0;
    for (int64_t c = static_cast<int64_t>(rows[j].size()); c < k; ++c) {
      while (std::binary_search(used.begin(), used.end(), next)) ++next;
      ids[c] = next++;
    }
  }
  if (!any) {
    if (kept < T) fail(at, ": nothing left to train on after truncation to ", kept, " tokens");
    return std::nullopt;
  }
  if (k == 0) e.teacher_k = 0;
  e.rationale = rationale;
  e.line = line;
  return e;
}

// Little-endian bytes for the pack.
void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_bits(std::string& out, const std::vector<uint8_t>& mask) {
  for (size_t b = 0; b < (mask.size() + 7) / 8; ++b) {
    uint8_t byte = 0;
    for (size_t i = 0; i < 8 && 8 * b + i < mask.size(); ++i)
      if (mask[8 * b + i]) byte |= static_cast<uint8_t>(1u << i);
    out.push_back(static_cast<char>(byte));
  }
}

constexpr char kPackMagic[4] = {'O', 'T', 'K', 'D'};
constexpr uint8_t kPackVersion = 1;
// Every example costs at least this many bytes (T, 2 tokens, the two masks, weight, flags, line, k).
constexpr uint64_t kMinExampleBytes = 12;
// The dense [T, k] teacher arrays a pack may ask for, per byte of file: a long prompt before a
// short answer costs k entries a token in memory and ~2 bytes a token on disk, so a real pack stays
// far below this, while a forged header cannot make a small file allocate gigabytes.
constexpr uint64_t kMaxEntriesPerByte = 256;

// Bounds-checked reading of a pack; every failure names the pack and the field.
class PackReader {
 public:
  PackReader(std::span<const uint8_t> bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  size_t left() const { return bytes_.size() - pos_; }
  uint8_t byte(const char* field) {
    if (pos_ >= bytes_.size()) truncated(field);
    return bytes_[pos_++];
  }
  std::span<const uint8_t> take(uint64_t n, const char* field) {
    if (n > left()) truncated(field);
    const std::span<const uint8_t> out = bytes_.subspan(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return out;
  }
  uint64_t varint(const char* field) {
    uint64_t value = 0;
    for (int i = 0; i < 10; ++i) {
      const uint8_t b = byte(field);
      if (i == 9 && b > 1) fail(path_, ": ", field, ": a varint overflows 64 bits at byte ", pos_ - 1);
      value |= uint64_t{b & 0x7fu} << (7 * i);
      if (!(b & 0x80)) return value;
    }
    fail(path_, ": ", field, ": a varint overflows 64 bits at byte ", pos_ - 1);
  }
  uint64_t varint_max(const char* field, uint64_t max) {
    const uint64_t v = varint(field);
    if (v > max) fail(path_, ": ", field, " = ", v, " is above its limit of ", max, " (at byte ", pos_, ")");
    return v;
  }
  std::vector<uint8_t> bits(uint64_t n, const char* field) {
    const std::span<const uint8_t> packed = take((n + 7) / 8, field);
    std::vector<uint8_t> out(static_cast<size_t>(n), 0);
    for (uint64_t i = 0; i < n; ++i) out[i] = (packed[i / 8] >> (i % 8)) & 1u;
    if (n % 8 && (packed.back() >> (n % 8)) != 0)
      fail(path_, ": ", field, ": unused bits are set (at byte ", pos_ - 1, ")");
    return out;
  }
  [[noreturn]] void truncated(const char* field) {
    fail(path_, ": truncated (", field, " runs past the end at byte ", pos_, " of ", bytes_.size(), ")");
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  const std::string& path_;
};

// OTKP's largest value code reads back as d = 2 Q ln 2 nats below the row's largest (teacher_store.h):
// every entry further down than about that comes back there, which is the quantizer's floor.
double floor_nats(int value_bits) { return 2.0 * value_bits * std::log(2.0); }

// Q of a blob that decode_rows accepted: magic and version, vocab and k (varints), then Q.
int blob_value_bits(std::span<const uint8_t> blob) {
  size_t pos = 5;
  for (int varint = 0; varint < 2; ++varint)
    while (pos < blob.size() && (blob[pos++] & 0x80)) {
    }
  if (pos >= blob.size()) fail("teacher store: no value_bits");  // not reached: decode_rows read it
  return blob[pos];
}

// The entries of a decoded row (ascending-id order) that sit at the quantizer's floor, those listed
// as zero left out.
std::vector<size_t> floor_entries(const float* lp, int64_t k, double floor, const std::vector<uint8_t>* zero) {
  float top = lp[0];
  for (int64_t c = 1; c < k; ++c) top = std::max(top, lp[c]);
  std::vector<size_t> out;
  for (int64_t c = 0; c < k; ++c)
    if (!(zero && (*zero)[c]) && static_cast<double>(top) - lp[c] >= floor - 1e-3)
      out.push_back(static_cast<size_t>(c));
  return out;
}

// The floor byte: the floor entries' depth below the row's largest as one value that keeps their
// total probability (-log of their mean exp(-d)), in 1/16 nats from 1 nat above the floor.
constexpr double kFloorStep = 1.0 / 16;

}  // namespace

std::vector<TeacherRecord> read_records(const std::string& path) {
  const std::string text = read_text_file(path, kMaxDataBytes);
  std::vector<TeacherRecord> out;
  for_each_line(text, [&](const TextLine& line) {
    out.push_back(parse_record(line.text, line.number, path + ":" + std::to_string(line.number)));
  });
  return out;
}

StudentVocab::StudentVocab(std::shared_ptr<const Tokenizer> tokenizer) : tokenizer_(std::move(tokenizer)) {
  if (!tokenizer_) fail("distill: the student has no tokenizer");
  struct Entry {
    std::string bytes;
    int rank;  // 0: a normal piece; 1: special or byte-fallback, chosen only when nothing else spells the bytes
    int32_t id;
  };
  std::vector<Entry> all;
  const int64_t V = tokenizer_->vocab_size();
  all.reserve(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) {
    const int32_t id = static_cast<int32_t>(i);
    std::string bytes = tokenizer_->token_bytes(id);
    if (bytes.empty()) continue;
    const bool second = tokenizer_->is_special(id) || is_byte_fallback(tokenizer_->token_text(id));
    all.push_back({std::move(bytes), second ? 1 : 0, id});
  }
  std::sort(all.begin(), all.end(), [](const Entry& a, const Entry& b) {
    if (a.bytes != b.bytes) return a.bytes < b.bytes;
    return a.rank != b.rank ? a.rank < b.rank : a.id < b.id;
  });
  for (Entry& e : all)
    if (by_bytes_.empty() || by_bytes_.back().first != e.bytes) by_bytes_.emplace_back(std::move(e.bytes), e.id);
}

std::optional<int32_t> StudentVocab::id_of(std::string_view teacher_text) const {
  const std::string bytes = api_token_bytes(teacher_text);
  const auto it =
      std::lower_bound(by_bytes_.begin(), by_bytes_.end(), bytes,
                       [](const std::pair<std::string, int32_t>& e, const std::string& b) { return e.first < b; });
  if (it == by_bytes_.end() || it->first != bytes) return std::nullopt;
  return it->second;
}

std::vector<train::Example> to_examples(std::span<const TeacherRecord> records, const StudentVocab& vocab,
                                        const MappingOptions& options, MappingStats* stats, const std::string& where) {
  MappingStats local;
  MappingStats& s = stats ? *stats : local;
  const Tokenizer& tok = vocab.tokenizer();
  const std::vector<int32_t> eos_ids = tok.eos_ids();
  const std::optional<int32_t> eos = eos_ids.empty() ? std::nullopt : std::optional<int32_t>(eos_ids.front());
  std::optional<train::DataTokenizer> chat;  // built at the first "messages" record: parsing the template costs
  std::vector<train::Example> out;
  for (const TeacherRecord& r : records) {
    const std::string at = at_line(where, r.line);
    try {
      if (r.tokens.size() != r.top.size() || r.tokens.size() != r.logprobs.size())
        fail(at, ": teacher_tokens, teacher_logprobs and teacher_top differ in length");
      std::vector<int32_t> prompt;
      if (!r.messages.is_null()) {
        if (tok.chat_template().empty())
          fail(at, ": the record has \"messages\" but the student's tokenizer has no chat template to render them");
        if (!chat) chat = train::data_tokenizer(vocab.shared());
        prompt = tok.encode(chat->render_chat(r.messages.dump(), true), false);
      } else {
        prompt = tok.encode(r.prompt, tok.adds_bos());
      }
      ++s.records;

      // The answer: the teacher's own tokens when each maps, else the completion re-encoded.
      std::vector<std::string> bytes;
      bytes.reserve(r.tokens.size());
      for (const std::string& t : r.tokens) bytes.push_back(api_token_bytes(t));
      const std::optional<size_t> start = answer_start(bytes, r.completion, !r.reasoning.empty());
      std::vector<int32_t> answer;
      bool mapped = start.has_value();
      std::string unmapped = mapped ? "" : "the teacher's tokens do not spell the completion";
      for (size_t j = start.value_or(r.tokens.size()); mapped && j < r.tokens.size(); ++j) {
        const std::optional<int32_t> id = vocab.id_of(r.tokens[j]);
        if (!id) {
          mapped = false;
          unmapped = "token '" + printable(bytes[j]) + "'";
        } else {
          answer.push_back(*id);
        }
      }
      std::vector<TeacherRow> rows;
      if (mapped) {
        bool dropped = false;
        for (size_t j = *start; j < r.tokens.size(); ++j) {
          std::vector<std::pair<int32_t, double>> m;  // (id, logprob) of the entries that map
          for (const auto& [text, lp] : r.top[j]) {
            if (const std::optional<int32_t> id = vocab.id_of(text)) {
              m.emplace_back(*id, lp);
            } else {
              dropped = true;
              ++s.dropped_entries;
              s.dropped_mass += std::exp(lp);
            }
          }
          TeacherRow row;
          if (!m.empty()) {
            // Renormalized over what maps, from the largest (exp never overflows); two teacher
            // tokens with the same bytes are one student id: their probabilities add.
            double top = -std::numeric_limits<double>::infinity();
            for (const auto& e : m) top = std::max(top, e.second);
            std::sort(m.begin(), m.end());
            std::vector<std::pair<int32_t, double>> merged;
            double sum = 0;
            for (const auto& [id, lp] : m) {
              const double w = std::exp(lp - top);
              sum += w;
              if (!merged.empty() && merged.back().first == id)
                merged.back().second += w;
              else
                merged.emplace_back(id, w);
            }
            for (const auto& [id, w] : merged) row.emplace_back(id, static_cast<float>(w / sum));
          }
          rows.push_back(std::move(row));
        }
        ++(dropped ? s.partial : s.exact);
      } else {
        ++s.sft_only;
        if (s.first_unmapped.empty()) s.first_unmapped = at + ": " + unmapped;
        answer = tok.encode(r.completion, false);
        rows.clear();
      }
      std::vector<int32_t> tokens = prompt;
      tokens.insert(tokens.end(), answer.begin(), answer.end());
      if (eos && r.finish_reason == "stop") tokens.push_back(*eos);
      if (std::optional<train::Example> e = lay_out(tokens, prompt.size(), rows, false, r.line, at, options)) {
        for (int64_t i = 0; i < e->size(); ++i) {
          // Answer tokens and KD rows as kept (after truncation); the EOS row is neither.
          const bool is_eos = i + 1 == static_cast<int64_t>(tokens.size()) - 1 && eos && r.finish_reason == "stop";
          if (e->ce_mask[i] && !is_eos) ++s.answer_tokens;
          s.kd_rows += e->kd_mask[i];
        }
        out.push_back(std::move(*e));
      }
      if (options.reasoning && !r.reasoning.empty()) {
        std::vector<int32_t> seq = prompt;
        const std::vector<int32_t> ids = tok.encode(r.reasoning, false);
        seq.insert(seq.end(), ids.begin(), ids.end());
        if (eos) seq.push_back(*eos);
        if (std::optional<train::Example> e = lay_out(seq, prompt.size(), {}, true, r.line, at, options)) {
          ++s.rationale_examples;
          out.push_back(std::move(*e));
        }
      }
    } catch (const Error& e) {
      // Errors from below (the tokenizer, the template) learn the line here.
      if (std::string_view(e.what()).starts_with(at)) throw;
      fail(at, ": ", e.what());
    }
  }
  return out;
}

// The pack, version 1 (varint = unsigned LEB128; multi-byte values little-endian):
//   magic "OTKD", version (1 byte), vocab (varint), examples (varint), then per example:
//     T (varint, >= 2), T tokens (varints < vocab), ce_mask and kd_mask (T bits each, least
//     significant first, ceil(T/8) bytes; unused bits and the last row's bit 0), weight (f32),
//     flags (1 byte: bit 0 rationale), line (varint), k (varint, 0: no teacher); when k > 0:
//     zero rows (varint z), z times (row gap (varint), ceil(k/8) bytes: which entries, in the row's
//     ascending-id order, have probability 0), then the blob's length (varint) and the blob: the
//     kd_mask rows' ids and log-probabilities as train::encode_rows writes them (OTKP, its own CRC),
//     then one floor byte per KD row (in order) whose decoded row has entries, not listed as zero,
//     at the quantizer's floor (2 Q ln 2 nats below the row's largest): b puts all of them at
//     floor - 1 + b/16 nats below it
//   CRC-32 (4 bytes) of every byte before it.
//
// Zero-probability entries (the padding of narrower rows, or a probability that underflowed) are
// listed exactly rather than quantized: OTKP keeps every value above ~4e-6 of the row's largest so
// that reverse KL stays finite, so a padded entry would come back as a small false probability and
// bend every padded row's renormalization. They are encoded at the row's largest log-probability
// minus 64 (the quantizer's floor) and set back to 0 on reading, the rest renormalized over what is
// left, so forward KL sees the same support as from the JSONL; z = 0 is one byte an example.
//
// The floor bytes: OTKP brings every entry more than ~2 Q ln 2 nats below the row's largest back at
// that depth, so a confident teacher's tail (19 entries at 1e-8, say) comes back ~100 times heavier
// (~1e-6 each at Q = 10). Near a student that matches the teacher, that moved forward KL by 1.4e-4
// nats on a loss of 8.5e-4 (tiny-qwen2-chat into itself, Q = 10: 0.16 relative; 4.9e-3 with the
// floor bytes). One byte per such row puts the tail at the depth that keeps its total mass, which
// is what the loss mostly sees of it.
void write_pack(const std::string& path, std::span<const train::Example> examples, int64_t vocab, PackStats* stats,
                int value_bits) {
  if (vocab < 1 || vocab > INT32_MAX) fail(path, ": vocabulary size ", vocab, " is not in [1, 2^31 - 1]");
  if (value_bits < 4 || value_bits > 16) fail(path, ": value_bits = ", value_bits, " is not in [4, 16]");
  PackStats local;
  PackStats& s = stats ? *stats : local;
  s = PackStats{};
  std::string out(kPackMagic, 4);
  out.push_back(static_cast<char>(kPackVersion));
  put_varint(out, static_cast<uint64_t>(vocab));
  put_varint(out, examples.size());
  for (size_t n = 0; n < examples.size(); ++n) {
    const train::Example& e = examples[n];
    const int64_t T = e.size(), k = e.teacher_k;
    const std::string what = str_cat(path, ": example ", n, " (line ", e.line, ")");
    if (T < 2) fail(what, ": ", T, " tokens (at least 2)");
    if (static_cast<int64_t>(e.ce_mask.size()) != T || static_cast<int64_t>(e.kd_mask.size()) != T)
      fail(what, ": masks of ", e.ce_mask.size(), " and ", e.kd_mask.size(), " rows for ", T, " tokens");
    if (e.ce_mask.back() || e.kd_mask.back()) fail(what, ": the last row is masked in (it predicts nothing)");
    if (k < 0 || k > static_cast<int64_t>(kMaxTopK) || k > vocab) fail(what, ": teacher k = ", k, " is out of range");
    if (k > 0 &&
        (static_cast<int64_t>(e.teacher_ids.size()) != T * k || static_cast<int64_t>(e.teacher_probs.size()) != T * k))
      fail(what, ": teacher arrays do not hold T * k values");
    if (!(e.weight > 0) || !std::isfinite(static_cast<float>(e.weight)))
      fail(what, ": weight ", e.weight, " is not > 0");
    put_varint(out, static_cast<uint64_t>(T));
    for (int32_t t : e.tokens) {
      if (t < 0 || t >= vocab) fail(what, ": token ", t, " is outside the vocabulary [0, ", vocab, ")");
      put_varint(out, static_cast<uint64_t>(t));
    }
    put_bits(out, e.ce_mask);
    put_bits(out, e.kd_mask);
    const uint32_t w = std::bit_cast<uint32_t>(static_cast<float>(e.weight));
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(w >> (8 * i)));
    out.push_back(static_cast<char>(e.rationale ? 1 : 0));
    put_varint(out, static_cast<uint64_t>(std::max<int64_t>(e.line, 0)));
    put_varint(out, static_cast<uint64_t>(k));
    s.examples += 1;
    s.tokens += T;
    if (k == 0) continue;
    std::vector<int32_t> ids;
    std::vector<double> logprobs;
    std::string zero_rows;
    int64_t zero_count = 0, rows = 0, last_zero = -1;
    std::vector<std::vector<uint8_t>> row_zero;  // per KD row: its zero entries (ascending-id order), or empty
    for (int64_t i = 0; i < T; ++i) {
      if (!e.kd_mask[i]) continue;
      const int32_t* row_ids = e.teacher_ids.data() + i * k;
      const float* row_p = e.teacher_probs.data() + i * k;
      double top = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < k; ++c) {
        if (!(row_p[c] >= 0 && row_p[c] <= 1))
          fail(what, ": teacher probability ", row_p[c], " at row ", i, " is not in [0, 1]");
        if (row_p[c] > 0) top = std::max(top, std::log(static_cast<double>(row_p[c])));
      }
      if (!std::isfinite(top)) fail(what, ": teacher row ", i, " has no probability above 0");
      std::vector<uint8_t> zero(static_cast<size_t>(k), 0);
      bool any_zero = false;
      std::vector<std::pair<int32_t, int64_t>> order;  // (id, c): the row's ascending-id order, as OTKP keeps it
      for (int64_t c = 0; c < k; ++c) order.emplace_back(row_ids[c], c);
      std::sort(order.begin(), order.end());
      for (size_t pos = 0; pos < order.size(); ++pos) {
        const int64_t c = order[pos].second;
        if (row_p[c] == 0) {
          zero[pos] = 1;
          any_zero = true;
        }
      }
      for (int64_t c = 0; c < k; ++c) {
        ids.push_back(row_ids[c]);
        logprobs.push_back(row_p[c] > 0 ? std::log(static_cast<double>(row_p[c])) : top - 64);
      }
      if (any_zero) {
        put_varint(zero_rows, static_cast<uint64_t>(rows - last_zero - 1));
        put_bits(zero_rows, zero);
        last_zero = rows;
        ++zero_count;
      }
      row_zero.push_back(any_zero ? std::move(zero) : std::vector<uint8_t>());
      ++rows;
    }
    put_varint(out, static_cast<uint64_t>(zero_count));
    out += zero_rows;
    std::vector<uint8_t> blob;
    if (rows > 0) {
      try {
        blob = train::encode_rows(ids, logprobs, k, vocab, {.value_bits = value_bits});
      } catch (const Error& err) {
        fail(what, ": ", err.what());
      }
    }
    // Each row with entries at the quantizer's floor gets one byte that puts them back at the depth
    // that keeps their mass: the reader finds the same rows and entries in the same decoded blob.
    std::string floor_bytes;
    if (rows > 0) {
      const train::TeacherRows decoded = train::decode_rows(blob, {.vocab = vocab, .k = k, .rows = rows});
      const double floor = floor_nats(value_bits);
      int64_t r = 0;
      for (int64_t i = 0; i < T; ++i) {
        if (!e.kd_mask[i]) continue;
        const std::vector<uint8_t>* zero = row_zero[r].empty() ? nullptr : &row_zero[r];
        const std::vector<size_t> at_floor = floor_entries(decoded.logprobs.data() + r * k, k, floor, zero);
        if (!at_floor.empty()) {
          const int32_t* row_ids = e.teacher_ids.data() + i * k;
          const float* row_p = e.teacher_probs.data() + i * k;
          std::vector<std::pair<int32_t, int64_t>> order;
          for (int64_t c = 0; c < k; ++c) order.emplace_back(row_ids[c], c);
          std::sort(order.begin(), order.end());
          double top = 0, mass = 0;
          for (int64_t c = 0; c < k; ++c) top = std::max(top, static_cast<double>(row_p[c]));
          for (size_t pos : at_floor) mass += row_p[order[pos].second] / top;
          const double depth = -std::log(mass / static_cast<double>(at_floor.size()));
          floor_bytes.push_back(
              static_cast<char>(std::clamp(std::round((depth - floor + 1) / kFloorStep), 0.0, 255.0)));
        }
        ++r;
      }
    }
    put_varint(out, blob.size());
    out.append(reinterpret_cast<const char*>(blob.data()), blob.size());
    out += floor_bytes;
    s.kd_rows += rows;
    s.teacher_bytes += static_cast<int64_t>(blob.size());
  }
  const uint32_t crc = train::crc32_ieee({reinterpret_cast<const uint8_t*>(out.data()), out.size()});
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(crc >> (8 * i)));
  s.bytes = static_cast<int64_t>(out.size());
  AtomicFile file(path);
  file.write(out);
  file.commit();
}

std::vector<train::Example> read_pack(const std::string& path, int64_t vocab) {
  const std::string text = read_text_file(path, kMaxPackBytes);
  const std::span<const uint8_t> all(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  if (all.size() < 4 || std::memcmp(all.data(), kPackMagic, 4) != 0)
    fail(path, ": not a teacher pack (no \"OTKD\" magic)");
  if (all.size() < 5 + 2 + 4) fail(path, ": truncated (", all.size(), " bytes)");
  if (all[4] != kPackVersion)
    fail(path, ": unsupported pack version ", int{all[4]}, " (this build reads ", int{kPackVersion}, ")");
  const std::span<const uint8_t> body = all.first(all.size() - 4);
  const std::span<const uint8_t> tail = all.last(4);
  const uint32_t stored =
      uint32_t{tail[0]} | uint32_t{tail[1]} << 8 | uint32_t{tail[2]} << 16 | uint32_t{tail[3]} << 24;
  if (train::crc32_ieee(body) != stored) fail(path, ": checksum mismatch (the pack is truncated or corrupt)");
  PackReader in(body.subspan(5), path);
  const int64_t V = static_cast<int64_t>(in.varint_max("vocab", INT32_MAX));
  if (V < 1) fail(path, ": vocabulary size 0");
  if (vocab > 0 && V != vocab)
    fail(path, ": the pack was made for a vocabulary of ", V, " tokens, the student has ", vocab);
  const uint64_t count = in.varint_max("example count", in.left() / kMinExampleBytes);
  const uint64_t entry_budget = (uint64_t{1} << 20) + kMaxEntriesPerByte * all.size();
  uint64_t entries = 0;
  std::vector<train::Example> out;
  out.reserve(static_cast<size_t>(count));
  for (uint64_t n = 0; n < count; ++n) {
    train::Example e;
    const int64_t T = static_cast<int64_t>(in.varint_max("T", in.left()));
    const std::string what = str_cat(path, ": example ", n);
    if (T < 2) fail(what, ": ", T, " tokens (at least 2)");
    e.tokens.resize(T);
    for (int64_t i = 0; i < T; ++i)
      e.tokens[i] = static_cast<int32_t>(in.varint_max("token", static_cast<uint64_t>(V - 1)));
    e.targets.assign(T, 0);
    for (int64_t i = 0; i + 1 < T; ++i) e.targets[i] = e.tokens[i + 1];
    e.ce_mask = in.bits(T, "ce_mask");
    e.kd_mask = in.bits(T, "kd_mask");
    if (e.ce_mask.back() || e.kd_mask.back()) fail(what, ": the last row is masked in (it predicts nothing)");
    const std::span<const uint8_t> wb = in.take(4, "weight");
    const float w =
        std::bit_cast<float>(uint32_t{wb[0]} | uint32_t{wb[1]} << 8 | uint32_t{wb[2]} << 16 | uint32_t{wb[3]} << 24);
    if (!(w > 0) || !std::isfinite(w)) fail(what, ": weight ", w, " is not a finite number > 0");
    e.weight = w;
    const uint8_t flags = in.byte("flags");
    if (flags > 1) fail(what, ": unknown flags ", int{flags});
    e.rationale = flags & 1;
    e.line = static_cast<int64_t>(in.varint_max("line", INT64_MAX));
    const int64_t k = static_cast<int64_t>(in.varint_max("k", std::min<uint64_t>(kMaxTopK, static_cast<uint64_t>(V))));
    e.teacher_k = k;
    if (k > 0) {
      entries += static_cast<uint64_t>(T) * static_cast<uint64_t>(k);
      if (entries > entry_budget)
        fail(what, ": the teacher rows would take ", entries, " entries, more than a pack of ", all.size(),
             " bytes can hold (corrupt)");
      const int64_t rows = std::count(e.kd_mask.begin(), e.kd_mask.end(), uint8_t{1});
      const int64_t z = static_cast<int64_t>(in.varint_max("zero rows", static_cast<uint64_t>(rows)));
      std::vector<std::pair<int64_t, std::vector<uint8_t>>> zero;
      int64_t last = -1;
      for (int64_t i = 0; i < z; ++i) {
        const uint64_t gap = in.varint_max("zero row gap", static_cast<uint64_t>(rows));
        const int64_t row = last + 1 + static_cast<int64_t>(gap);
        if (row >= rows) fail(what, ": zero row ", row, " is past the ", rows, " teacher rows");
        std::vector<uint8_t> mask = in.bits(k, "zero entries");
        const int64_t zeros = std::count(mask.begin(), mask.end(), uint8_t{1});
        if (zeros == 0 || zeros == k) fail(what, ": teacher row ", row, " lists ", zeros, " zero entries of ", k);
        zero.emplace_back(row, std::move(mask));
        last = row;
      }
      const uint64_t blob_size = in.varint_max("teacher blob size", in.left());
      const std::span<const uint8_t> blob = in.take(blob_size, "teacher blob");
      e.teacher_ids.assign(T * k, 0);
      e.teacher_probs.assign(T * k, 0.0f);
      if (rows == 0) {
        if (blob_size != 0) fail(what, ": a teacher blob with no teacher rows");
      } else {
        train::TeacherRows t;
        try {
          t = train::decode_rows(blob, {.vocab = V, .k = k, .rows = rows});
        } catch (const Error& err) {
          fail(what, ": ", err.what());
        }
        const double floor = floor_nats(blob_value_bits(blob));
        size_t next_zero = 0;
        int64_t r = 0;
        std::vector<double> lp(static_cast<size_t>(k));
        for (int64_t i = 0; i < T; ++i) {
          if (!e.kd_mask[i]) continue;
          std::copy_n(t.ids.begin() + r * k, k, e.teacher_ids.begin() + i * k);
          float* p = e.teacher_probs.data() + i * k;
          const std::vector<uint8_t>* mask = nullptr;
          if (next_zero < zero.size() && zero[next_zero].first == r) mask = &zero[next_zero++].second;
          const float* row_lp = t.logprobs.data() + r * k;
          const std::vector<size_t> at_floor = floor_entries(row_lp, k, floor, mask);
          if (!mask && at_floor.empty()) {
            std::copy_n(t.probs.begin() + r * k, k, p);
          } else {
            // The floor entries at their stored depth, the zero entries at 0, the row renormalized
            // over the rest from its largest, in double.
            double top = -std::numeric_limits<double>::infinity(), sum = 0;
            for (int64_t c = 0; c < k; ++c) top = std::max(top, static_cast<double>(row_lp[c]));
            for (int64_t c = 0; c < k; ++c) lp[c] = row_lp[c];
            if (!at_floor.empty()) {
              const double depth = floor - 1 + in.byte("floor depth") * kFloorStep;
              for (size_t c : at_floor) lp[c] = top - depth;
            }
            for (int64_t c = 0; c < k; ++c)
              if (!(mask && (*mask)[c])) sum += std::exp(lp[c] - top);
            for (int64_t c = 0; c < k; ++c)
              p[c] = mask && (*mask)[c] ? 0.0f : static_cast<float>(std::exp(lp[c] - top) / sum);
          }
          ++r;
        }
      }
    } else if (std::find(e.kd_mask.begin(), e.kd_mask.end(), 1) != e.kd_mask.end()) {
      fail(what, ": KD rows without a teacher (k = 0)");
    }
    if (std::find(e.ce_mask.begin(), e.ce_mask.end(), 1) == e.ce_mask.end() &&
        std::find(e.kd_mask.begin(), e.kd_mask.end(), 1) == e.kd_mask.end())
      fail(what, ": no row to train on");
    out.push_back(std::move(e));
  }
  if (in.left() != 0) fail(path, ": ", in.left(), " bytes after the last example");
  return out;
}

bool is_teacher_pack(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, kPackMagic, 4) == 0;
}

std::vector<train::Example> load_teacher_examples(const std::string& path, const StudentVocab& vocab,
                                                  const MappingOptions& options, MappingStats* stats) {
  if (!is_teacher_pack(path)) return to_examples(read_records(path), vocab, options, stats, path);
  std::vector<train::Example> examples = read_pack(path, vocab.tokenizer().vocab_size());
  MappingStats local;
  MappingStats& s = stats ? *stats : local;
  std::vector<train::Example> out;
  for (train::Example& e : examples) {
    if (e.rationale && !options.reasoning) continue;
    const int64_t T = e.size();
    if (options.max_seq > 0 && T > options.max_seq) {
      const std::string at = str_cat(path, ": example of line ", e.line);
      if (!options.truncate)
        fail(at, ": the sequence is ", T, " tokens, longer than the limit of ", options.max_seq,
             " (raise --max-seq or pass --truncate)");
      const int64_t kept = options.max_seq, k = e.teacher_k;
      for (auto* v : {&e.tokens, &e.targets}) v->resize(kept);
      for (auto* v : {&e.ce_mask, &e.kd_mask}) v->resize(kept);
      e.targets.back() = 0;
      e.ce_mask.back() = 0;
      e.kd_mask.back() = 0;
      e.teacher_ids.resize(kept * k);
      e.teacher_probs.resize(kept * k);
      std::fill_n(e.teacher_ids.end() - k, k, 0);
      std::fill_n(e.teacher_probs.end() - k, k, 0.0f);
      if (std::find(e.ce_mask.begin(), e.ce_mask.end(), 1) == e.ce_mask.end())
        fail(at, ": nothing left to train on after truncation to ", kept, " tokens");
    }
    if (!e.rationale) ++s.records;
    if (e.rationale) ++s.rationale_examples;
    s.kd_rows += std::count(e.kd_mask.begin(), e.kd_mask.end(), uint8_t{1});
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace orchard::distill
