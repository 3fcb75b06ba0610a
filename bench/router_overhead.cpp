// The hybrid router's `pre` mode overhead (issue 19): before the device generates, the device
// endpoint runs router::compute_pre_signals (the logprobs of the prompt's last kPreWindow tokens,
// StreamOptions::prompt_logprobs_last, and one greedy step; the prompt stays in the slot's cache
// with its last logits) and router::decide (the PII scan of the prompt's text); the generating job
// then prefills nothing.
// Measured per prompt length, as time to the first generated token from an empty cache:
//   plain: the generating job alone;
//   pre:   compute_pre_signals and decide, then the generating job (which reuses the cache).
// One JSON line per measurement on stdout; built and summarized by bench/router_overhead.py.
//
//   router_overhead MODEL LENGTHS RUNS THREADS   (LENGTHS: comma-separated, e.g. 128,512)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "orchard/engine.h"
#include "orchard/error.h"
#include "router/decision.h"
#include "router/signals.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace orchard;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Runs one job and returns when its first generated step came (or when it ended, for a job
// that generates nothing), and its summary.
struct Timed {
  Clock::time_point first_token;
  JobSummary summary;
  size_t prompt_steps = 0;
};

Timed run(Engine& engine, const std::vector<int32_t>& prompt, int64_t max_tokens) {
  GenerationJob job;
  job.prompt = prompt;
  job.options.sampling.temperature = 0.0f;
  job.options.max_tokens = max_tokens;
  Timed t;
  bool first = true;
  job.on_step = [&](const TokenStep& step) {
    if (step.prompt) {
      ++t.prompt_steps;
    } else if (first) {
      t.first_token = Clock::now();
      first = false;
    }
    return true;
  };
  t.summary = engine.run(std::move(job));
  if (!t.summary.error.empty()) throw std::runtime_error(t.summary.error);
  if (first) t.first_token = Clock::now();
  return t;
}

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL LENGTHS RUNS THREADS\n", argv[0]);
    return 2;
  }
  try {
    const std::vector<int64_t> lengths = parse_lengths(argv[2]);
    const int runs = std::atoi(argv[3]), threads = std::atoi(argv[4]);
    // A request the cloud may take, in `pre` mode with a threshold no prompt passes: routed to the
    // device after the whole decision's work.
    router::RouterConfig config;
    config.default_class = router::PrivacyClass::private_cloud_allowed;
    config.mode = router::RouterMode::pre;
    config.pre_threshold = 1e30;
    int64_t longest = 0;
    for (int64_t n : lengths) longest = std::max(longest, n);
    auto model = Model::load(argv[1]);
    auto tokenizer = load_model_tokenizer(*model);
    Engine engine(model, tokenizer, {.slots = 1, .n_ctx = longest + 64, .n_threads = threads});
    // Random ordinary tokens (a random-weight model's speed does not depend on them).
    std::mt19937 rng(19);
    const int32_t ordinary = std::min<int32_t>(static_cast<int32_t>(tokenizer->vocab_size()), 100000);
    std::uniform_int_distribution<int32_t> token(100, ordinary - 1);
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t n : lengths) {
      std::vector<int32_t> p(static_cast<size_t>(n));
      for (int32_t& t : p) t = token(rng);
      prompts.push_back(std::move(p));
    }
    // Warm up: the weights' pages, the kernels' first-use work and the lane's logits buffer at
    // its scoring size (a server grows it once, at its first scoring request).
    engine.clear_cache();
    router::compute_pre_signals(engine, prompts.front());
    run(engine, prompts.front(), 1);
    std::vector<std::string> texts;
    for (const std::vector<int32_t>& p : prompts) texts.push_back(tokenizer->decode(p));

    for (int r = 0; r < runs; ++r)
      for (size_t i = 0; i < prompts.size(); ++i) {
        const std::vector<int32_t>& prompt = prompts[i];
        double plain = 0, pre = 0, scoring = 0;
        int64_t cached = 0;
        size_t scored = 0;
        // Alternate which goes first, so that a drift in the machine's speed falls on both.
        for (int k = 0; k < 2; ++k) {
          const bool do_plain = (k == 0) == (r % 2 == 0);
          engine.clear_cache();
          const Clock::time_point start = Clock::now();
          if (do_plain) {
            plain = seconds(start, run(engine, prompt, 1).first_token);
          } else {
            const router::PreSignals signals = router::compute_pre_signals(engine, prompt);
            router::RouteRequest request;
            request.texts = {texts[i]};
            request.prompt_tokens = static_cast<int64_t>(prompt.size());
            request.device_context = engine.n_ctx();
            const router::Decision decision = router::decide(request, config, &signals);
            if (decision.route != router::Route::device) throw std::runtime_error("the decision was not the device");
            scoring = seconds(start, Clock::now());
            scored = static_cast<size_t>(signals.scored_tokens);
            const Timed g = run(engine, prompt, 1);
            pre = seconds(start, g.first_token);
            cached = g.summary.cached_prompt_tokens;
          }
        }
        std::printf(
            "{\"run\": %d, \"prompt_tokens\": %lld, \"plain_ttft_s\": %.6f, \"pre_ttft_s\": %.6f, \"scoring_s\": %.6f, "
            "\"scored_tokens\": %zu, \"generation_cached_tokens\": %lld}\n",
            r, static_cast<long long>(prompt.size()), plain, pre, scoring, scored, static_cast<long long>(cached));
        std::fflush(stdout);
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "router_overhead: %s\n", e.what());
    return 1;
  }
  return 0;
}
