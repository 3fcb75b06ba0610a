#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

namespace orchard {
namespace {

SamplingParams unfiltered(float temperature, uint64_t seed = 7) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<int32_t, int> histogram(Sampler& s, const std::vector<float>& logits, int draws) {
  std::map<int32_t, int> counts;
  for (int i = 0; i < draws; ++i) counts[s.sample(logits)]++;
  return counts;
}

TEST(Sampler, GreedyTakesTheArgmaxAndTheLowestIdOnTies) {
  Sampler s(unfiltered(0.0f));
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 5.0f, 5.0f}), 1);
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
  const std::vector<float> logits(50, 0.0f);
  Sampler a(unfiltered(1.0f, 42)), b(unfiltered(1.0f, 42)), c(unfiltered(1.0f, 43));
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 40; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
    tc.push_back(c.sample(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampler, DrawsFollowTheDistributionAtTemperatureOne) {
  Sampler s(unfiltered(1.0f));
  const int draws = 40000;
  auto counts = histogram(s, logits_for({0.6, 0.3, 0.1}), draws);
  EXPECT_NEAR(counts[0] / double(draws), 0.6, 0.015);
  EXPECT_NEAR(counts[1] / double(draws), 0.3, 0.015);
  EXPECT_NEAR(counts[2] / double(draws), 0.1, 0.015);
}

// Mass at the start, in the middle and in the tail past the last whole block of 64 weights
// that the draw skips at once, over a background that every other token shares.
TEST(Sampler, DrawsFollowTheDistributionOverALargeVocabulary) {
  const int vocab = 1000, draws = 40000;
  std::vector<double> probs(vocab, 0.1 / (vocab - 3));
  probs[10] = 0.2;
  probs[500] = 0.3;
  probs[999] = 0.4;
  Sampler s(unfiltered(1.0f));
  auto counts = histogram(s, logits_for(probs), draws);
  EXPECT_NEAR(counts[10] / double(draws), 0.2, 0.015);
  EXPECT_NEAR(counts[500] / double(draws), 0.3, 0.015);
  EXPECT_NEAR(counts[999] / double(draws), 0.4, 0.015);
  int background_below_500 = 0;
  for (const auto& [token, count] : counts)
    if (token != 10 && token < 500) background_below_500 += count;
  EXPECT_NEAR(background_below_500 / double(draws), 0.1 * 498 / 997, 0.01);
}

// Under the reference kernels the draw is the inverse of the cumulative distribution of the
// exact softmax: the first token whose running weight passes the uniform draw times the total.
TEST(Sampler, ReferenceKernelsDrawTheInverseOfTheExactCumulativeDistribution) {
  std::vector<float> logits(300);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(i * 0.7) * 3 + (i % 7) * 0.2);
  const float temperature = 0.8f;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    SamplingParams params = unfiltered(temperature, seed);
    params.kernels = KernelChoice::reference;
    Sampler sampler(params);
    const float max = *std::max_element(logits.begin(), logits.end());
    std::vector<double> weight;
    double total = 0;
    for (float l : logits) total += weight.emplace_back(std::exp((l - max) / double(temperature)));
    double r = Rng(seed).uniform() * total;
    int32_t expected = 0;
    while ((r -= weight[expected]) >= 0) ++expected;
    EXPECT_EQ(sampler.sample(logits), expected) << "seed " << seed;
  }
}

TEST(Sampler, LowTemperatureSharpens) {
  Sampler s(unfiltered(0.5f));
  const int draws = 40000;
  // p^2 normalized: 0.36, 0.09, 0.01 over 0.46.
  auto counts = histogram(s, logits_for({0.6, 0.3, 0.1}), draws);
  EXPECT_NEAR(counts[0] / double(draws), 0.36 / 0.46, 0.015);
  EXPECT_NEAR(counts[2] / double(draws), 0.01 / 0.46, 0.01);
}

