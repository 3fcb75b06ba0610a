#include "runtime/two_ended_partition.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace orchard {
namespace {

struct Item {
  int id;
  float value;
  bool operator==(const Item& o) const { return id == o.id && value == o.value; }
};

// The sampler relies on the exact order std::partition leaves (its draws walk that order).
TEST(TwoEndedPartition, LeavesTheOrderStdPartitionLeaves) {
  std::mt19937 rng(5);
  std::vector<size_t> scratch;
  for (int trial = 0; trial < 400; ++trial) {
    const int n = static_cast<int>(rng() % 300);
    const float cut = std::uniform_real_distribution<float>(-1.5f, 1.5f)(rng);
    std::vector<Item> items(static_cast<size_t>(n));
    std::normal_distribution<float> value(0.0f, 1.0f);
    for (int i = 0; i < n; ++i) items[static_cast<size_t>(i)] = {i, value(rng)};
    auto keep = [&](const Item& it) { return it.value >= cut; };
    std::vector<Item> expected = items;
    const size_t expected_kept = static_cast<size_t>(std::partition(expected.begin(), expected.end(), keep) - expected.begin());
    const size_t kept = two_ended_partition(std::span<Item>(items), keep, scratch);
    ASSERT_EQ(kept, expected_kept);
    ASSERT_EQ(items, expected) << "trial " << trial;
  }
}

TEST(TwoEndedPartition, AllKeptNoneKeptAndEmpty) {
  std::vector<size_t> scratch;
  std::vector<int> v = {3, 1, 2};
  EXPECT_EQ(two_ended_partition(std::span<int>(v), [](int) { return true; }, scratch), 3u);
  EXPECT_EQ(v, (std::vector<int>{3, 1, 2}));
  EXPECT_EQ(two_ended_partition(std::span<int>(v), [](int) { return false; }, scratch), 0u);
  EXPECT_EQ(v, (std::vector<int>{3, 1, 2}));
  std::vector<int> empty;
  EXPECT_EQ(two_ended_partition(std::span<int>(empty), [](int) { return true; }, scratch), 0u);
}

}  // namespace
}  // namespace orchard
