#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "kernels/kernels.h"
#include "runtime/two_ended_partition.h"

namespace orchard {
namespace {

// Working space of one draw, reused by every sampler on the thread: with a 150k vocabulary,
// allocating and zeroing it per token costs as much as a pass over the logits, and keeping it
// per sampler would hold megabytes for every request a server decodes.
struct DrawBuffers {
  std::vector<double> prob, weight;
  std::vector<float> float_weight;
  std::vector<size_t> partition_scratch;
};

// Candidates ranked as the sampler ranks them: the higher logit first, the lower id on ties.
template <typename C>
bool by_logit(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

DrawBuffers& draw_buffers() {
  thread_local DrawBuffers buffers;
  return buffers;
}

}  // namespace

// xoshiro256** seeded through splitmix64.
Rng::Rng(uint64_t seed) {
  for (uint64_t& s : state_) {
    seed += 0x9e3779b97f4a7c15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

Sampler::Sampler(const SamplingParams& params)
    : params_(params), kernels_(&select_kernels(params.kernels)), rng_(params.seed) {
  if (!std::isfinite(params.temperature)) fail("temperature must be a finite number");
  if (!(params.top_p > 0.0f)) fail("top-p must be greater than 0");
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) fail("min-p must be between 0 and 1");
  if (!(params.repeat_penalty > 0.0f)) fail("repeat penalty must be greater than 0");
  if (!std::isfinite(params.presence_penalty)) fail("presence penalty must be a finite number");
  if (!std::isfinite(params.frequency_penalty)) fail("frequency penalty must be a finite number");
}

void Sampler::remember(int32_t token) {
  if (params_.repeat_last_n <= 0) return;
  recent_.push_back(token);
  while (static_cast<int32_t>(recent_.size()) > params_.repeat_last_n) recent_.pop_front();
}

void Sampler::reset() {
  recent_.clear();
  generated_counts_.clear();
  rng_ = Rng(params_.seed);
}

// The largest logit. Eight independent maxima: one running maximum would wait on every comparison.
static float max_logit(std::span<const float> logits) {
  float lane[8];
  std::fill_n(lane, 8, -INFINITY);
  size_t i = 0;
  for (; i + 8 <= logits.size(); i += 8)
    for (int k = 0; k < 8; ++k) lane[k] = std::max(lane[k], logits[i + k]);
  float best = *std::max_element(lane, lane + 8);
  for (; i < logits.size(); ++i) best = std::max(best, logits[i]);
  return best;
}

// The sum of weight[0..64), in eight independent chains.
static double block_total(const float* weight) {
  double lane[8] = {};
  for (int i = 0; i < 64; i += 8)
    for (int k = 0; k < 8; ++k) lane[k] += weight[i + k];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// A draw from softmax(logits / temperature) over the whole vocabulary: the best logit, every
// weight and their total (vectorized), then the draw, with no candidate list. This is what the
// OpenAI defaults ask (temperature only: no top-k, top-p, min-p or penalty).
static int32_t draw_at_temperature(const Kernels& kernels, std::span<const float> logits, float temperature,
                                   double uniform) {
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<float>& weight = draw_buffers().float_weight;
  weight.resize(logits.size());
  const double total = kernels.exp_weights(logits.data(), n, max_logit(logits), 1.0f / temperature, weight.data());
  double r = uniform * total;
  // Whole blocks of 64 weights are skipped while r is beyond them; from the block that holds
  // the draw on, weight by weight. A masked token (-inf, from a constraint) may carry a weight
  // of 1e-38 here: never draw it.
  int64_t i = 0;
  for (double block; i + 64 <= n && r >= (block = block_total(weight.data() + i)); i += 64) r -= block;
  for (; i < n; ++i) {
    if (logits[i] == -INFINITY) continue;
    r -= weight[i];
    if (r < 0) return static_cast<int32_t>(i);
  }
  // Rounding left r >= 0 after every weight: the last token that is not masked.
  int64_t last = n - 1;
  while (last > 0 && logits[last] == -INFINITY) --last;
  return static_cast<int32_t>(last);
}

bool Sampler::temperature_only(int32_t n) const {
  return params_.temperature > 0.0f && (params_.top_k <= 0 || params_.top_k >= n) && params_.top_p >= 1.0f &&
         params_.min_p <= 0.0f && (params_.repeat_penalty == 1.0f || recent_.empty()) && generated_counts_.empty();
}

void Sampler::penalized(std::span<const float> logits, std::vector<Candidate>& out) const {
  const int32_t n = static_cast<int32_t>(logits.size());
  out.clear();
  if (params_.repeat_penalty != 1.0f)
    for (int32_t id : recent_)
      if (id >= 0 && id < n) out.push_back({id, logits[id]});
  for (const auto& [id, count] : generated_counts_)
    if (id >= 0 && id < n) out.push_back({id, logits[id]});
  std::sort(out.begin(), out.end(), by_id);
  out.erase(std::unique(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) { return a.id == b.id; }),
            out.end());
  thread_local std::vector<int32_t> recent;  // sorted
  recent.clear();
  if (params_.repeat_penalty != 1.0f) recent.assign(recent_.begin(), recent_.end());
  std::sort(recent.begin(), recent.end());
  for (Candidate& c : out) {
    // Each distinct recent token once: shrink positive logits, push negative ones down.
    if (std::binary_search(recent.begin(), recent.end(), c.id))
      c.logit = c.logit > 0 ? c.logit / params_.repeat_penalty : c.logit * params_.repeat_penalty;
    // OpenAI's presence and frequency penalties, on the tokens generated so far.
    if (auto it = generated_counts_.find(c.id); it != generated_counts_.end())
      c.logit -= static_cast<float>(it->second) * params_.frequency_penalty + params_.presence_penalty;
  }
}

void Sampler::penalized_candidates(std::span<const float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  candidates_.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) candidates_[i] = {i, logits[i]};
  thread_local std::vector<Candidate> changed;
  penalized(logits, changed);
  for (const Candidate& c : changed) candidates_[static_cast<size_t>(c.id)].logit = c.logit;
}

// One pass over the logits keeps a buffer of the tokens that may still be among the k best: when
// it fills, it is cut to its k best and the k-th's logit becomes the bar (a later token, of a
// higher id, must beat it; blocks of 64 whose maximum does not are skipped whole). The penalized
// tokens join at the end with their penalized logits. The k best of a total order are one set,
// so this is exactly the sort's top k: a 150k vocabulary costs one vectorizable pass instead of
// a 1.2 MB candidate list and a heap over it.
void Sampler::top_candidates(std::span<const float> logits, size_t k) {
  thread_local std::vector<Candidate> changed;
  penalized(logits, changed);
  std::vector<Candidate>& kept = candidates_;
  kept.clear();
  const size_t capacity = std::max<size_t>(4 * k, 256);
  float bar = -INFINITY;
  bool cut = false;  // until the first cut every token enters (masked ones too)
  const int32_t n = static_cast<int32_t>(logits.size());
  for (int32_t i = 0; i < n;) {
    if (cut && i + 64 <= n && max_logit(logits.subspan(static_cast<size_t>(i), 64)) <= bar) {
      i += 64;
      continue;
    }
    for (const int32_t end = std::min(n, i + 64); i < end; ++i) {
      const float l = logits[static_cast<size_t>(i)];
      if (cut ? !(l > bar) : !(l >= bar)) continue;
      if (std::binary_search(changed.begin(), changed.end(), Candidate{i, 0}, by_id)) continue;
      kept.push_back({i, l});
      if (kept.size() >= capacity) {
        std::nth_element(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(k - 1), kept.end(), by_logit<Candidate>);
        kept.resize(k);
        bar = kept[k - 1].logit;  // the k-th best: nth_element put it there
        cut = true;
      }
    }
  }
  kept.insert(kept.end(), changed.begin(), changed.end());
  const size_t m = std::min(k, kept.size());
  std::partial_sort(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(m), kept.end(), by_logit<Candidate>);
  kept.resize(m);
}

void Sampler::gather_candidates(std::span<const float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (params_.temperature <= 0.0f) top_candidates(logits, 1);
  else if (cuts_top_k(n)) top_candidates(logits, static_cast<size_t>(params_.top_k));
  else penalized_candidates(logits);
}

size_t Sampler::filter_candidates(int32_t n) {
  const auto by_logit = orchard::by_logit<Candidate>;
  size_t kept = candidates_.size();
  if (!cuts_top_k(n)) {
    // Sorting a 150k vocabulary every token would cost more than the rest of sampling: first
    // drop what cannot matter (weight below e^-30 of the best even after the temperature),
    // and sort only when top-p needs the order.
    float best = -INFINITY;
    for (const Candidate& c : candidates_) best = std::max(best, c.logit);
    const float floor = best - 30.0f * std::max(1.0f, params_.temperature);
    kept = two_ended_partition(std::span<Candidate>(candidates_), [&](const Candidate& c) { return c.logit >= floor; },
                               draw_buffers().partition_scratch);
    if (params_.top_p < 1.0f) std::sort(candidates_.begin(), candidates_.begin() + kept, by_logit);
    else std::iter_swap(candidates_.begin(), std::min_element(candidates_.begin(), candidates_.begin() + kept, by_logit));
  }
  // Probabilities at temperature 1 decide top-p and min-p; candidates_[0] is the best.
  const double max_logit = candidates_[0].logit;
  std::vector<double>& prob = draw_buffers().prob;
  if (params_.top_p < 1.0f || params_.min_p > 0.0f) {
    prob.resize(kept);
    double total = 0;
    for (size_t i = 0; i < kept; ++i) total += prob[i] = std::exp(candidates_[i].logit - max_logit);
    for (double& p : prob) p /= total;
  }
  if (params_.top_p < 1.0f) {  // candidates are sorted here
    double cumulative = 0;
    for (size_t i = 0; i < kept; ++i) {
      cumulative += prob[i];
      if (cumulative >= params_.top_p) {
        kept = i + 1;
        break;
      }
    }
  }
  if (params_.min_p > 0.0f) {  // keeps every candidate at least min_p as likely as the best
    const double threshold = params_.min_p * prob[0];
    size_t out = 0;
    for (size_t i = 0; i < kept; ++i)
      if (i == 0 || prob[i] >= threshold) {
        candidates_[out] = candidates_[i];
        prob[out++] = prob[i];
      }
    kept = out;
  }
  return kept;
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (n == 0) fail("sample: empty logits");
  if (temperature_only(n)) {
    const int32_t chosen = draw_at_temperature(*kernels_, logits, params_.temperature, rng_.uniform());
    remember_generated(chosen);
    return chosen;
  }
  gather_candidates(logits);
  int32_t chosen;
  if (params_.temperature <= 0.0f) {
    chosen = candidates_[0].id;
  } else {
    const size_t kept = filter_candidates(n);
    // Temperature reshapes what survived; then one draw.
    const double max_logit = candidates_[0].logit;
    std::vector<double>& weight = draw_buffers().weight;
    weight.resize(kept);
    double weight_total = 0;
    for (size_t i = 0; i < kept; ++i)
      weight_total += weight[i] = std::exp((candidates_[i].logit - max_logit) / params_.temperature);
    double r = rng_.uniform() * weight_total;
    // If rounding leaves r >= 0 after every weight, take the last candidate with any weight
    // (never one with zero weight: a constraint may have set its logit to -inf).
    size_t last = kept - 1;
    while (last > 0 && weight[last] == 0) --last;
    chosen = candidates_[last].id;
    for (size_t i = 0; i < kept; ++i) {
      r -= weight[i];
      if (r < 0) {
        chosen = candidates_[i].id;
        break;
      }
    }
  }
  remember_generated(chosen);
  return chosen;
}

double TokenDistribution::prob(int32_t id) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == id) return probs[i];
  return 0;
}

