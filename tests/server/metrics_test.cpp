#include "server/metrics.h"

#include <gtest/gtest.h>

namespace orchard::server {
namespace {

TEST(MetricsCounter, CountsEachLabelSetAndEscapesValues) {
  Metrics metrics;
  metrics.count("orchard_router_requests_total", "Requests by route.", {{"route", "device"}, {"reason", "a"}});
  metrics.count("orchard_router_requests_total", "Requests by route.", {{"route", "device"}, {"reason", "a"}});
  metrics.count("orchard_router_requests_total", "Requests by route.", {{"route", "cloud"}, {"reason", "q\"\\"}});
  const std::string text = metrics.render();
  EXPECT_NE(text.find("# TYPE orchard_router_requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("orchard_router_requests_total{route=\"device\",reason=\"a\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("orchard_router_requests_total{route=\"cloud\",reason=\"q\\\"\\\\\"} 1\n"), std::string::npos)
      << text;
  // One HELP line per counter, however many series it has.
  size_t helps = 0;
  for (size_t at = 0; (at = text.find("# HELP orchard_router_requests_total", at)) != std::string::npos; ++at) ++helps;
  EXPECT_EQ(helps, 1u);
}

}  // namespace
}  // namespace orchard::server
