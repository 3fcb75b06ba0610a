#include "distill/collect.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "base/error.h"
#include "base/json_parse.h"
#include "distill/teacher_client.h"
#include "tokenizer/api_token_text.h"
#include "tokenizer/unicode.h"

namespace orchard::distill {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The key a (id, sample) pair is known by: the id's JSON text, so that "1" and 1 stay apart.
std::string pair_key(const json& id, int64_t sample) { return id.dump() + "#" + std::to_string(sample); }

bool valid_id(const json& id) { return id.is_string() || id.is_number_integer() || id.is_number_unsigned(); }

void check_messages(const json& messages, const std::string& where) {
  if (!messages.is_array() || messages.empty()) fail(where, ": \"messages\" must be a non-empty array");
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
      fail(where, ": \"messages\"[", i, "] must be an object with a string \"role\" and a \"content\"");
  }
}

// Cuts a torn last line away, then returns the (id, sample) keys of the whole lines.
std::set<std::string> read_done(const std::string& path) {
  std::set<std::string> done;
  const int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) {
    if (errno == ENOENT) return done;
    fail("distill collect: cannot open --out ", path, ": ", std::strerror(errno));
  }
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      fail("distill collect: cannot read --out ", path, ": ", std::strerror(errno));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  const size_t whole = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (whole < text.size()) {  // a line cut short by a kill: never counted as done
    if (::ftruncate(fd, static_cast<off_t>(whole)) != 0 || ::fsync(fd) != 0) {
      ::close(fd);
      fail("distill collect: cannot cut the torn last line of ", path, ": ", std::strerror(errno));
    }
    text.resize(whole);
  }
  ::close(fd);
  size_t at = 0;
  for (int64_t line = 1; at < text.size(); ++line) {
    const size_t end = text.find('\n', at);
    const std::string_view row(text.data() + at, end - at);
    at = end + 1;
    if (row.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = str_cat(path, " line ", line);
    const json j = parse_json(row, where);
    if (!j.is_object() || !j.contains("id") || !valid_id(j["id"]) || !j.contains("sample") ||
        !j["sample"].is_number_integer())
      fail(where, ": not a collected answer (an object with \"id\" and an integer \"sample\")");
    done.insert(pair_key(j["id"], j["sample"].get<int64_t>()));
  }
  return done;
}

// The request budget shared by all workers: each attempt takes the next slot 1/rate apart.
class RateLimiter {
 public:
  explicit RateLimiter(double rate) : interval_(rate > 0 ? 1.0 / rate : 0) {}
  void wait() {
    if (interval_ <= 0) return;
    Clock::time_point slot;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      next_ = std::max(next_, now);
      slot = next_;
      next_ += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_));
    }
    std::this_thread::sleep_until(slot);
  }

 private:
  double interval_;
  std::mutex mutex_;
  Clock::time_point next_{};
};

// One line appended whole: a single write() on an O_APPEND descriptor, then fsync.
class AppendFile {
 public:
  explicit AppendFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("distill collect: cannot open --out ", path, " for appending: ", std::strerror(errno));
  }
  ~AppendFile() { ::close(fd_); }
  void append(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    ssize_t n;
    do n = ::write(fd_, line.data(), line.size());
    while (n < 0 && errno == EINTR);
    // A short write on a regular file means the disk is full: the torn line is cut at the next start.
    if (n != static_cast<ssize_t>(line.size()))
      fail("distill collect: writing ", path_, " failed: ", n < 0 ? std::strerror(errno) : "short write (disk full?)");
    if (::fsync(fd_) != 0) fail("distill collect: fsync of ", path_, " failed: ", std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_;
  std::mutex mutex_;
};

struct Attempt {
  enum Kind { ok, retry, fatal } kind = retry;
  std::string error;
  double retry_after = 0;  // seconds the teacher asked for, 0: none
  json line;
  int64_t tokens = 0;
};

json request_body(const CollectOptions& o, const Prompt& p) {
  json body = {{"max_tokens", o.max_tokens}, {"temperature", o.temperature}};
  if (!o.model.empty()) body["model"] = o.model;
  if (o.endpoint == Endpoint::chat) {
    body["messages"] = p.messages.is_null() ? json::array({{{"role", "user"}, {"content", p.prompt}}}) : p.messages;
    body["logprobs"] = true;
    body["top_logprobs"] = o.top_logprobs;
  } else {
    if (p.prompt.is_null())
      fail("distill collect: prompt ", p.id.dump(), " has \"messages\", which --endpoint completions cannot send");
    body["prompt"] = p.prompt;
    body["logprobs"] = o.top_logprobs;
  }
  return body;
}

// Reads the answer out of a 200's body; a body that lacks what was asked for is retried (a teacher
// cut off mid-answer can still send a 200 header).
// A chat logprobs entry's token text. JSON strings cannot hold a token that is part of a UTF-8
// character (servers send U+FFFD for it), but the entry's "bytes" can: such a token is kept in the
// legacy completions API's "bytes:\xNN..." form, which the student's vocabulary reads back
// (teacher_data.h), so that the record still maps token for token.
std::string chat_token_text(const json& entry) {
  std::string text = entry.at("token").get<std::string>();
  if (!entry.contains("bytes") || !entry["bytes"].is_array()) return text;
  std::string bytes;
  for (const json& b : entry["bytes"]) {
    if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > 255) return text;
    bytes.push_back(static_cast<char>(b.get<int>()));
  }
  if (bytes.empty() || unicode::is_valid_utf8(bytes)) return text;
  return api_token_text(bytes);
}

