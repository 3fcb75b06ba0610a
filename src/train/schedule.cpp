#include "train/schedule.h"

#include <cmath>
#include <numbers>

#include "base/error.h"

namespace orchard::train {

double LrSchedule::at(int64_t step) const {
  if (!(peak_lr >= 0) || !(min_lr >= 0) || min_lr > peak_lr) fail("learning rate schedule: need 0 <= min_lr <= peak_lr");
  if (total_steps < 1 || warmup_steps < 0 || warmup_steps > total_steps)
    fail("learning rate schedule: need 0 <= warmup_steps <= total_steps and total_steps >= 1");
  if (step < 0) fail("learning rate schedule: step ", step, " is negative");
  // Step s of the warmup trains at (s + 1) / warmup of the peak, so that step 0 already moves.
  if (step < warmup_steps) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (step >= total_steps) return min_lr;
  const int64_t decay_steps = total_steps - warmup_steps;
  const double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps);
  return min_lr + 0.5 * (peak_lr - min_lr) * (1 + std::cos(std::numbers::pi * progress));
}

}  // namespace orchard::train
