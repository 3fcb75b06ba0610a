// A teacher's collected answers (collect.h's JSONL) as the trainer's examples for a student
// (issue 18): the teacher's token texts mapped to the student's ids, the top-k rows with them, and
// the compact side file (`orchard distill pack`) that holds the same examples in a few bytes a token.
//
// Mapping. Each teacher token text (raw bytes, or the legacy API's "bytes:\xNN..." form) is looked
// up among the student's tokens by the bytes they decode to. When two student ids decode to the same
// bytes (SentencePiece's byte-fallback <0x20> and "▁", say), the one that is not a byte-fallback or
// special token wins. A record is
//   exact     every chosen token and every top-k entry maps: the student trains on the teacher's own
//             token sequence, with KD on every answer token;
//   partial   every chosen token maps but some top-k entries do not: those entries are dropped and
//             each row renormalized over what is left (the dropped mass is reported);
//   sft_only  some chosen token does not map (another tokenizer): the answer text is re-encoded with
//             the student's tokenizer and trained with cross-entropy only; no KD rows.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/tokenizer.h"
#include "train/dataset.h"

namespace orchard::distill {

// One line of collect's output (collect.h has the format).
struct TeacherRecord {
  nlohmann::json id;
  int sample = 0;
  int64_t line = 0;            // 1-based line in the file
  std::string prompt;          // the text prompt; empty when `messages` is set
  nlohmann::json messages;     // the chat prompt; null when `prompt` is set
  std::string completion;      // the answer (reasoning split off)
  std::string reasoning;       // empty: none
  std::string finish_reason;   // "stop", "length" or empty (not given)
  std::vector<std::string> tokens;   // the teacher's answer tokens' texts, as collected
  std::vector<double> logprobs;      // the chosen tokens' log-probabilities (NaN where the teacher gave null)
  std::vector<std::vector<std::pair<std::string, double>>> top;  // per teacher token: (text, logprob), likeliest first
};

// Every record of a collected JSONL file; blank lines skipped. orchard::Error "FILE:LINE: what" for a
// line that is not such a record (missing or mistyped field, lists of different lengths, non-finite
// top logprobs, a top row of more than 65536 entries). Unknown fields are ignored (later collect
// versions may add some); "teacher_top" rows are objects {token text: logprob}, kept likeliest first.
std::vector<TeacherRecord> read_records(const std::string& path);


// The student's ids by the bytes their tokens decode to (see the header comment for ties).
class StudentVocab {
 public:
  explicit StudentVocab(std::shared_ptr<const Tokenizer> tokenizer);
  // A teacher token text (raw bytes, or "bytes:\xNN..." as the legacy completions API spells a token
  // that is not whole UTF-8) to the student's id; nullopt when no student token has those bytes.
  std::optional<int32_t> id_of(std::string_view teacher_text) const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::shared_ptr<const Tokenizer>& shared() const { return tokenizer_; }

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::vector<std::pair<std::string, int32_t>> by_bytes_;  // sorted by bytes, one (preferred) id each
};

struct MappingOptions {
  bool reasoning = true;  // a record's reasoning becomes a second sequence prompt -> reasoning (+ EOS), CE only
  int64_t max_seq = 0;    // as train::DatasetOptions, except that <= 0 means no limit
  bool truncate = false;
};

struct MappingStats {
  int64_t records = 0, exact = 0, partial = 0, sft_only = 0;
  int64_t answer_tokens = 0;     // the answers' tokens (EOS not counted)
  int64_t kd_rows = 0;           // rows with teacher top-k
  double dropped_mass = 0;       // the teacher probability of dropped top-k entries, summed over rows
  int64_t dropped_entries = 0;
  int64_t rationale_examples = 0;  // reasoning sequences made
  std::string first_unmapped;    // "FILE:LINE: token '...'" of the first sft_only record, for the message
};

// One example per record (the prompt encoded as the student would see it: text with BOS as its
// tokenizer adds it, or messages rendered with its chat template and the generation prompt; then the
// answer's tokens, and EOS when finish_reason is "stop"), plus the reasoning sequence when asked. The
// answer's rows have the CE mask; those with a teacher row the KD mask and the teacher's top k
// (renormalized over the entries that map; k = the widest row, narrower rows padded with distinct
// unused ids at probability 0). Records too long for max_seq are refused (or cut with truncate).
// The teacher's tokens must spell the completion; when the record has reasoning they may spell a
// thinking block first (collect splits it off the text, not off the tokens), and the answer's
// tokens are then those after it. Tokens that do not spell the completion make the record
// sft_only. An answer with nothing to train (empty, no EOS) gives no example; errors name
// "WHERE:LINE" (WHERE = `where`, or "records").
std::vector<train::Example> to_examples(std::span<const TeacherRecord> records, const StudentVocab& vocab,
                                        const MappingOptions& options, MappingStats* stats = nullptr,
                                        const std::string& where = "");

// The compact side file: the examples with their teacher rows in teacher_store's form (OTKP).
struct PackStats {
  int64_t examples = 0, tokens = 0, kd_rows = 0;
  int64_t bytes = 0;          // the whole file
  int64_t teacher_bytes = 0;  // the OTKP blobs alone
};
// value_bits: the quantizer's Q for the teacher's probabilities (teacher_store.h; 4..16). The pack's
// error in forward KL is small in nats but the loss itself falls towards 0 as the student nears the
// teacher, so the worst relative case is a model distilled into itself. Measured there (the
// student's own logits, T = 1, largest over the examples): stories260K (top 20, 60 answers) 7.5e-4
// at Q = 9, 1.9e-4 at 10, 4.7e-5 at 11, 1.3e-5 at 12; tiny-qwen2-chat (a confident teacher: most
// of each row at the quantizer's floor) 1.9e-2, 4.9e-3, 1.1e-3, 2.7e-4. Each bit costs k - 1 bits a
// row; 12 keeps the 1e-3 in both. Under zero logits every Q here stays below 1e-4.
// The default is 10: on a 151,936-token vocabulary (Qwen2.5-0.5B's shape, top 20, 300 answers of 32
// tokens, the model's own logits) the teacher rows take 60.08 / 62.45 / 67.18 bytes a token at
// Q = 9 / 10 / 12 against the 64, and forward KL moves 2.4e-4 / 5.3e-5 / 4.4e-6 relative.
// Distilling a confident teacher into itself wants --value-bits 12.
void write_pack(const std::string& path, std::span<const train::Example> examples, int64_t vocab,
                PackStats* stats = nullptr, int value_bits = 10);
// Every example of a pack (teacher probabilities as the quantizer gives them back, renormalized).
// `vocab` > 0 must be the pack's. Bytes that are not such a pack (bad magic, version or checksum,
// truncated, sizes out of range, trailing bytes) throw orchard::Error naming the file.
std::vector<train::Example> read_pack(const std::string& path, int64_t vocab);

// Whether `path` begins with the pack's magic "OTKD".
bool is_teacher_pack(const std::string& path);

// A collected JSONL file or a pack, told apart by the first bytes. For a pack, `options` drops the
// rationale sequences (reasoning = false) and applies max_seq/truncate; `stats` gets records (the
// answer sequences), rationale_examples and kd_rows only.
std::vector<train::Example> load_teacher_examples(const std::string& path, const StudentVocab& vocab,
                                                  const MappingOptions& options, MappingStats* stats = nullptr);

}  // namespace orchard::distill
