#include "runtime/stop_strings.h"

#include <gtest/gtest.h>

namespace orchard {
namespace {

std::string feed(StopStringFilter& f, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += f.push(p);
  return out + f.flush();
}

TEST(StopStrings, StopsAtAStopStringSplitAcrossPieces) {
  StopStringFilter f({"END"});
  EXPECT_EQ(f.push("hello E"), "hello ");
  EXPECT_EQ(f.push("N"), "");
  EXPECT_EQ(f.push("D and more"), "");
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStrings, ReleasesHeldTextWhenItStopsMatching) {
  StopStringFilter f({"END"});
  EXPECT_EQ(f.push("E"), "");
  EXPECT_EQ(f.push("Nx"), "ENx");
  EXPECT_FALSE(f.stopped());
  StopStringFilter g({"\n\n", "###"});
  EXPECT_EQ(feed(g, {"a\n", "b#", "#c"}), "a\nb##c");
}

TEST(StopStrings, EarliestOfSeveralStopsWins) {
  StopStringFilter f({"world", "lo w"});
  EXPECT_EQ(feed(f, {"hello world"}), "hel");
}

TEST(StopStrings, NoStopsPassEverything) {
  StopStringFilter f({});
  EXPECT_EQ(feed(f, {"a", "b"}), "ab");
  StopStringFilter empty({""});
  EXPECT_EQ(feed(empty, {"a", "b"}), "ab");
}

}  // namespace
}  // namespace orchard
