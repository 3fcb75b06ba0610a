// Prometheus metrics of the server: requests by status, token counts, time to first token and
// per-token latency histograms, queue depth, requests in flight.
#pragma once
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace orchard::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends the Prometheus text of this histogram under `name`.
  void render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last is +Inf
  double sum_ = 0;
  uint64_t total_ = 0;
};

class Metrics {
 public:
  Metrics();
  // `path`: the request's; paths outside the API's routes count under "other".
  void count_request(const std::string& path, int status);
  static const std::string& endpoint_label(const std::string& path);
  void add_prompt_tokens(int64_t n) { prompt_tokens_ += n; }
  void add_generated_tokens(int64_t n) { generated_tokens_ += n; }
  void count_abandoned() { ++abandoned_; }
  void observe_time_to_first_token(double seconds) { ttft_.observe(seconds); }
  void observe_token_latency(double seconds) { token_latency_.observe(seconds); }
  void set_queue_depth(int64_t n) { queue_depth_ = n; }
  void set_active(int64_t n) { active_ = n; }
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::atomic<int64_t> prompt_tokens_{0}, generated_tokens_{0}, abandoned_{0}, queue_depth_{0}, active_{0};
  Histogram ttft_, token_latency_;
};

}  // namespace orchard::server