TEST(Sampler, TopKTopPAndMinPCutTheTail) {
  const auto logits = logits_for({0.5, 0.25, 0.15, 0.1});
  SamplingParams k = unfiltered(1.5f);
  k.top_k = 2;
  Sampler top_k(k);
  auto counts = histogram(top_k, logits, 5000);
  EXPECT_EQ(counts.count(2) + counts.count(3), 0u);
  EXPECT_GT(counts[1], 0);

  SamplingParams p = unfiltered(1.0f);
  p.top_p = 0.8f;  // 0.5 + 0.25 < 0.8 <= 0.9: keeps three
  Sampler top_p(p);
  counts = histogram(top_p, logits, 5000);
  EXPECT_EQ(counts.count(3), 0u);
  EXPECT_GT(counts[2], 0);

  SamplingParams m = unfiltered(1.0f);
  m.min_p = 0.4f;  // keeps p >= 0.2: ids 0 and 1
  Sampler min_p(m);
  counts = histogram(min_p, logits, 5000);
  EXPECT_EQ(counts.count(2) + counts.count(3), 0u);
  EXPECT_GT(counts[1], 0);
}

// Top-k and greedy pick their candidates in one pass with a rising bar instead of sorting the
// vocabulary: over a 151,936-token vocabulary with many tied logits, masked tokens and penalized
// ones (whose penalty moves them in or out of the top k), the candidates are exactly the k best of
// a full sort by (penalized logit desc, id asc), and their probabilities the softmax of those.
TEST(Sampler, TopKOfALargeVocabularyIsTheFullSortsTopK) {
  const int32_t n = 151936;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (const int32_t k : {1, 2, 40, 1000, 5000}) {
    for (const bool ascending : {false, true}) {  // rising logits make the bar move all the way
      SCOPED_TRACE("k " + std::to_string(k) + (ascending ? " ascending" : ""));
      std::vector<float> logits(static_cast<size_t>(n));
      for (int32_t i = 0; i < n; ++i) {
        logits[i] = std::round(normal(rng) * 4.0f) / 4.0f;  // quarter steps: many ties
        if (ascending) logits[i] = static_cast<float>(i / 64) * 0.001f + std::round(normal(rng)) * 0.25f;
        if (i % 97 == 5) logits[i] = -INFINITY;  // masked by a constraint
      }
      SamplingParams params = unfiltered(0.7f);
      params.top_k = k;
      params.repeat_penalty = 1.3f;
      params.presence_penalty = 0.5f;
      params.frequency_penalty = -0.75f;  // negative: a generated token can rise into the top k
      Sampler sampler(params);
      std::vector<int32_t> recent, generated;
      for (int i = 0; i < 30; ++i) recent.push_back(static_cast<int32_t>(rng() % n));
      // The best tokens penalized too, so that the penalty changes who is in the top k.
      const int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      recent.push_back(best);
      for (int32_t id : recent) sampler.remember(id);
      for (int i = 0; i < 10; ++i) generated.push_back(static_cast<int32_t>(rng() % n));
      for (int32_t id : generated) sampler.remember_generated(id);
      // The full sort, independently: penalties as documented in SamplingParams.
      std::vector<float> penalized = logits;
      std::map<int32_t, int> counts;
      for (int32_t id : generated) counts[id]++;
      for (int32_t id : std::set<int32_t>(recent.begin(), recent.end()))
        penalized[id] = penalized[id] > 0 ? penalized[id] / 1.3f : penalized[id] * 1.3f;
      for (int32_t id : generated)  // remember_generated adds them to the recent tokens too
        if (!std::count(recent.begin(), recent.end(), id))
          penalized[id] = penalized[id] > 0 ? penalized[id] / 1.3f : penalized[id] * 1.3f, recent.push_back(id);
      for (const auto& [id, c] : counts) penalized[id] -= static_cast<float>(c) * -0.75f + 0.5f;
      std::vector<int32_t> order(static_cast<size_t>(n));
      for (int32_t i = 0; i < n; ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return penalized[a] > penalized[b]; });
      TokenDistribution d;
      sampler.distribution(logits, d);
      std::vector<int32_t> expected;
      for (int32_t i = 0; i < k; ++i)
        if (penalized[order[i]] != -INFINITY) expected.push_back(order[i]);
      ASSERT_EQ(d.ids, expected);
      double total = 0;
      auto weight = [&](int32_t id) { return std::exp((static_cast<double>(penalized[id]) - penalized[expected[0]]) / 0.7f); };
      for (int32_t id : expected) total += weight(id);
      for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(d.probs[i], weight(expected[i]) / total, 1e-12);
      SamplingParams greedy = params;
      greedy.temperature = 0.0f;
      Sampler g(greedy);
      for (int32_t id : recent) g.remember(id);
      for (const auto& [id, c] : counts)
        for (int i = 0; i < c; ++i) g.remember_generated(id);
      EXPECT_EQ(g.sample(logits), order[0]);
    }
  }
}

