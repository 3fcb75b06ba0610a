// The learning-rate schedule against its definition written out by hand at a few steps.
#include "train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"

namespace orchard::train {
namespace {

TEST(LrSchedule, WarmupThenCosineToTheFloor) {
  const LrSchedule s{.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 4, .total_steps = 14};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25e-3);
  EXPECT_DOUBLE_EQ(s.at(3), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(4), 1e-3);                        // the decay starts at the peak
  EXPECT_NEAR(s.at(9), 1e-4 + 0.5 * 0.9e-3, 1e-15);      // half way: cos(pi/2) = 0
  EXPECT_NEAR(s.at(13), 1e-4 + 0.45e-3 * (1 + std::cos(M_PI * 0.9)), 1e-15);
  EXPECT_DOUBLE_EQ(s.at(14), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(1000), 1e-4);
  for (int64_t i = 5; i < 14; ++i) EXPECT_LT(s.at(i), s.at(i - 1));  // strictly decreasing
  const LrSchedule flat{.peak_lr = 2e-4, .min_lr = 2e-4, .warmup_steps = 0, .total_steps = 5};
  for (int64_t i = 0; i < 7; ++i) EXPECT_DOUBLE_EQ(flat.at(i), 2e-4);
}

TEST(LrSchedule, RefusesNonsense) {
  EXPECT_THROW((LrSchedule{.peak_lr = 1e-3, .min_lr = 2e-3, .warmup_steps = 0, .total_steps = 5}.at(0)), Error);
  EXPECT_THROW((LrSchedule{.peak_lr = 1e-3, .min_lr = 0, .warmup_steps = 6, .total_steps = 5}.at(0)), Error);
  EXPECT_THROW((LrSchedule{.peak_lr = 1e-3, .min_lr = 0, .warmup_steps = 0, .total_steps = 0}.at(0)), Error);
  EXPECT_THROW((LrSchedule{.peak_lr = NAN, .min_lr = 0, .warmup_steps = 0, .total_steps = 5}.at(0)), Error);
  EXPECT_THROW((LrSchedule{}.at(-1)), Error);
}

}  // namespace
}  // namespace orchard::train