Attempt parse_answer(const CollectOptions& o, const Prompt& p, int sample, const std::string& body) {
  Attempt a;
  json r;
  try {
    r = json::parse(body);
  } catch (const json::exception& e) {
    a.error = str_cat("the answer is not JSON (", body.size(), " bytes): ", e.what());
    return a;
  }
  if (!r.is_object() || !r.contains("choices") || !r["choices"].is_array() || r["choices"].empty() ||
      !r["choices"][0].is_object()) {
    a.error = "the answer has no choices[0]";
    return a;
  }
  const json& choice = r["choices"][0];
  std::string text, reasoning;
  json tokens = json::array(), logprobs = json::array(), top = json::array();
  const json* lp = choice.contains("logprobs") ? &choice["logprobs"] : nullptr;
  if (!lp || !lp->is_object()) {
    a.error = "the answer has no choices[0].logprobs";
    return a;
  }
  try {
    if (o.endpoint == Endpoint::chat) {
      const json& m = choice.at("message");
      text = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
      if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) reasoning = m["reasoning_content"];
      const json& content = lp->at("content");
      for (const json& entry : content) {
        tokens.push_back(chat_token_text(entry));
        logprobs.push_back(entry.at("logprob").get<double>());
        json row = json::object();
        if (entry.contains("top_logprobs") && entry["top_logprobs"].is_array())
          for (const json& t : entry["top_logprobs"])
            row[chat_token_text(t)] = t.at("logprob").get<double>();
        top.push_back(std::move(row));
      }
    } else {
      text = choice.at("text").get<std::string>();
      if (choice.contains("reasoning_content") && choice["reasoning_content"].is_string())
        reasoning = choice["reasoning_content"];
      const json& toks = lp->at("tokens");
      const json& chosen = lp->at("token_logprobs");
      const json* tops = lp->contains("top_logprobs") ? &(*lp)["top_logprobs"] : nullptr;
      if (!toks.is_array() || !chosen.is_array() || chosen.size() != toks.size() ||
          (tops && tops->is_array() && tops->size() != toks.size())) {
        a.error = "choices[0].logprobs: tokens, token_logprobs and top_logprobs differ in length";
        return a;
      }
      for (size_t i = 0; i < toks.size(); ++i) {
        tokens.push_back(toks[i].get<std::string>());
        logprobs.push_back(chosen[i].is_null() ? json(nullptr) : json(chosen[i].get<double>()));
        json row = json::object();
        if (tops && tops->is_array() && (*tops)[i].is_object())
          for (const auto& [token, value] : (*tops)[i].items()) row[token] = value.get<double>();
        top.push_back(std::move(row));
      }
    }
  } catch (const json::exception& e) {
    a.error = str_cat("the answer's logprobs are malformed: ", e.what());
    return a;
  }
  // OpenAI's legacy shape may add the sampled token to a row beyond the top K (so may Orchard's
  // server): keep the K likeliest, so that a row is always the teacher's top K.
  for (json& row : top) {
    if (static_cast<int>(row.size()) <= o.top_logprobs) continue;
    std::vector<std::pair<double, std::string>> entries;
    for (const auto& [token, value] : row.items()) entries.emplace_back(value.get<double>(), token);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    json kept = json::object();
    for (int i = 0; i < o.top_logprobs; ++i) kept[entries[i].second] = entries[i].first;
    row = std::move(kept);
  }
  std::string completion = text;
  if (reasoning.empty()) {
    SplitAnswer split = split_reasoning(text);
    completion = std::move(split.completion);
    reasoning = std::move(split.reasoning);
  }
  json line = {{"id", p.id}, {"sample", sample}};
  if (!p.messages.is_null())
    line["messages"] = p.messages;
  else
    line["prompt"] = p.prompt;
  line["completion"] = completion;
  if (!reasoning.empty()) line["reasoning"] = reasoning;
  // "stop": the teacher ended the answer itself (EOS or a stop string), which the student learns too.
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) line["finish_reason"] = choice["finish_reason"];
  a.tokens = static_cast<int64_t>(tokens.size());
  line["teacher_tokens"] = std::move(tokens);
  line["teacher_logprobs"] = std::move(logprobs);
  line["teacher_top"] = std::move(top);
  a.line = std::move(line);
  a.kind = Attempt::ok;
  return a;
}

}  // namespace

