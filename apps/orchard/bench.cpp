// orchard bench --model PATH [-p 512] [-n 128] [-r 3] [-t 2] [--kernels fast] [--json]
//               [--kv-type f32|f16|int8] [--memory-budget SIZE] [--verbose]
//               [--spec ngram | --draft-model PATH [--draft-max K] [--draft-min N] [--prompt-file F]]
//               [--batch B [--temperature T] [--top-k K] [--top-p P] [--min-p P]] [--activations measured|two]
//               [--plain-read]
// Prefill and decode speed in the manner of llama-bench: a prompt of random tokens, an empty
// cache before each repetition, tokens per second as mean +- sd over the repetitions.
// pp: one batch of p tokens; tg: n tokens decoded one at a time from an empty cache.
// With --spec or --draft-model: greedy generation of n tokens after the prompt (the text of
// --prompt-file, else p random tokens) through the engine, without and with speculation in
// alternate repetitions, with the acceptance rate and the tokens per pass (per read of the
// weights, which is what limited-memory mode pays for).
// With --batch B: the engine's decode step for one job and for B jobs decoding together (B jobs of
// p random tokens, n tokens each, the OpenAI API's default sampling unless --temperature, --top-k,
// --top-p, --min-p say otherwise), in medians over the steps:
// its sampling, its forward pass and the rest, and the tokens/s of both.
// With --plain-read: after each decoded token, the same threads' plain read (base/plain_read.h)
// of a buffer as large as the weights a token reads, so that each token is compared with what
// the memory gives at that moment: this machine's neighbours switch its read bandwidth between
// about 45 and 80 GB/s within seconds, so a bandwidth measured before or after a run does not
// say what its tokens had. The buffer adds the weights' size to the peak RSS.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/mapped_file.h"
#include "base/plain_read.h"
#include "command.h"
#include "kernels/kernels.h"
#include "kernels/thread_pool.h"
#include "model_options.h"
#include "orchard/engine.h"
#include "orchard/model.h"

