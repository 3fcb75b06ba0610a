// fill_logprobs (token_stream.h): the chosen token's log-probability and the top k, on every kernel
// path, against a double-precision log-softmax and a full sort computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/token_stream.h"

namespace orchard {
namespace {

struct Expected {
  std::vector<double> logprob;  // per id
  std::vector<int32_t> order;   // ids, likeliest first, equal logits by the lower id
};

Expected expected(const std::vector<float>& logits) {
  double max = -INFINITY;
  for (float l : logits) max = std::max(max, static_cast<double>(l));
  double total = 0;
  for (float l : logits) total += std::exp(l - max);
  Expected e;
  for (float l : logits) e.logprob.push_back(l - max - std::log(total));
  e.order.resize(logits.size());
  std::iota(e.order.begin(), e.order.end(), 0);
  std::stable_sort(e.order.begin(), e.order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  return e;
}

void check(const std::vector<float>& logits, int top, int32_t chosen) {
  const Expected e = expected(logits);
  for (KernelChoice choice : {KernelChoice::reference, KernelChoice::fast}) {
    TokenStep step;
    fill_logprobs(select_kernels(choice), logits, chosen, top, step);
    SCOPED_TRACE(testing::Message() << "vocabulary " << logits.size() << ", top " << top << ", kernels "
                                    << (choice == KernelChoice::reference ? "reference" : "fast"));
    EXPECT_EQ(step.chosen.token, chosen);
    EXPECT_NEAR(step.chosen.logprob, e.logprob[chosen], 2e-5 * (1 + std::fabs(e.logprob[chosen])));
    const size_t k = std::min<size_t>(std::max(top, 0), logits.size());
    ASSERT_EQ(step.top.size(), k);
    for (size_t i = 0; i < k; ++i) {
      EXPECT_EQ(step.top[i].token, e.order[i]) << "rank " << i;
      if (std::isinf(e.logprob[e.order[i]]))
        EXPECT_EQ(step.top[i].logprob, e.logprob[e.order[i]]) << "rank " << i;
      else
        EXPECT_NEAR(step.top[i].logprob, e.logprob[e.order[i]], 2e-5 * (1 + std::fabs(e.logprob[e.order[i]])));
    }
  }
}

TEST(TokenLogprobs, MatchADoubleLogSoftmaxAndAFullSort) {
  std::mt19937 rng(11);
  for (size_t n : {1u, 2u, 7u, 20u, 21u, 1000u, 151936u}) {
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(n);
    for (float& l : logits) l = normal(rng);
    for (int top : {0, 1, 5, 20}) check(logits, top, static_cast<int32_t>(rng() % n));
  }
}

TEST(TokenLogprobs, TiesGoToTheLowerIdAndMaskedTokensLast) {
  // Many equal logits (a quantized model's), the maximum among them, and -inf entries (masked
  // padding rows) that must never displace a real token.
  std::vector<float> logits(300, 1.0f);
  for (size_t i = 0; i < logits.size(); i += 3) logits[i] = -INFINITY;
  logits[250] = 4.0f, logits[17] = 4.0f, logits[100] = 2.5f;
  check(logits, 20, 17);
  check(logits, 1, 250);
  std::vector<float> few = {-INFINITY, 0.5f, -INFINITY};
  check(few, 3, 1);  // more asked than finite: the -inf ones come last, by id
}

}  // namespace
}  // namespace orchard
