#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

namespace orchard::server {
namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// A Prometheus label value: backslash, double quote and line feed escaped (the text format's rule).
std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

// Labels come from a fixed set, the API's routes, and every other path is counted as "other":
// a client could otherwise add a series per path it invents (without bound) and, with a quote
// or a line feed in the path, write lines of its own into the metrics.
const std::string& Metrics::endpoint_label(const std::string& path) {
  static const std::array<std::string, 7> known = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                   "/health", "/metrics", "/v1/adapters", "other"};
  for (const std::string& route : known)
    if (path == route) return route;
  // DELETE /v1/adapters/NAME: one series for every name.
  if (path.starts_with("/v1/adapters/")) return known[5];
  return known.back();
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t bucket = 0;
  while (bucket < bounds_.size() && value > bounds_[bucket]) ++bucket;
  counts_[bucket]++;
  sum_ += value;
  total_++;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(total_) + "\n";
  out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(total_) + "\n";
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      token_latency_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void Metrics::count_request(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  requests_[{endpoint_label(path), status}]++;
}

void Metrics::on_pass(int64_t sequences, int64_t adapters) {
  const size_t label = static_cast<size_t>(std::clamp<int64_t>(adapters, 0, kAdapterLabels - 1));
  passes_[label] += 1;
  pass_sequences_[label] += sequences;
}

void Metrics::count(const std::string& name, const std::string& help,
                    const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string series;
  for (const auto& [label, value] : labels) series += (series.empty() ? "" : ",") + label + "=\"" + label_value(value) + "\"";
  std::lock_guard<std::mutex> lock(mutex_);
  auto& [help_text, counts] = counters_[name];
  help_text = help;
  counts[series]++;
}

std::string Metrics::render() const {
  std::string out;
  out += "# HELP orchard_requests_total HTTP requests by endpoint and status.\n# TYPE orchard_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [key, count] : requests_)
      out += "orchard_requests_total{endpoint=\"" + label_value(key.first) + "\",status=\"" + std::to_string(key.second) +
             "\"} " + std::to_string(count) + "\n";
  }
  out += "# HELP orchard_prompt_tokens_total Prompt tokens processed.\n# TYPE orchard_prompt_tokens_total counter\n";
  out += "orchard_prompt_tokens_total " + std::to_string(prompt_tokens_.load()) + "\n";
  out += "# HELP orchard_generated_tokens_total Tokens generated.\n# TYPE orchard_generated_tokens_total counter\n";
  out += "orchard_generated_tokens_total " + std::to_string(generated_tokens_.load()) + "\n";
  out += "# HELP orchard_abandoned_requests_total Generations cancelled because their client left.\n"
         "# TYPE orchard_abandoned_requests_total counter\n";
  out += "orchard_abandoned_requests_total " + std::to_string(abandoned_.load()) + "\n";
  out += "# HELP orchard_queue_depth Requests waiting for a slot.\n# TYPE orchard_queue_depth gauge\n";
  out += "orchard_queue_depth " + std::to_string(queue_depth_.load()) + "\n";
  out += "# HELP orchard_requests_active Requests being decoded.\n# TYPE orchard_requests_active gauge\n";
  out += "orchard_requests_active " + std::to_string(active_.load()) + "\n";
  // Passes by the distinct LoRA adapters among their sequences (the base counts as none): a pass
  // with adapters >= 2 decoded requests of different adapters together.
  auto adapter_label = [](size_t i) {
    return i + 1 < kAdapterLabels ? std::to_string(i) : std::to_string(kAdapterLabels - 1) + "+";
  };
  out += "# HELP orchard_batch_passes_total Batched forward passes, by distinct LoRA adapters among their sequences.\n"
         "# TYPE orchard_batch_passes_total counter\n";
  for (size_t i = 0; i < kAdapterLabels; ++i)
    out += "orchard_batch_passes_total{adapters=\"" + adapter_label(i) + "\"} " + std::to_string(passes_[i].load()) + "\n";
  out += "# HELP orchard_batch_sequences_total Sequences in batched forward passes, by distinct LoRA adapters in the pass.\n"
         "# TYPE orchard_batch_sequences_total counter\n";
  for (size_t i = 0; i < kAdapterLabels; ++i)
    out += "orchard_batch_sequences_total{adapters=\"" + adapter_label(i) + "\"} " + std::to_string(pass_sequences_[i].load()) +
           "\n";
  out += "# HELP orchard_speculative_drafted_tokens_total Draft tokens verified by speculative decoding.\n"
         "# TYPE orchard_speculative_drafted_tokens_total counter\n";
  out += "orchard_speculative_drafted_tokens_total " + std::to_string(drafted_tokens_.load()) + "\n";
  out += "# HELP orchard_speculative_accepted_tokens_total Draft tokens accepted by speculative decoding.\n"
         "# TYPE orchard_speculative_accepted_tokens_total counter\n";
  out += "orchard_speculative_accepted_tokens_total " + std::to_string(accepted_tokens_.load()) + "\n";
  // The rate since start, for a glance (a dashboard divides the counters' increases instead).
  const int64_t drafted = drafted_tokens_.load(), accepted = accepted_tokens_.load();
  out += "# HELP orchard_speculative_acceptance_ratio Accepted draft tokens / drafted tokens since start (0 before any draft).\n"
         "# TYPE orchard_speculative_acceptance_ratio gauge\n";
  out += "orchard_speculative_acceptance_ratio " +
         std::to_string(drafted > 0 ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0.0) + "\n";
  ttft_.render("orchard_time_to_first_token_seconds", "Time from request to its first generated token.", out);
  token_latency_.render("orchard_token_latency_seconds", "Time between consecutive generated tokens.", out);
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [name, counter] : counters_) {
    out += "# HELP " + name + " " + counter.first + "\n# TYPE " + name + " counter\n";
    for (const auto& [series, count] : counter.second) out += name + "{" + series + "} " + std::to_string(count) + "\n";
  }
  return out;
}

}  // namespace orchard::server