namespace orchard::cli {
namespace {

struct Stats {
  double mean = 0, sd = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(s.sd / static_cast<double>(v.size() - 1));
  }
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int64_t option(Args& args, const std::string& short_name, const std::string& long_name, int64_t fallback) {
  auto a = args.get_int(short_name), b = args.get_int(long_name);
  if (a && b) fail("orchard bench: give -", short_name, " or --", long_name, ", not both");
  const int64_t v = a ? *a : b ? *b : fallback;
  if (v < 0) fail("orchard bench: --", long_name, " must not be negative");
  return v;
}

int context_threads(int requested) { return requested > 0 ? requested : available_cpus(); }

struct SpeculationRun {
  double tokens_per_second = 0;
  JobSummary summary;
  int64_t decode_passes = 0;  // forward passes after the prompt's
};

// One greedy generation of n tokens through an engine of one slot (a fresh one: an empty cache).
SpeculationRun time_generation(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                               const EngineOptions& options, const std::vector<int32_t>& prompt, int64_t n) {
  struct PassCounter : EngineObserver {
    std::atomic<int64_t> passes{0};
    void on_pass(int64_t, int64_t) override { ++passes; }
  } counter;
  EngineOptions with_counter = options;
  with_counter.observer = &counter;
  Engine engine(std::move(model), std::move(tokenizer), with_counter);
  GenerationJob job{.prompt = prompt};
  job.options.sampling.temperature = 0;
  job.options.max_tokens = n;
  std::chrono::steady_clock::time_point first;
  bool started = false;
  job.on_step = [&](const TokenStep&) {
    if (!started) first = std::chrono::steady_clock::now(), started = true;  // the prompt's pass is done
    return true;
  };
  SpeculationRun run;
  run.summary = engine.run(std::move(job));
  if (!run.summary.error.empty()) fail("orchard bench: ", run.summary.error);
  // Decode speed: the tokens after the first (which the prompt's pass gives) over the time after it.
  run.tokens_per_second = static_cast<double>(std::max<int64_t>(0, run.summary.completion_tokens - 1)) / seconds_since(first);
  run.decode_passes = counter.passes - 1;
  return run;
}

int run_speculation_bench(const std::string& path, std::shared_ptr<const Model> model, const SpeculationOptions& speculation,
                          const std::string& prompt_file, int64_t n_prompt, int64_t n_gen, int64_t reps,
                          const EngineOptions& engine_options) {
  auto tokenizer = load_model_tokenizer(*model);
  std::vector<int32_t> prompt;
  if (!prompt_file.empty()) {
    prompt = tokenizer->encode(read_text_file(prompt_file), tokenizer->adds_bos());
  } else {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(tokenizer->vocab_size() - 1));
    prompt.resize(static_cast<size_t>(std::max<int64_t>(1, n_prompt)));
    for (int32_t& t : prompt) t = token(rng);
  }
  EngineOptions plain = engine_options, speculative = engine_options;
  plain.n_ctx = speculative.n_ctx = static_cast<int64_t>(prompt.size()) + n_gen + 1;
  speculative.speculation = speculation;
  std::vector<double> without, with;
  int64_t drafted = 0, accepted = 0, passes = 0, generated = 0;
  for (int64_t r = 0; r < reps; ++r) {  // alternated, so that a neighbour's load falls on both
    without.push_back(time_generation(model, tokenizer, plain, prompt, n_gen).tokens_per_second);
    const SpeculationRun s = time_generation(model, tokenizer, speculative, prompt, n_gen);
    with.push_back(s.tokens_per_second);
    drafted += s.summary.drafted_tokens, accepted += s.summary.accepted_tokens;
    passes += s.decode_passes, generated += s.summary.completion_tokens - 1;
  }
  std::sort(without.begin(), without.end());
  std::sort(with.begin(), with.end());
  const double a = without[without.size() / 2], b = with[with.size() / 2];
  std::printf("model: %s, prompt %zu tokens, %lld generated, %s, draft-max %d\n", path.c_str(), prompt.size(),
              (long long)n_gen,
              speculation.mode == SpeculationMode::ngram ? "prompt lookup"
                                                         : ("draft " + speculation.draft_model->path()).c_str(),
              speculation.draft_max);
  std::printf("decode without speculation %10.2f t/s (median of %lld)\n", a, (long long)reps);
  std::printf("decode with speculation    %10.2f t/s (median of %lld), %.2fx\n", b, (long long)reps, b / a);
  std::printf("acceptance %.1f%% (%lld of %lld drafted), %.2f tokens per pass (per read of the weights)\n",
              100.0 * static_cast<double>(accepted) / static_cast<double>(std::max<int64_t>(1, drafted)),
              (long long)accepted, (long long)drafted,
              static_cast<double>(generated) / static_cast<double>(std::max<int64_t>(1, passes)));
  return 0;
}

// Medians of the engine's decode steps in which all of `batch` jobs decoded one token each.
struct StepTimes {
  double step = 0, pick = 0, pass = 0;  // seconds: the whole step, its sampling, its forward pass
  int64_t steps = 0;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// `batch` jobs of `n_prompt` random tokens each, decoding `n_gen` tokens together in an engine of
// `batch` slots, as a server's clients would, sampling with `sampling` (a seed of its own each).
StepTimes time_batch(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                     EngineOptions options, const SamplingParams& sampling, int64_t batch, int64_t n_prompt,
                     int64_t n_gen, uint32_t seed) {
  struct StepLog : EngineObserver {
    int64_t batch = 0;
    std::chrono::steady_clock::time_point last{};
    std::vector<double> step, pick, pass;
    void on_step(int64_t picked, int64_t sequences, int64_t tokens, double pick_s, double pass_s) override {
      const auto now = std::chrono::steady_clock::now();
      // A step is timed from the end of the one before, both pure decode steps of the whole batch.
      const bool full = picked == batch && sequences == batch && tokens == batch;
      if (full && last.time_since_epoch().count() != 0) {
        step.push_back(std::chrono::duration<double>(now - last).count());
        pick.push_back(pick_s);
        pass.push_back(pass_s);
      }
      last = full ? now : std::chrono::steady_clock::time_point{};
    }
  } log;
  log.batch = batch;
  options.slots = static_cast<int>(batch);
  options.n_ctx = n_prompt + n_gen + 1;
  options.observer = &log;
  {
    Engine engine(std::move(model), std::move(tokenizer), options);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(engine.model().config().n_vocab - 1));
    std::vector<std::shared_ptr<GenerationJob>> jobs;
    std::atomic<int64_t> left{batch};
    std::mutex mutex;
    std::condition_variable done;
    for (int64_t i = 0; i < batch; ++i) {
      auto job = std::make_shared<GenerationJob>();
      job->prompt.resize(static_cast<size_t>(std::max<int64_t>(1, n_prompt)));
      for (int32_t& t : job->prompt) t = token(rng);
      job->options.max_tokens = n_gen;
      job->options.sampling = sampling;
      job->options.sampling.seed = rng();
      job->on_step = [](const TokenStep&) { return true; };
      job->on_done = [&](const JobSummary& summary) {
        if (!summary.error.empty()) std::fprintf(stderr, "orchard bench: %s\n", summary.error.c_str());
        std::lock_guard<std::mutex> lock(mutex);
        if (--left == 0) done.notify_all();
      };
      jobs.push_back(std::move(job));
    }
    for (auto& job : jobs) engine.submit(job);
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return left == 0; });
  }
  return {median(log.step), median(log.pick), median(log.pass), static_cast<int64_t>(log.step.size())};
}