SplitAnswer split_reasoning(const std::string& text) {
  static const std::string open = "<think>", close = "</think>";
  SplitAnswer out;
  const size_t end = text.find(close);
  if (end == std::string::npos) {
    out.completion = text;
    return out;
  }
  const size_t start = text.rfind(open, end);
  const size_t body = start == std::string::npos ? 0 : start + open.size();
  out.reasoning = text.substr(body, end - body);
  std::string after = text.substr(end + close.size());
  const size_t first = after.find_first_not_of(" \t\r\n");
  after = first == std::string::npos ? "" : after.substr(first);
  out.completion = (start == std::string::npos ? "" : text.substr(0, start)) + after;
  const size_t r0 = out.reasoning.find_first_not_of(" \t\r\n");
  const size_t r1 = out.reasoning.find_last_not_of(" \t\r\n");
  out.reasoning = r0 == std::string::npos ? "" : out.reasoning.substr(r0, r1 - r0 + 1);
  return out;
}

std::vector<Prompt> read_prompts(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("distill collect: cannot open --prompts ", path);
  std::vector<Prompt> prompts;
  std::map<std::string, int64_t> line_of_id;
  std::string row;
  for (int64_t line = 1; std::getline(in, row); ++line) {
    if (row.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = str_cat(path, " line ", line);
    const json j = parse_json(row, where);
    if (!j.is_object()) fail(where, ": a prompt must be a JSON object");
    if (!j.contains("id") || !valid_id(j["id"])) fail(where, ": \"id\" must be a string or an integer");
    const bool has_prompt = j.contains("prompt"), has_messages = j.contains("messages");
    if (has_prompt == has_messages) fail(where, ": give exactly one of \"prompt\" and \"messages\"");
    Prompt p;
    p.id = j["id"];
    if (has_prompt) {
      if (!j["prompt"].is_string()) fail(where, ": \"prompt\" must be a string");
      p.prompt = j["prompt"];
    } else {
      check_messages(j["messages"], where);
      p.messages = j["messages"];
    }
    const auto [it, fresh] = line_of_id.emplace(p.id.dump(), line);
    if (!fresh) fail(where, ": duplicate id ", p.id.dump(), " (first on line ", it->second, ")");
    prompts.push_back(std::move(p));
  }
  if (in.bad()) fail("distill collect: reading --prompts ", path, " failed");
  return prompts;
}

CollectReport collect(const CollectOptions& o) {
  const TeacherClientOptions client_options{.url = o.teacher, .api_key = o.api_key, .ca_file = o.ca_file,
                                            .timeout_seconds = o.timeout_seconds, .retries = o.retries,
                                            .backoff_seconds = o.backoff_seconds};
  if (o.top_logprobs < 0 || o.top_logprobs > 20)
    fail("distill collect: --top-logprobs must be from 0 to 20 (OpenAI's API gives at most 20), not ", o.top_logprobs);
  if (o.concurrency < 1 || o.concurrency > 1024)
    fail("distill collect: --concurrency must be from 1 to 1024, not ", o.concurrency);
  if (o.samples < 1) fail("distill collect: --samples must be at least 1, not ", o.samples);
  if (o.max_tokens < 1) fail("distill collect: --max-tokens must be at least 1, not ", o.max_tokens);
  if (o.retries < 0) fail("distill collect: --retries must be 0 or more, not ", o.retries);
  if (!(o.rate >= 0) || !std::isfinite(o.rate))
    fail("distill collect: --rate must be 0 (no limit) or a positive number of requests/s");
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature)) fail("distill collect: --temperature must be 0 or more");
  if (o.out_path.empty()) fail("distill collect: --out is required");
  try {
    TeacherClient check(client_options);  // the URL and the CA file, before anything is read or sent
  } catch (const Error& e) {
    fail("distill collect: --teacher: ", e.what());
  }

  const std::vector<Prompt> prompts = read_prompts(o.prompts_path);
  if (o.endpoint == Endpoint::completions)
    for (const Prompt& p : prompts)
      if (p.prompt.is_null())
        fail("distill collect: prompt ", p.id.dump(), " has \"messages\", which --endpoint completions cannot send");
  const std::set<std::string> done = read_done(o.out_path);

  CollectReport report;
  report.prompts = static_cast<int64_t>(prompts.size());
  struct Job {
    size_t prompt;
    int sample;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (int s = 0; s < o.samples; ++s) {
      if (done.count(pair_key(prompts[i].id, s)))
        ++report.already_done;
      else
        jobs.push_back({i, s});
    }

  AppendFile out(o.out_path);
  RateLimiter limiter(o.rate);
  const std::string endpoint = o.endpoint == Endpoint::chat ? "chat/completions" : "completions";
  const auto started = Clock::now();
  std::mutex progress_mutex;  // guards report and the progress callback
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::string worker_error;
  CollectProgress progress;
  progress.total = report.prompts * o.samples;
  progress.done = report.already_done;

  auto publish = [&] {  // with progress_mutex held
    progress.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const int64_t this_run = report.written + static_cast<int64_t>(report.failures.size());
    const int64_t left = static_cast<int64_t>(jobs.size()) - this_run;
    progress.eta_seconds = this_run > 0 ? progress.seconds / this_run * left : -1;
    if (o.progress) o.progress(progress);
  };

  auto worker = [&] {
    TeacherClient client(client_options);
    while (!stop) {
      const size_t j = next.fetch_add(1);
      if (j >= jobs.size()) break;
      const Prompt& p = prompts[jobs[j].prompt];
      const int sample = jobs[j].sample;
      const std::string body = request_body(o, p).dump();
      Attempt a;
      for (int attempt = 0; attempt <= o.retries && !stop; ++attempt) {
        if (attempt > 0) client.wait_before_retry(attempt, a.retry_after);
        limiter.wait();
        {
          std::lock_guard<std::mutex> lock(progress_mutex);
          ++report.requests;
        }
        const TeacherAttempt t = client.attempt(endpoint, body);
        if (t.certificate) {  // no retry mends a certificate: the whole run stops with the reason
          std::lock_guard<std::mutex> lock(progress_mutex);
          if (worker_error.empty()) worker_error = str_cat("distill collect: ", o.teacher, ": ", t.error);
          stop = true;
          break;
        }
        if (t.status == 200) {
          a = parse_answer(o, p, sample, t.body);
          if (a.kind == Attempt::ok) break;
          client.reconnect();  // a 200 cut short: the connection's state is unknown
          continue;
        }
        a = Attempt{};
        a.error = TeacherClient::describe(t);
        a.retry_after = t.retry_after;
        if (TeacherClient::retryable(t.status)) continue;
        a.kind = Attempt::fatal;  // another 4xx: the request itself is wrong, a retry would not help
        break;
      }
      if (a.kind == Attempt::ok) {
        try {
          out.append(a.line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
        } catch (const Error& e) {
          std::lock_guard<std::mutex> lock(progress_mutex);
          if (worker_error.empty()) worker_error = e.what();
          stop = true;
          break;
        }
        std::lock_guard<std::mutex> lock(progress_mutex);
        ++report.written;
        report.tokens += a.tokens;
        ++progress.done;
        progress.tokens += a.tokens;
        publish();
      } else if (!stop) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        report.failures.push_back({p.id, sample, a.error.empty() ? "no answer" : a.error});
        ++progress.failed;
        publish();
      }
    }
  };

  std::vector<std::thread> threads;
  const int n =
      static_cast<int>(std::min<size_t>(static_cast<size_t>(o.concurrency), std::max<size_t>(jobs.size(), 1)));
  for (int i = 0; i < n; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  if (!worker_error.empty()) fail(worker_error);
  {
    std::lock_guard<std::mutex> lock(progress_mutex);
    publish();
  }
  return report;
}

}  // namespace orchard::distill