void Sampler::distribution(std::span<const float> logits, TokenDistribution& out) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (n == 0) fail("sample: empty logits");
  out.ids.clear();
  out.probs.clear();
  auto add = [&](int32_t id, double weight) {
    if (weight <= 0) return;  // a masked token (-inf) is no candidate
    out.ids.push_back(id);
    out.probs.push_back(weight);
  };
  if (temperature_only(n)) {
    std::vector<float>& weight = draw_buffers().float_weight;
    weight.resize(logits.size());
    kernels_->exp_weights(logits.data(), n, max_logit(logits), 1.0f / params_.temperature, weight.data());
    for (int32_t i = 0; i < n; ++i)
      if (logits[i] != -INFINITY) add(i, weight[i]);
  } else {
    gather_candidates(logits);
    if (params_.temperature <= 0.0f) {
      add(candidates_[0].id, 1.0);
    } else {
      const size_t kept = filter_candidates(n);
      const double max_logit = candidates_[0].logit;
      for (size_t i = 0; i < kept; ++i)
        add(candidates_[i].id, std::exp((candidates_[i].logit - max_logit) / params_.temperature));
    }
  }
  if (out.ids.empty()) add(0, 1.0);  // every logit masked: what sample() would fall back to
  double total = 0;
  for (double p : out.probs) total += p;
  for (double& p : out.probs) p /= total;
}

int32_t Sampler::draw(const TokenDistribution& d) {
  if (d.ids.empty()) fail("sample: an empty distribution");
  double r = rng_.uniform();
  for (size_t i = 0; i < d.ids.size(); ++i) {
    r -= d.probs[i];
    if (r < 0) return d.ids[i];
  }
  size_t last = d.ids.size() - 1;  // rounding left r >= 0: the last with any probability
  while (last > 0 && d.probs[last] == 0) --last;
  return d.ids[last];
}

void Sampler::remember_generated(int32_t token) {
  remember(token);
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) ++generated_counts_[token];
}

}  // namespace orchard