// --batch B: the engine's decode step for 1 and for B jobs at once (repetitions alternated), and
// where each step's time goes.
int run_batch_bench(const std::string& path, std::shared_ptr<const Model> model, int64_t batch, int64_t n_prompt,
                    int64_t n_gen, int64_t reps, const EngineOptions& options, const SamplingParams& sampling,
                    bool json) {
  auto tokenizer = load_model_tokenizer(*model);
  std::vector<StepTimes> one, many;
  for (int64_t r = 0; r < reps; ++r) {
    one.push_back(time_batch(model, tokenizer, options, sampling, 1, n_prompt, n_gen, static_cast<uint32_t>(2 * r + 1)));
    many.push_back(
        time_batch(model, tokenizer, options, sampling, batch, n_prompt, n_gen, static_cast<uint32_t>(2 * r + 2)));
  }
  auto med = [](const std::vector<StepTimes>& runs, double StepTimes::*field) {
    std::vector<double> v;
    for (const StepTimes& t : runs) v.push_back(t.*field);
    return median(v);
  };
  const double s1 = med(one, &StepTimes::step), sb = med(many, &StepTimes::step);
  const double b = static_cast<double>(batch);
  if (json) {
    std::printf("{\"model\": \"%s\", \"batch\": %lld, \"n_prompt\": %lld, \"n_gen\": %lld, \"repetitions\": %lld, "
                "\"step_1_s\": %.6f, \"pick_1_s\": %.6f, \"pass_1_s\": %.6f, \"step_batch_s\": %.6f, "
                "\"pick_batch_s\": %.6f, \"pass_batch_s\": %.6f, \"tps_1\": %.3f, \"tps_batch\": %.3f}\n",
                path.c_str(), (long long)batch, (long long)n_prompt, (long long)n_gen, (long long)reps, s1,
                med(one, &StepTimes::pick), med(one, &StepTimes::pass), sb, med(many, &StepTimes::pick),
                med(many, &StepTimes::pass), 1.0 / s1, b / sb);
    return 0;
  }
  std::printf("model: %s, %lld-token prompts, %lld tokens each, medians over %lld repetitions\n", path.c_str(),
              (long long)n_prompt, (long long)n_gen, (long long)reps);
  for (const auto* runs : {&one, &many}) {
    const double n = runs == &one ? 1 : b, step = med(*runs, &StepTimes::step);
    const double pick = med(*runs, &StepTimes::pick), pass = med(*runs, &StepTimes::pass);
    std::printf("%3.0f sequences: step %7.2f ms (sampling %.2f, forward pass %.2f, rest %.2f), %8.1f tokens/s\n", n,
                1e3 * step, 1e3 * pick, 1e3 * pass, 1e3 * (step - pick - pass), n / step);
  }
  std::printf("%lld sequences: step %.2fx one sequence's, %.2fx its tokens/s\n", (long long)batch, sb / s1,
              b / sb * s1);
  return 0;
}

