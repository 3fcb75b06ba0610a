// The HTTP(S) client of a teacher behind an OpenAI-compatible endpoint (issue 18), shared by
// `orchard distill collect`, `orchard distill eval` and on-policy distillation: the URL's origin and
// path prefix, one kept-alive connection with timeouts, a Bearer key, a private CA for HTTPS, and
// retries with exponential backoff and jitter on what a busy or restarting teacher answers (429,
// 408, 5xx, a broken connection), honouring Retry-After.
//
// Not thread-safe: one client per thread (each holds its own connection).
#pragma once
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace httplib {
class Client;
}

namespace orchard::distill {

struct TeacherClientOptions {
  // http(s)://host[:port][/prefix]; "/v1/<endpoint>" is appended ("/<endpoint>" after a "/v1" prefix)
  std::string url;
  std::string api_key;  // sent as "Authorization: Bearer ..." when not empty; never printed
  std::string ca_file;  // a PEM file of CA certificates for an https teacher; empty: the system's
  double timeout_seconds = 300;  // per request (connect, read, write)
  int retries = 6;               // further attempts after the first
  double backoff_seconds = 0.25;  // the first retry's delay; doubles each time, capped at 30 s, jittered
};

// A text's tokens as the teacher scores them.
struct ScoredText {
  std::vector<std::string> tokens;  // the teacher's token texts
  std::vector<double> logprobs;     // each one's log-probability given everything before it
  // per token: its top k (text, logprob), likeliest first
  std::vector<std::vector<std::pair<std::string, double>>> top;
};

// One attempt's outcome, for callers that judge a 200's body themselves (collect retries an answer
// that was cut short).
struct TeacherAttempt {
  int status = 0;           // the HTTP status; 0: no answer (error says why)
  std::string body;         // the answer's body
  std::string error;        // set when status is 0
  double retry_after = 0;   // seconds a Retry-After header asked for; 0: none
  bool certificate = false;  // the connection failed verifying the teacher's TLS certificate
};

class TeacherClient {
 public:
  // Checks the URL (and that a CA file can be read); connects at the first request.
  explicit TeacherClient(TeacherClientOptions options);
  ~TeacherClient();
  TeacherClient(const TeacherClient&) = delete;
  TeacherClient& operator=(const TeacherClient&) = delete;

  // POSTs `body` to the endpoint ("completions" or "chat/completions") and returns the answer's
  // JSON; retries as the header comment says; throws orchard::Error (the last attempt's status and
  // the start of its body, or the connection's error) when every attempt failed or the teacher
  // refused the request (another 4xx) or answered a 200 that is not JSON.
  nlohmann::json post(const std::string& endpoint, const nlohmann::json& body);

  // The teacher's tokens of `continuation` after `prompt`: POST completions {prompt: prompt +
  // continuation, echo: true, max_tokens: 0, logprobs: top_k} and the echoed tokens whose
  // text_offset is at or past prompt.size() (a token that straddles the boundary belongs to the
  // prompt). Rows longer than top_k (the legacy shape's extra sampled entry) keep their top_k
  // likeliest. top_k 0 to 20.
  ScoredText score(const std::string& prompt, const std::string& continuation, int top_k);

  // The pieces post() is made of, for callers with their own loop (collect: a shared rate limit).
  TeacherAttempt attempt(const std::string& endpoint, const std::string& body);
  void reconnect();  // a fresh connection (the old one's state is unknown after a broken answer)
  // Sleeps before retry number `retry` (1-based): backoff * 2^(retry-1) capped at 30 s, times a
  // jitter in [0.5, 1) so that workers do not retry in step, and at least retry_after (capped at 60 s).
  void wait_before_retry(int retry, double retry_after);
  static bool retryable(int status) { return status == 0 || status == 429 || status == 408 || status >= 500; }
  // "HTTP 503: <the body's first 200 bytes>" or "connection: <why>".
  static std::string describe(const TeacherAttempt& a);

  const TeacherClientOptions& options() const { return options_; }
  std::string path_of(const std::string& endpoint) const;  // the request path of an endpoint

 private:
  TeacherClientOptions options_;
  std::string origin_;  // scheme://host[:port]
  std::string prefix_;  // "" or "/path" without a trailing slash
  std::unique_ptr<httplib::Client> http_;
  std::mt19937_64 rng_;
};

}  // namespace orchard::distill
