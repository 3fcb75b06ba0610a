// The learning rate over a training run: a linear warmup from 0 to the peak over the first
// `warmup_steps`, then a cosine decay from the peak to `min_lr` at `total_steps` (and `min_lr`
// after it). Warmup keeps AdamW's first, badly estimated second moments from taking large steps;
// the cosine tail lands the run gently (issue 17; docs/training.md, once written).
#pragma once
#include <cstdint>

namespace orchard::train {

struct LrSchedule {
  double peak_lr = 1e-3;
  double min_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // The rate for step `step`, counted from 0. Throws orchard::Error for a schedule that makes no
  // sense (negative rates, min above peak, warmup longer than the run, no steps).
  double at(int64_t step) const;
};

}  // namespace orchard::train