// The plain read of `bytes` by `threads` threads, each its contiguous share, started together;
// seconds from the first start to the last end (thread start-up left out).
double time_plain_read(std::span<const uint8_t> bytes, int threads) {
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> begin(static_cast<size_t>(threads)), end(begin);
  std::atomic<int> ready{0};
  const auto share = [&](int t) {
    const size_t from = bytes.size() * t / threads / 256 * 256, to = bytes.size() * (t + 1) / threads / 256 * 256;
    for (++ready; ready.load() < threads;) {
    }
    begin[t] = Clock::now();
    plain_read(bytes.data() + from, to - from);
    end[t] = Clock::now();
  };
  std::vector<std::thread> others;
  for (int t = 1; t < threads; ++t) others.emplace_back(share, t);
  share(0);
  for (std::thread& t : others) t.join();
  return std::chrono::duration<double>(*std::max_element(end.begin(), end.end()) -
                                       *std::min_element(begin.begin(), begin.end()))
      .count();
}

int run_bench(Args& args) {
  const std::string path = args.require("model");
  const int64_t n_prompt = option(args, "p", "n-prompt", 512);
  const int64_t n_gen = option(args, "n", "n-gen", 128);
  const int64_t reps = std::max<int64_t>(1, option(args, "r", "repetitions", 3));
  const int n_threads = static_cast<int>(option(args, "t", "threads", 0));
  const KernelChoice kernels = kernel_choice(args);
  const bool json = args.flag("json");
  uint64_t budget = memory_budget(args);
  const KvCacheType kv_cache = kv_cache_type(args);
  const bool verbose = args.flag("verbose");
  const bool plain_read_check = args.flag("plain-read");
  const SpeculationArgs spec = speculation_args(args);
  const std::string prompt_file = args.get_or("prompt-file", "");
  const int64_t batch = args.get_int("batch").value_or(0);
  // The OpenAI API's defaults (what a server's clients mostly send), unless given.
  const SamplingParams sampling =
      sampling_params(args, SamplingParams{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f});
  const bool measure_levels = measure_activation_levels(args);
  // Only the --batch steps sample; pp and tg decode greedily, so a sampling option there would
  // be silently ignored.
  if (batch == 0)
    for (const char* name : {"temperature", "top-k", "top-p", "min-p", "repeat-penalty", "seed", "presence-penalty",
                             "frequency-penalty"})
      if (args.get(name)) fail("orchard bench: --", name, " goes with --batch (pp and tg decode greedily)");
  args.finish();
  if (batch < 0 || batch > 256) fail("orchard bench: --batch must be between 1 and 256");
  if (batch > 0 && spec.mode != SpeculationMode::off) fail("orchard bench: --batch does not go with speculation");
  // With --memory-budget the weights may stream from storage: no memory read to pair them with,
  // and a buffer of their size would defeat the budget.
  if (plain_read_check && (batch > 0 || spec.mode != SpeculationMode::off || n_gen == 0 || budget > 0))
    fail("orchard bench: --plain-read times tg (-n > 0) from memory, without --batch, speculation or --memory-budget");
  if (!prompt_file.empty() && spec.mode == SpeculationMode::off)
    fail("orchard bench: --prompt-file goes with --spec ngram or --draft-model");

  const SpeculationOptions speculation = load_speculation(spec, kernels, budget);
  const auto load_start = std::chrono::steady_clock::now();
  auto model = Model::load(path, {.kernels = kernels, .memory_budget = budget, .measure_activation_levels = measure_levels});
  const double load_seconds = seconds_since(load_start);
  if (batch > 0)
    return run_batch_bench(path, model, batch, n_prompt, n_gen, reps,
                           {.kernels = kernels, .n_threads = n_threads, .kv_cache = kv_cache}, sampling, json);
  if (speculation.mode != SpeculationMode::off)
    return run_speculation_bench(path, model, speculation, prompt_file, n_prompt, n_gen, reps,
                                 {.kernels = kernels, .n_threads = n_threads, .kv_cache = kv_cache});
  const int64_t n_ctx = std::max<int64_t>(n_prompt + n_gen, 1);
  Context context(model, {.n_ctx = n_ctx, .kernels = kernels, .n_threads = n_threads, .kv_cache = kv_cache});

  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model->config().n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (int32_t& t : prompt) t = token(rng);

  // Warm-up (page faults, caches, thread start) outside the timed runs, as llama-bench does.
  const std::vector<int32_t> warm(prompt.begin(), prompt.begin() + std::min<int64_t>(n_prompt, 32));
  if (!warm.empty()) context.eval_last(warm);
  context.reset();
  context.eval_last(std::vector<int32_t>{token(rng)});

  const Model::MatmulWork work = model->matmul_work();
  // --plain-read: the weights' bytes of a token, read after each token (see the top), from a
  // 64-byte boundary as the weights are (loads across two lines read 10% slower).
  const size_t read_bytes = plain_read_check ? work.layer_bytes + work.output_bytes : 0;
  std::vector<uint8_t> read_memory(read_bytes + 64, 1);
  const std::span<const uint8_t> read_buffer(read_memory.data() + (-reinterpret_cast<uintptr_t>(read_memory.data()) & 63),
                                             read_bytes);
  std::vector<double> token_s, read_s;
  std::vector<double> pp, tg;
  FlashStats decode_flash;  // limited-memory figures summed over the decode runs only
  for (int64_t r = 0; r < reps; ++r) {
    if (n_prompt > 0) {
      context.reset();
      const auto start = std::chrono::steady_clock::now();
      context.eval_last(prompt);
      pp.push_back(static_cast<double>(n_prompt) / seconds_since(start));
    }
    if (n_gen > 0) {
      context.reset();
      int32_t next = token(rng);
      const FlashStats before = context.flash_stats();
      double decode_s = 0;
      for (int64_t i = 0; i < n_gen; ++i) {
        const auto start = std::chrono::steady_clock::now();
        context.eval_last(std::span<const int32_t>(&next, 1));
        const double token = seconds_since(start);
        decode_s += token;
        if (read_buffer.empty()) continue;
        token_s.push_back(token);
        // Past the context's workers' spin (thread_pool.cpp, 1 ms), so that they sleep and
        // leave the cores to the read.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        read_s.push_back(time_plain_read(read_buffer, context_threads(n_threads)));
      }
      tg.push_back(static_cast<double>(n_gen) / decode_s);
      const FlashStats after = context.flash_stats();
      decode_flash.bytes_read += after.bytes_read - before.bytes_read;
      decode_flash.io_wait_s += after.io_wait_s - before.io_wait_s;
      decode_flash.compute_s += after.compute_s - before.compute_s;
      decode_flash.tokens += after.tokens - before.tokens;
    }
  }
  const Stats p = stats(pp), g = stats(tg);
  const double kv_bytes = static_cast<double>(context.kv_cache_bytes());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double peak_rss = static_cast<double>(usage.ru_maxrss) * 1024.0;
  const char* kernel_name = select_kernels(kernels).name;
  const FlashStats flash = context.flash_stats();
  const double decode_tokens = static_cast<double>(std::max<int64_t>(1, decode_flash.tokens));
  // --plain-read: each token's time against the read after it, in medians over the tokens.
  double read_gbs = 0, of_read = 0;
  if (!read_s.empty()) {
    std::vector<double> ratio;
    for (size_t i = 0; i < read_s.size(); ++i) ratio.push_back(read_s[i] / token_s[i]);
    read_gbs = static_cast<double>(read_buffer.size()) / median(read_s) / 1e9;
    of_read = median(ratio);
  }
  if (json) {
    // Limited-memory figures per decoded token (zeros when the weights are mapped).
    std::string flash_json = str_cat(
        "\"flash_active\": ", flash.active ? "true" : "false", ", \"flash_budget_bytes\": ", flash.budget_bytes,
        ", \"flash_resident_bytes\": ", flash.resident_bytes, ", \"flash_stream_buffer_bytes\": ",
        flash.stream_buffer_bytes, ", \"flash_direct_io\": ", flash.direct_io ? "true" : "false",
        ", \"flash_layout\": ", flash.flash_layout ? "true" : "false",
        ", \"flash_bytes_read_per_token\": ", static_cast<uint64_t>(static_cast<double>(decode_flash.bytes_read) / decode_tokens),
        ", \"flash_io_wait_s\": ", decode_flash.io_wait_s / decode_tokens,
        ", \"flash_compute_s\": ", decode_flash.compute_s / decode_tokens, ", ");
    std::printf(
        "{%s\"model\": \"%s\", \"file_bytes\": %llu, \"kernels\": \"%s\", \"threads\": %d, \"n_prompt\": %lld, "
        "\"n_gen\": %lld, \"repetitions\": %lld, \"pp_tps\": %.3f, \"pp_tps_sd\": %.3f, \"tg_tps\": %.3f, "
        "\"tg_tps_sd\": %.3f, \"load_seconds\": %.3f, \"peak_rss_bytes\": %.0f, \"kv_cache_bytes\": %.0f, "
        "\"layer_macs\": %lld, \"layer_single_level_macs\": %lld, \"output_macs\": %lld, "
        "\"output_single_level_macs\": %lld, \"layer_bytes\": %llu, \"output_bytes\": %llu%s}\n",
        flash_json.c_str(), path.c_str(), (unsigned long long)model->file_bytes(), kernel_name, context_threads(n_threads),
        (long long)n_prompt, (long long)n_gen, (long long)reps, p.mean, p.sd, g.mean, g.sd, load_seconds,
        peak_rss, kv_bytes, (long long)work.layer_macs, (long long)work.layer_single_level_macs,
        (long long)work.output_macs, (long long)work.output_single_level_macs,
        (unsigned long long)work.layer_bytes, (unsigned long long)work.output_bytes,
        read_s.empty() ? "" : str_cat(", \"plain_read_gbs\": ", read_gbs, ", \"tg_of_plain_read\": ", of_read).c_str());
  } else {
    std::printf("model: %s (%.0f MiB), kernels %s, %d threads, load %.2f s\n", path.c_str(),
                static_cast<double>(model->file_bytes()) / 1048576.0, kernel_name, context_threads(n_threads),
                load_seconds);
    if (n_prompt > 0) std::printf("pp%-6lld %10.2f +- %.2f t/s\n", (long long)n_prompt, p.mean, p.sd);
    if (n_gen > 0) std::printf("tg%-6lld %10.2f +- %.2f t/s\n", (long long)n_gen, g.mean, g.sd);
    if (!read_s.empty())
      std::printf("plain read of the weights' %.0f MB after each token: %.1f GB/s; decode reads them at %.1f%% "
                  "of its rate (the read's time over the token's, median over %zu tokens)\n",
                  static_cast<double>(read_buffer.size()) / 1e6, read_gbs, 100.0 * of_read, read_s.size());
    std::printf("peak RSS %.0f MiB (file %.0f MiB + KV cache %.0f MiB)\n", peak_rss / 1048576.0,
                static_cast<double>(model->file_bytes()) / 1048576.0, kv_bytes / 1048576.0);
    if (work.layer_macs > 0)
      std::printf("single-level int8 activations: %.1f%% of the layers' multiply-adds, %s output matrix\n",
                  100.0 * static_cast<double>(work.layer_single_level_macs) / static_cast<double>(work.layer_macs),
                  work.output_single_level_macs > 0 ? "and the" : "not the");
    if (flash.active)
      std::printf("flash: %.2f MiB read, I/O wait %.4f s, compute %.4f s per decoded token\n",
                  static_cast<double>(decode_flash.bytes_read) / decode_tokens / 1048576.0,
                  decode_flash.io_wait_s / decode_tokens, decode_flash.compute_s / decode_tokens);
  }
  if (verbose) print_flash_stats(context.flash_stats());
  return 0;
}

const RegisterCommand kBench("bench", "prefill and decode speed (llama-bench style)", run_bench, {"json", "verbose", "plain-read"});

}  // namespace
}  // namespace orchard::cli
