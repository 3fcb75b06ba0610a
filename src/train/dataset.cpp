#include "train/dataset.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "base/text_lines.h"

namespace orchard::train {
namespace {

using nlohmann::ordered_json;

// Training files with a teacher's top k per token are large; this only stops a wrong path.
constexpr uint64_t kMaxDataBytes = uint64_t{4} << 30;

std::string string_field(const ordered_json& j, const char* key, const std::string& where) {
  const ordered_json& v = j.at(key);
  if (!v.is_string()) fail(where, ": \"", key, "\" must be a string, not ", v.type_name());
  return v.get<std::string>();
}

// A sequence plus the rows it trains, before the masks are laid out.
struct Sequence {
  std::vector<int32_t> tokens;
  std::vector<int64_t> trained;  // positions p (>= 1) whose token the loss predicts (from row p - 1)
};

// The teacher's rows as read: k ids and k probabilities (renormalized over the k) per row.
struct Teacher {
  int64_t k = 0;
  std::vector<int32_t> ids;
  std::vector<float> probs;
  int64_t rows() const { return k ? static_cast<int64_t>(ids.size()) / k : 0; }
};

Teacher parse_teacher(const ordered_json& t, int64_t vocab, const std::string& where) {
  if (!t.is_object()) fail(where, ": \"teacher\" must be an object with \"ids\" and \"logprobs\"");
  for (const auto& [key, value] : t.items())
    if (key != "ids" && key != "logprobs") fail(where, ": unknown field \"teacher.", key, "\" (expected ids, logprobs)");
  if (!t.contains("ids") || !t.contains("logprobs")) fail(where, ": \"teacher\" needs both \"ids\" and \"logprobs\"");
  const ordered_json& ids = t["ids"];
  const ordered_json& lps = t["logprobs"];
  if (!ids.is_array() || !lps.is_array()) fail(where, ": \"teacher.ids\" and \"teacher.logprobs\" must be arrays of rows");
  if (ids.size() != lps.size())
    fail(where, ": \"teacher.ids\" has ", ids.size(), " rows but \"teacher.logprobs\" has ", lps.size());
  if (ids.empty()) fail(where, ": \"teacher\" has no rows");
  Teacher out;
  for (size_t r = 0; r < ids.size(); ++r) {
    const ordered_json& id_row = ids[r];
    const ordered_json& lp_row = lps[r];
    if (!id_row.is_array() || !lp_row.is_array()) fail(where, ": teacher row ", r, " must be an array of ids and one of logprobs");
    if (id_row.empty()) fail(where, ": teacher row ", r, " is empty");
    if (id_row.size() != lp_row.size())
      fail(where, ": teacher row ", r, " has ", id_row.size(), " ids but ", lp_row.size(), " logprobs");
    if (r == 0) out.k = static_cast<int64_t>(id_row.size());
    if (static_cast<int64_t>(id_row.size()) != out.k)
      fail(where, ": teacher row ", r, " has ", id_row.size(), " entries, row 0 has ", out.k, " (every row needs the same k)");
    std::vector<double> lp(out.k);
    for (int64_t c = 0; c < out.k; ++c) {
      const ordered_json& id = id_row[c];
      if (!id.is_number_integer()) fail(where, ": teacher row ", r, " id ", c, " is not an integer");
      const int64_t value = id.is_number_unsigned() && id.get<uint64_t>() > INT64_MAX ? INT64_MAX : id.get<int64_t>();
      if (value < 0 || value >= vocab)
        fail(where, ": teacher id ", value, " (row ", r, ") is outside the vocabulary [0, ", vocab, ")");
      for (int64_t d = 0; d < c; ++d)
        if (out.ids[out.ids.size() - c + d] == value) fail(where, ": teacher id ", value, " repeats in row ", r);
      out.ids.push_back(static_cast<int32_t>(value));
      if (!lp_row[c].is_number()) fail(where, ": teacher row ", r, " logprob ", c, " is not a number");
      lp[c] = lp_row[c].get<double>();
      if (!std::isfinite(lp[c])) fail(where, ": teacher row ", r, " logprob ", c, " is ", lp[c], " (not finite)");
    }
    // Renormalized over the k in double, from the largest: exp never overflows.
    const double top = *std::max_element(lp.begin(), lp.end());
    double sum = 0;
    for (double& v : lp) sum += (v = std::exp(v - top));
    for (double v : lp) out.probs.push_back(static_cast<float>(v / sum));
  }
  return out;
}

std::vector<int32_t> encode(const DataTokenizer& tok, const std::string& text, bool add_bos) {
  return tok.encode(text, add_bos);
}

void check_ids(const std::vector<int32_t>& ids, int64_t vocab, const std::string& where) {
  for (int32_t id : ids)
    if (id < 0 || id >= vocab) fail(where, ": the tokenizer gave id ", id, ", outside the model's vocabulary of ", vocab);
}

// Lays out one sequence as an Example: targets, the CE mask on the trained rows, the teacher's rows
// on them in order (when given), the length checked or cut.
Example make_example(Sequence seq, const Teacher* teacher, double weight, bool rationale, int64_t line,
                     const std::string& where, int64_t vocab, const DatasetOptions& options) {
  check_ids(seq.tokens, vocab, where);
  const int64_t T = static_cast<int64_t>(seq.tokens.size());
  if (T > options.max_seq && !options.truncate)
    fail(where, ": the ", rationale ? "rationale " : "", "sequence is ", T, " tokens, longer than the context of ",
         options.max_seq, " (shorten it, raise --max-seq, or pass --truncate)");
  const int64_t kept = std::min(T, options.max_seq);
  Example e;
  e.tokens.assign(seq.tokens.begin(), seq.tokens.begin() + kept);
  e.targets.assign(kept, 0);
  for (int64_t i = 0; i + 1 < kept; ++i) e.targets[i] = e.tokens[i + 1];
  e.ce_mask.assign(kept, 0);
  e.kd_mask.assign(kept, 0);
  if (teacher) {
    e.teacher_k = teacher->k;
    e.teacher_ids.assign(kept * teacher->k, 0);
    e.teacher_probs.assign(kept * teacher->k, 0.0f);
  }
  for (size_t n = 0; n < seq.trained.size(); ++n) {
    const int64_t row = seq.trained[n] - 1;
    if (row + 1 >= kept) break;  // cut off (only with --truncate)
    e.ce_mask[row] = 1;
    if (teacher && static_cast<int64_t>(n) < teacher->rows()) {
      e.kd_mask[row] = 1;
      std::copy_n(teacher->ids.begin() + n * teacher->k, teacher->k, e.teacher_ids.begin() + row * teacher->k);
      std::copy_n(teacher->probs.begin() + n * teacher->k, teacher->k, e.teacher_probs.begin() + row * teacher->k);
    }
  }
  if (std::find(e.ce_mask.begin(), e.ce_mask.end(), 1) == e.ce_mask.end())
    fail(where, kept < T ? ": nothing left to train on after truncation to " : ": no token to train on in a sequence of ",
         kept, " tokens");
  e.weight = weight;
  e.rationale = rationale;
  e.line = line;
  return e;
}

// prompt ids followed by `answer`'s ids and EOS, training the answer and EOS.
Sequence prompt_answer(const std::vector<int32_t>& prompt, const DataTokenizer& tok, const std::string& answer) {
  Sequence s;
  s.tokens = prompt;
  const std::vector<int32_t> ids = encode(tok, answer, false);
  s.tokens.insert(s.tokens.end(), ids.begin(), ids.end());
  s.tokens.push_back(tok.eos);
  for (size_t p = prompt.size(); p < s.tokens.size(); ++p) s.trained.push_back(static_cast<int64_t>(p));
  return s;
}

bool starts_with(const std::vector<int32_t>& a, const std::vector<int32_t>& prefix) {
  return a.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), a.begin());
}

