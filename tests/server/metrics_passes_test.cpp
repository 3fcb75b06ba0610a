// The engine's batched passes and speculation as Prometheus counters (Metrics::on_pass and
// on_speculation): each pass counted under its number of distinct adapters, from a fixed set of
// labels.
#include <gtest/gtest.h>

#include <string>

#include "server/metrics.h"

namespace orchard::server {
namespace {

bool has_line(const std::string& text, const std::string& line) { return text.find("\n" + line + "\n") != std::string::npos; }

TEST(MetricsPasses, CountsPassesAndSequencesByDistinctAdapters) {
  Metrics metrics;
  metrics.on_pass(4, 0);
  metrics.on_pass(16, 4);
  metrics.on_pass(3, 2);
  metrics.on_pass(5, 2);
  metrics.on_pass(40, 9);   // beyond the last label
  metrics.on_pass(30, 12);
  const std::string text = metrics.render();
  EXPECT_TRUE(has_line(text, "# TYPE orchard_batch_passes_total counter")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_passes_total{adapters=\"0\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_passes_total{adapters=\"1\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_passes_total{adapters=\"2\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_passes_total{adapters=\"4\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_passes_total{adapters=\"7\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_passes_total{adapters=\"8+\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_sequences_total{adapters=\"0\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_sequences_total{adapters=\"2\"} 8")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_sequences_total{adapters=\"4\"} 16")) << text;
  EXPECT_TRUE(has_line(text, "orchard_batch_sequences_total{adapters=\"8+\"} 70")) << text;
  // Nine series each, whatever the engine reported.
  size_t series = 0;
  for (size_t at = 0; (at = text.find("\norchard_batch_passes_total{", at)) != std::string::npos; ++at) ++series;
  EXPECT_EQ(series, 9u);
}

TEST(MetricsPasses, CountsSpeculativeTokens) {
  Metrics metrics;
  std::string text = metrics.render();
  EXPECT_TRUE(has_line(text, "orchard_speculative_drafted_tokens_total 0")) << text;
  EXPECT_TRUE(has_line(text, "orchard_speculative_accepted_tokens_total 0")) << text;
  EXPECT_TRUE(has_line(text, "orchard_speculative_acceptance_ratio 0.000000")) << text;
  metrics.on_speculation(4, 3);
  metrics.on_speculation(4, 0);
  metrics.on_speculation(2, 2);
  text = metrics.render();
  EXPECT_TRUE(has_line(text, "# TYPE orchard_speculative_drafted_tokens_total counter")) << text;
  EXPECT_TRUE(has_line(text, "orchard_speculative_drafted_tokens_total 10")) << text;
  EXPECT_TRUE(has_line(text, "orchard_speculative_accepted_tokens_total 5")) << text;
  EXPECT_TRUE(has_line(text, "orchard_speculative_acceptance_ratio 0.500000")) << text;
}

TEST(MetricsPasses, AdapterRoutesShareOneEndpointLabel) {
  EXPECT_EQ(Metrics::endpoint_label("/v1/adapters"), "/v1/adapters");
  EXPECT_EQ(Metrics::endpoint_label("/v1/adapters/sql"), "/v1/adapters");
  EXPECT_EQ(Metrics::endpoint_label("/v1/adapters/\"x\n"), "/v1/adapters");
  EXPECT_EQ(Metrics::endpoint_label("/v1/adapterz"), "other");
}

}  // namespace
}  // namespace orchard::server
