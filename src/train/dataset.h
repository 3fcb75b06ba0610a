// The trainer's data (issue 17; the format and the losses are in docs/training.md): JSONL, one
// training example per line, turned into token sequences with per-row targets and masks.
//
//   {"text": "..."}                          language modelling on every token (BOS as the tokenizer adds it)
//   {"prompt": "...", "completion": "..."}   loss on the completion's tokens only, EOS appended to it
//   {"messages": [{"role": ..., "content": ...}, ...]}
//                                            rendered with the chat template; loss on the assistant
//                                            messages' tokens only
// optional on every line:
//   "rationale": "..."    distilling step by step: a second sequence prompt -> rationale (+ EOS)
//                         with cross-entropy on the rationale (not with "text")
//   "teacher": {"ids": [[k ids], ...], "logprobs": [[k values], ...]}
//                         the teacher's top k at each completion (or assistant) token's position
//   "weight": w           the example's weight in the batch mean (> 0, default 1)
//
// Row i of an example predicts tokens[i + 1]; the last row predicts nothing. A completion token at
// position p is predicted by row p - 1, so its mask bit and its teacher row sit at row p - 1.
//
// The dataset needs only what DataTokenizer gives (encode, EOS, the chat template), so this layer
// does not link the tokenizer or the template engine; data_tokenizer() builds one from the public
// Tokenizer for callers that have it (the CLI, the tests).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "orchard/chat_template.h"
#include "orchard/tokenizer.h"
#include "train/loss.h"

namespace orchard::train {

struct DataTokenizer {
  // Token ids of a text, BOS prepended when asked.
  std::function<std::vector<int32_t>(std::string_view text, bool add_bos)> encode;
  bool add_bos = false;  // whether "text" and "prompt" start with BOS
  int32_t eos = -1;      // appended to completions and rationales; < 0: the tokenizer has none (refused)
  int64_t vocab_size = 0;
  // A JSON array of messages rendered by the chat template (add_generation_prompt as given); empty
  // function: the model has no chat template and "messages" lines are refused.
  std::function<std::string(const std::string& messages_json, bool add_generation_prompt)> render_chat;
};

// For a model whose tokenizer cannot be loaded (`why`): only pre-tokenized {"tokens": [...]} lines
// can be read; any line with text is refused with `why`.
inline DataTokenizer token_ids_only(int64_t vocab_size, std::string why) {
  DataTokenizer out;
  out.vocab_size = vocab_size;
  out.encode = [why](std::string_view, bool) -> std::vector<int32_t> {
    fail("the model's tokenizer cannot be loaded (", why, "): only {\"tokens\": [...]} lines can be used");
  };
  return out;
}

// The DataTokenizer of a public Tokenizer (which must outlive it): its BOS policy, its first EOS,
// its chat template with its own BOS/EOS texts. Chat renders are encoded without an added BOS: the
// template writes it where the model wants it.
inline DataTokenizer data_tokenizer(std::shared_ptr<const Tokenizer> tokenizer) {
  DataTokenizer out;
  out.encode = [tokenizer](std::string_view text, bool add_bos) { return tokenizer->encode(text, add_bos); };
  out.add_bos = tokenizer->adds_bos();
  const std::vector<int32_t> eos = tokenizer->eos_ids();
  out.eos = eos.empty() ? -1 : eos.front();
  out.vocab_size = tokenizer->vocab_size();
  if (!tokenizer->chat_template().empty()) {
    const std::string bos_text = tokenizer->bos_id() ? tokenizer->token_text(*tokenizer->bos_id()) : "";
    const std::string eos_text = eos.empty() ? "" : tokenizer->token_text(eos.front());
    auto chat = std::make_shared<const ChatTemplate>(tokenizer->chat_template(), bos_text, eos_text);
    out.render_chat = [chat](const std::string& messages, bool add_generation_prompt) {
      return chat->render_chat(messages, "", add_generation_prompt);
    };
  }
  return out;
}

struct DatasetOptions {
  int64_t max_seq = 0;    // the longest sequence (tokens); <= 0 refused. The CLI: --max-seq or the model's context
  bool truncate = false;  // cut longer sequences to max_seq instead of refusing them
};

// One training sequence. Every per-row vector has tokens.size() rows.
struct Example {
  std::vector<int32_t> tokens;      // [T]
  std::vector<int32_t> targets;     // [T] targets[i] = tokens[i + 1]; the last row 0 (never counted)
  std::vector<uint8_t> ce_mask;     // [T] rows whose cross-entropy counts
  std::vector<uint8_t> kd_mask;     // [T] rows with a teacher row (all 0 without a teacher)
  int64_t teacher_k = 0;            // 0: no teacher
  std::vector<int32_t> teacher_ids;   // [T, k], zero outside kd_mask
  std::vector<float> teacher_probs;   // [T, k] renormalized over the k, zero outside kd_mask
  double weight = 1;
  bool rationale = false;           // the prompt -> rationale sequence of a line (weighted by --rationale-weight)
  int64_t line = 0;                 // 1-based line of the file

  bool has_teacher() const { return teacher_k > 0; }
  TeacherTopK teacher() const { return {.k = teacher_k, .ids = teacher_ids, .probs = teacher_probs}; }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

// Every example of a JSONL file, in file order (a line's rationale sequence right after its main
// one). Blank lines are skipped. Throws orchard::Error "FILE:LINE: what is wrong" for any bad line.
std::vector<Example> load_dataset(const std::string& path, const DataTokenizer& tokenizer, const DatasetOptions& options);

// The examples of one line's text; `where` names it in errors ("FILE:LINE"). Appends to `out`.
void parse_example(std::string_view line, int64_t line_number, const std::string& where, const DataTokenizer& tokenizer,
                   const DatasetOptions& options, std::vector<Example>& out);

}  // namespace orchard::train