TEST(Sampler, RepeatPenaltyDiscouragesRecentTokens) {
  SamplingParams p = unfiltered(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  const std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  s.remember(0);  // 3.0 / 2 = 1.5 < 2.0
  EXPECT_EQ(s.sample(logits), 1);
  // Now both 0 and 1 are recent: 1.5 vs 1.0.
  EXPECT_EQ(s.sample(logits), 0);
}

// OpenAI's definition: logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty,
// counted over the generated tokens only (not the prompt's). Sequences worked out by hand.
TEST(Sampler, PresenceAndFrequencyPenaltiesFollowOpenAIsDefinition) {
  const std::vector<float> logits = {3.0f, 2.5f, 0.0f};
  auto picks = [&](SamplingParams p, int n) {
    Sampler s(p);
    s.remember(1);  // a prompt token: no penalty for it
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(s.sample(logits));
    return out;
  };
  SamplingParams frequency = unfiltered(0.0f);
  frequency.frequency_penalty = 0.3f;  // 3.0, 2.7, 2.4 < 2.5, then 2.4 > 2.2, 2.1 < 2.2, 2.1 > 1.9
  EXPECT_EQ(picks(frequency, 6), (std::vector<int32_t>{0, 0, 1, 0, 1, 0}));
  SamplingParams presence = unfiltered(0.0f);
  presence.presence_penalty = 0.6f;  // 3.0, then 2.4 < 2.5, then 2.4 > 1.9 for good
  EXPECT_EQ(picks(presence, 5), (std::vector<int32_t>{0, 1, 0, 0, 0}));
  SamplingParams negative = unfiltered(0.0f);
  negative.presence_penalty = -2.0f;  // a negative penalty encourages repetition
  EXPECT_EQ(picks(negative, 3), (std::vector<int32_t>{0, 0, 0}));
  // At temperature > 0 the penalty applies too: token 0 once drawn is all but excluded.
  SamplingParams hot = unfiltered(1.0f, 3);
  hot.presence_penalty = 2.0f;
  hot.frequency_penalty = 2.0f;
  Sampler s(hot);
  const std::vector<float> flat = {10.0f, 0.0f};
  EXPECT_EQ(s.sample(flat), 0);
  std::map<int32_t, int> counts = histogram(s, flat, 50);
  EXPECT_GT(counts[1], 0);
}

TEST(Sampler, RejectsNonsenseParameters) {
  SamplingParams p = unfiltered(1.0f);
  p.top_p = 0.0f;
  EXPECT_ANY_THROW(Sampler{p});
  p = unfiltered(NAN);
  EXPECT_ANY_THROW(Sampler{p});
  p = unfiltered(1.0f);
  p.repeat_penalty = -1.0f;
  EXPECT_ANY_THROW(Sampler{p});
  p = unfiltered(1.0f);
  p.presence_penalty = INFINITY;
  EXPECT_ANY_THROW(Sampler{p});
}

// Constrained decoding masks tokens with -inf: no draw may land on one, whatever the rounding.
TEST(Sampler, NeverDrawsAMaskedToken) {
  std::vector<float> logits(1000, -INFINITY);
  logits[3] = 0.5f;
  logits[998] = 0.0f;
  for (const float temperature : {0.3f, 1.0f, 2.0f}) {
    Sampler s(unfiltered(temperature, 7));
    for (int i = 0; i < 2000; ++i) {
      const int32_t t = s.sample(logits);
      ASSERT_TRUE(t == 3 || t == 998) << t;
    }
  }
}

}  // namespace
}  // namespace orchard
