#include "distill/teacher_client.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "base/error.h"

namespace orchard::distill {

using json = nlohmann::json;

TeacherClient::TeacherClient(TeacherClientOptions options)
    : options_(std::move(options)), rng_(std::random_device{}()) {
  const std::string& url = options_.url;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos ||
      (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0))
    fail("teacher URL ", url, " is not an http:// or https:// URL");
  const size_t path_at = url.find('/', scheme_end + 3);
  origin_ = url.substr(0, path_at);
  if (origin_.size() == scheme_end + 3) fail("teacher URL ", url, " has no host");
  if (path_at != std::string::npos) {
    prefix_ = url.substr(path_at);
    while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  }
  if (!options_.ca_file.empty() && !std::ifstream(options_.ca_file))
    fail("--ca-file ", options_.ca_file, ": cannot be read");
  if (options_.retries < 0) fail("teacher retries must be 0 or more, not ", options_.retries);
  if (!(options_.timeout_seconds > 0)) fail("teacher timeout must be positive, not ", options_.timeout_seconds);
  reconnect();
}

TeacherClient::~TeacherClient() = default;

void TeacherClient::reconnect() {
  http_ = std::make_unique<httplib::Client>(origin_);
  const auto seconds = static_cast<time_t>(options_.timeout_seconds);
  const auto micros = static_cast<time_t>((options_.timeout_seconds - static_cast<double>(seconds)) * 1e6);
  http_->set_connection_timeout(seconds, micros);
  http_->set_read_timeout(seconds, micros);
  http_->set_write_timeout(seconds, micros);
  http_->set_keep_alive(true);
  if (!options_.api_key.empty()) http_->set_bearer_token_auth(options_.api_key);
  if (!options_.ca_file.empty()) http_->set_ca_cert_path(options_.ca_file);
}

std::string TeacherClient::path_of(const std::string& endpoint) const {
  const bool has_v1 = prefix_.size() >= 3 && prefix_.compare(prefix_.size() - 3, 3, "/v1") == 0;
  return prefix_ + (has_v1 ? "" : "/v1") + "/" + endpoint;
}

TeacherAttempt TeacherClient::attempt(const std::string& endpoint, const std::string& body) {
  TeacherAttempt a;
  httplib::Result result = http_->Post(path_of(endpoint), body, "application/json");
  if (!result) {
    const httplib::Error e = result.error();
    a.certificate = e == httplib::Error::SSLServerVerification;
    a.error = a.certificate ? str_cat("the teacher's TLS certificate could not be verified (OpenSSL verify result ",
                                      http_->get_openssl_verify_result(),
                                      "); give the CA that signed it with --ca-file PEM")
                            : httplib::to_string(e);
    reconnect();  // the connection's state is unknown after a broken answer
    return a;
  }
  a.status = result->status;
  a.body = std::move(result->body);
  if (result->has_header("Retry-After")) {
    try {
      a.retry_after = std::stod(result->get_header_value("Retry-After"));
    } catch (...) {
    }
  }
  return a;
}

void TeacherClient::wait_before_retry(int retry, double retry_after) {
  double delay = std::min(30.0, options_.backoff_seconds * std::pow(2.0, retry - 1));
  delay *= std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
  delay = std::max(delay, std::min(retry_after, 60.0));
  std::this_thread::sleep_for(std::chrono::duration<double>(delay));
}

std::string TeacherClient::describe(const TeacherAttempt& a) {
  if (a.status == 0) return str_cat("connection: ", a.error);
  std::string detail = a.body.substr(0, 200);
  std::replace(detail.begin(), detail.end(), '\n', ' ');
  return str_cat("HTTP ", a.status, ": ", detail);
}

json TeacherClient::post(const std::string& endpoint, const json& body) {
  const std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
  TeacherAttempt a;
  for (int n = 0; n <= options_.retries; ++n) {
    if (n > 0) wait_before_retry(n, a.retry_after);
    a = attempt(endpoint, text);
    if (a.certificate) break;
    if (a.status == 200) {
      json r = json::parse(a.body, nullptr, false);
      if (r.is_discarded()) {  // a 200 cut short mid-body: retried like a broken connection
        a.status = 0;
        a.error = str_cat("the answer is not JSON (", a.body.size(), " bytes)");
        reconnect();
        continue;
      }
      return r;
    }
    if (!retryable(a.status)) break;  // another 4xx: the request itself is wrong
  }
  fail("teacher ", origin_, path_of(endpoint), ": ", describe(a));
}

ScoredText TeacherClient::score(const std::string& prompt, const std::string& continuation, int top_k) {
  if (top_k < 0 || top_k > 20) fail("teacher scoring: top_k must be from 0 to 20, not ", top_k);
  const json body = {{"prompt", prompt + continuation}, {"echo", true}, {"max_tokens", 0},
                     {"logprobs", top_k}, {"temperature", 0}};
  const json r = post("completions", body);
  const std::string where = str_cat("teacher ", origin_, path_of("completions"), " (echo scoring)");
  ScoredText out;
  try {
    const json& lp = r.at("choices").at(0).at("logprobs");
    const json& tokens = lp.at("tokens");
    const json& chosen = lp.at("token_logprobs");
    const json& offsets = lp.at("text_offset");
    const json* tops = lp.contains("top_logprobs") && lp["top_logprobs"].is_array() ? &lp["top_logprobs"] : nullptr;
    if (!tokens.is_array() || chosen.size() != tokens.size() || offsets.size() != tokens.size() ||
        (tops && tops->size() != tokens.size()))
      fail(where, ": tokens, token_logprobs, text_offset and top_logprobs differ in length");
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (offsets[i].get<int64_t>() < static_cast<int64_t>(prompt.size())) continue;
      if (!chosen[i].is_number()) fail(where, ": token ", i, " of the continuation has no logprob");
      out.tokens.push_back(tokens[i].get<std::string>());
      out.logprobs.push_back(chosen[i].get<double>());
      std::vector<std::pair<std::string, double>> row;
      if (tops && (*tops)[i].is_object())
        for (const auto& [token, value] : (*tops)[i].items()) row.emplace_back(token, value.get<double>());
      std::sort(row.begin(), row.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      if (static_cast<int>(row.size()) > top_k) row.resize(static_cast<size_t>(top_k));
      out.top.push_back(std::move(row));
    }
  } catch (const json::exception& e) {
    fail(where, ": the answer's logprobs are malformed: ", e.what());
  }
  return out;
}

}  // namespace orchard::distill