// The messages, checked; returns the index of every assistant message.
std::vector<size_t> check_messages(const ordered_json& messages, const std::string& where) {
  if (!messages.is_array()) fail(where, ": \"messages\" must be an array, not ", messages.type_name());
  if (messages.empty()) fail(where, ": \"messages\" is empty");
  std::vector<size_t> assistants;
  for (size_t m = 0; m < messages.size(); ++m) {
    const ordered_json& msg = messages[m];
    if (!msg.is_object()) fail(where, ": message ", m, " must be an object with \"role\" and \"content\"");
    for (const auto& [key, value] : msg.items())
      if (key != "role" && key != "content") fail(where, ": message ", m, " has an unknown field \"", key, "\"");
    if (!msg.contains("role") || !msg.contains("content")) fail(where, ": message ", m, " needs \"role\" and \"content\"");
    if (!msg["role"].is_string()) fail(where, ": message ", m, " \"role\" must be a string");
    if (!msg["content"].is_string()) fail(where, ": message ", m, " \"content\" must be a string");
    const std::string role = msg["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant")
      fail(where, ": message ", m, " has role \"", role, "\" (expected system, user or assistant)");
    if (role == "assistant") {
      if (msg["content"].get<std::string>().empty()) fail(where, ": message ", m, " (assistant) is empty");
      assistants.push_back(m);
    }
  }
  if (assistants.empty()) fail(where, ": \"messages\" has no assistant message to train on");
  return assistants;
}

