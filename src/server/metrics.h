// Prometheus metrics of the server: requests by status, token counts, time to first token and
// per-token latency histograms, queue depth, requests in flight, batched passes by how many
// LoRA adapters shared them, speculative tokens drafted and accepted.
#pragma once
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "orchard/engine.h"

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

// The engine reports to it as it runs (EngineObserver); the HTTP layer counts requests.
class Metrics : public EngineObserver {
 public:
  Metrics();
  // `path`: the request's; paths outside the API's routes count under "other".
  void count_request(const std::string& path, int status);
  static const std::string& endpoint_label(const std::string& path);
  void on_prefill(int64_t tokens) override { prompt_tokens_ += tokens; }
  void on_token(bool first, double seconds) override {
    ++generated_tokens_;
    (first ? ttft_ : token_latency_).observe(seconds);
  }
  void on_abandoned() override { ++abandoned_; }
  void on_queue_depth(int64_t jobs) override { queue_depth_ = jobs; }
  void on_active(int64_t jobs) override { active_ = jobs; }
  // Counted by the number of distinct adapters in the pass, 0 to kAdapterLabels - 2 and then
  // "N+" in one series: labels from a fixed set, however many adapters a server holds.
  void on_pass(int64_t sequences, int64_t adapters) override;
  void on_speculation(int64_t drafted, int64_t accepted) override {
    drafted_tokens_ += drafted;
    accepted_tokens_ += accepted;
  }
  static constexpr int kAdapterLabels = 9;  // "0" .. "7", "8+"
  // A counter that a layer above the server keeps here, so that one /metrics shows it (the
  // router's requests by route and reason): `name` (rendered with `help` once), labels as
  // name=value pairs; each call adds 1 to the series of those labels.
  void count(const std::string& name, const std::string& help,
             const std::vector<std::pair<std::string, std::string>>& labels);
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  // count(): name -> help and the series (the rendered label set -> count).
  std::map<std::string, std::pair<std::string, std::map<std::string, uint64_t>>> counters_;
  std::atomic<int64_t> prompt_tokens_{0}, generated_tokens_{0}, abandoned_{0}, queue_depth_{0}, active_{0};
  std::atomic<int64_t> drafted_tokens_{0}, accepted_tokens_{0};
  std::array<std::atomic<int64_t>, kAdapterLabels> passes_{}, pass_sequences_{};
  Histogram ttft_, token_latency_;
};

}  // namespace orchard::server
