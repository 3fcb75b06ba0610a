// The trainer's JSONL reader (train/dataset.h): the input is one line of a training file, read by
// train::parse_example with max_seq 64, once refusing long sequences and once truncating them.
// The tokenizer is synthetic (no fixture file to load): a byte is one id (byte + 3), BOS 1 and
// EOS 2, vocabulary 259, and a terse chat template ("u:Hi" and a newline a message) for "messages"
// lines, so that every field of the format reaches the parser's own checks in a few tokens. What
// it returns must hang together: every per-row vector T long with T <= 64, targets the next
// token, ids in the vocabulary, the teacher's rows k wide and only on KD rows, some row trained,
// a finite weight > 0.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "orchard/chat_template.h"
#include "orchard/error.h"
#include "train/dataset.h"

using namespace orchard;

namespace {

constexpr int64_t kVocab = 259;
constexpr int64_t kMaxSeq = 64;

const train::DataTokenizer& tokenizer() {
  static const train::DataTokenizer tok = [] {
    train::DataTokenizer t;
    t.encode = [](std::string_view text, bool add_bos) {
      std::vector<int32_t> ids;
      if (add_bos) ids.push_back(1);
      for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
      return ids;
    };
    t.add_bos = true;
    t.eos = 2;
    t.vocab_size = kVocab;
    auto chat = std::make_shared<const ChatTemplate>(
        "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}a:{% endif %}");
    t.render_chat = [chat](const std::string& messages, bool generation) {
      return chat->render_chat(messages, "", generation);
    };
    return t;
  }();
  return tok;
}

void check(const train::Example& e) {
  const size_t T = e.tokens.size();
  if (T < 1 || static_cast<int64_t>(T) > kMaxSeq) std::abort();
  if (e.targets.size() != T || e.ce_mask.size() != T || e.kd_mask.size() != T) std::abort();
  if (e.teacher_k < 0 || e.teacher_ids.size() != T * e.teacher_k || e.teacher_probs.size() != T * e.teacher_k)
    std::abort();
  bool trained = false;
  for (size_t i = 0; i < T; ++i) {
    if (e.tokens[i] < 0 || e.tokens[i] >= kVocab) std::abort();
    if (i + 1 < T && e.targets[i] != e.tokens[i + 1]) std::abort();
    if (e.ce_mask[i] && i + 1 == T) std::abort();  // the last row predicts nothing
    if (e.kd_mask[i] && e.teacher_k == 0) std::abort();
    trained = trained || e.ce_mask[i] || e.kd_mask[i];
    for (int64_t j = 0; j < e.teacher_k; ++j) {
      const int32_t id = e.teacher_ids[i * e.teacher_k + j];
      const float p = e.teacher_probs[i * e.teacher_k + j];
      if (id < 0 || id >= kVocab || !(p >= 0.0f && p <= 1.0f + 1e-5f)) std::abort();
      if (!e.kd_mask[i] && p != 0.0f) std::abort();
    }
  }
  if (!trained || !(e.weight > 0) || !std::isfinite(e.weight)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line = fuzz::as_text(data, size);
  for (bool truncate : {false, true}) {
    std::vector<train::Example> out;
    try {
      train::parse_example(line, 1, "fuzz:1", tokenizer(), {.max_seq = kMaxSeq, .truncate = truncate}, out);
    } catch (const Error&) {
      continue;
    }
    if (out.empty() || out.size() > 2) std::abort();  // the line's sequence, and its rationale's
    for (const train::Example& e : out) check(e);
  }
  return 0;
}