std::vector<int32_t> render_ids(const DataTokenizer& tok, const ordered_json& messages, size_t count, bool generation) {
  ordered_json part = ordered_json::array();
  for (size_t m = 0; m < count; ++m) part.push_back(messages[m]);
  return encode(tok, tok.render_chat(part.dump(), generation), false);
}

}  // namespace

void parse_example(std::string_view line, int64_t line_number, const std::string& where, const DataTokenizer& tok,
                   const DatasetOptions& options, std::vector<Example>& out) {
  const int64_t vocab = tok.vocab_size;
  const ordered_json j = parse_json<ordered_json>(line, where, "malformed JSON");
  if (!j.is_object()) fail(where, ": a line must be a JSON object, not ", j.type_name());
  for (const auto& [key, value] : j.items())
    if (key != "text" && key != "tokens" && key != "prompt" && key != "completion" && key != "messages" &&
        key != "rationale" && key != "teacher" && key != "weight")
      fail(where, ": unknown field \"", key,
           "\" (expected text, tokens, prompt/completion or messages; rationale, teacher, weight)");
  const bool ids = j.contains("tokens");
  if (ids) {
    // Pre-tokenized language modelling: every id as given (no BOS added), every one after the first trained.
    for (const char* other : {"text", "prompt", "completion", "messages", "rationale", "teacher"})
      if (j.contains(other)) fail(where, ": \"tokens\" cannot be combined with \"", other, "\"");
    const ordered_json& list = j["tokens"];
    if (!list.is_array()) fail(where, ": \"tokens\" must be an array of token ids");
    Sequence seq;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_number_integer()) fail(where, ": \"tokens\"[", i, "] is not an integer");
      const int64_t id = list[i].get<int64_t>();
      if (id < 0 || id >= vocab) fail(where, ": \"tokens\"[", i, "] = ", id, " is outside the vocabulary of ", vocab);
      seq.tokens.push_back(static_cast<int32_t>(id));
      if (i > 0) seq.trained.push_back(static_cast<int64_t>(i));
    }
    if (seq.trained.empty()) fail(where, ": \"tokens\" needs at least 2 ids: nothing to predict");
    double weight = 1;
    if (j.contains("weight")) {
      if (!j["weight"].is_number()) fail(where, ": \"weight\" must be a number");
      weight = j["weight"].get<double>();
      if (!(weight > 0) || !std::isfinite(weight)) fail(where, ": \"weight\" is ", weight, ", not a finite number > 0");
    }
    out.push_back(make_example(std::move(seq), nullptr, weight, false, line_number, where, vocab, options));
    return;
  }
  const bool text = j.contains("text"), prompt = j.contains("prompt"), completion = j.contains("completion"),
             messages = j.contains("messages");
  if (prompt != completion) fail(where, ": \"", prompt ? "prompt" : "completion", "\" needs \"", prompt ? "completion" : "prompt", "\"");
  if (int(text) + int(prompt) + int(messages) != 1)
    fail(where, text + prompt + messages == 0 ? ": missing field: the line needs \"text\", \"prompt\"+\"completion\" or \"messages\""
                                              : ": give exactly one of \"text\", \"prompt\"+\"completion\" and \"messages\"");
  double weight = 1;
  if (j.contains("weight")) {
    if (!j["weight"].is_number()) fail(where, ": \"weight\" must be a number");
    weight = j["weight"].get<double>();
    if (!(weight > 0) || !std::isfinite(weight)) fail(where, ": \"weight\" is ", weight, ", not a finite number > 0");
  }
  Teacher teacher;
  const bool has_teacher = j.contains("teacher");
  if (has_teacher) {
    if (text) fail(where, ": \"teacher\" needs a completion or assistant messages, not \"text\"");
    teacher = parse_teacher(j["teacher"], vocab, where);
  }
  std::string rationale;
  const bool has_rationale = j.contains("rationale");
  if (has_rationale) {
    if (text) fail(where, ": \"rationale\" needs a prompt or messages, not \"text\"");
    rationale = string_field(j, "rationale", where);
    if (rationale.empty()) fail(where, ": \"rationale\" is empty");
  }
  if ((completion || has_rationale) && tok.eos < 0) fail(where, ": the tokenizer has no EOS token to end a completion with");

  Sequence seq;
  std::vector<int32_t> prompt_ids;  // what the rationale continues
  if (text) {
    const std::string t = string_field(j, "text", where);
    if (t.empty()) fail(where, ": \"text\" is empty");
    seq.tokens = encode(tok, t, tok.add_bos);
    for (size_t p = 1; p < seq.tokens.size(); ++p) seq.trained.push_back(static_cast<int64_t>(p));
    if (seq.trained.empty()) fail(where, ": \"text\" is a single token: nothing to predict");
  } else if (prompt) {
    const std::string p = string_field(j, "prompt", where);
    const std::string c = string_field(j, "completion", where);
    if (c.empty()) fail(where, ": \"completion\" is empty");
    prompt_ids = encode(tok, p, tok.add_bos);
    seq = prompt_answer(prompt_ids, tok, c);
    if (prompt_ids.empty()) seq.trained.erase(seq.trained.begin());  // position 0 has no row before it
  } else {
    if (!tok.render_chat) fail(where, ": \"messages\" needs a chat template, and the model has none");
    const ordered_json& msgs = j["messages"];
    const std::vector<size_t> assistants = check_messages(msgs, where);
    seq.tokens = render_ids(tok, msgs, msgs.size(), false);
    for (size_t a : assistants) {
      const std::vector<int32_t> before = render_ids(tok, msgs, a, true);
      const std::vector<int32_t> with = render_ids(tok, msgs, a + 1, false);
      if (!starts_with(with, before) || !starts_with(seq.tokens, with))
        fail(where, ": the chat template does not render a prefix-stable conversation (message ", a,
             "'s tokens do not extend the conversation before it, or the whole conversation does not extend them), "
             "so the assistant's tokens cannot be found");
      if (with.size() == before.size()) fail(where, ": message ", a, " (assistant) renders to no tokens");
      for (size_t p = std::max<size_t>(before.size(), 1); p < with.size(); ++p) seq.trained.push_back(static_cast<int64_t>(p));
      if (a == assistants.back()) prompt_ids = before;
    }
  }
  if (has_teacher) {
    const int64_t n = static_cast<int64_t>(seq.trained.size());
    // A completion's teacher may stop before the appended EOS (n - 1 rows) or cover it (n rows).
    if (teacher.rows() != n && !(prompt && teacher.rows() == n - 1))
      fail(where, ": the teacher has ", teacher.rows(), " rows but the ", prompt ? "completion has " : "assistant messages have ", n,
           prompt ? " tokens with its EOS (give one row per token, or one fewer without the EOS)" : " tokens");
  }
  out.push_back(make_example(std::move(seq), has_teacher ? &teacher : nullptr, weight, false, line_number, where, vocab,
                             options));
  if (has_rationale) {
    Sequence r = prompt_answer(prompt_ids, tok, rationale);
    if (prompt_ids.empty()) r.trained.erase(r.trained.begin());
    out.push_back(make_example(std::move(r), nullptr, weight, true, line_number, where, vocab, options));
  }
}

std::vector<Example> load_dataset(const std::string& path, const DataTokenizer& tok, const DatasetOptions& options) {
  if (!tok.encode || tok.vocab_size < 1) fail(path, ": no tokenizer to read the data with");
  if (options.max_seq < 2) fail(path, ": the longest sequence allowed is ", options.max_seq, " tokens (need at least 2)");
  const std::string text = read_text_file(path, kMaxDataBytes);
  std::vector<Example> out;
  for_each_line(text, [&](const TextLine& line) {
    const std::string where = path + ":" + std::to_string(line.number);
    try {
      parse_example(line.text, line.number, where, tok, options, out);
    } catch (const Error& e) {
      // Errors from below (the tokenizer, the template) learn the line here.
      if (std::string_view(e.what()).starts_with(where)) throw;
      fail(where, ": ", e.what());
    }
  });
  if (out.empty()) fail(path, ": no examples (the file is empty)");
  return out;
}

}  // namespace orchard::train
