// A rule on which tokens may be generated next, applied to the logits before sampling.
// generate() drives it: apply, sample, accept, and it stops once the constraint is finished.
#pragma once
#include <cstdint>
#include <span>

namespace orchard {

class LogitConstraint {
 public:
  virtual ~LogitConstraint() = default;
  // Sets the logits of disallowed tokens to -inf. `tokens_left`: how many tokens may still be
  // generated, this one included (< 0: no limit); lets the constraint steer towards an end.
  virtual void apply(std::span<float> logits, int64_t tokens_left) = 0;
  // Records the sampled token (end-of-sequence included).
  virtual void accept(int32_t token) = 0;
  // Whether the text so far is a complete value.
  virtual bool complete() const = 0;
  // Whether nothing may follow: complete, and no token could extend it.
  virtual bool finished() const = 0;
};

}  // namespace orchard
