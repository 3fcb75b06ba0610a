// orchard distill collect --teacher URL [--api-key-env VAR] [--endpoint chat|completions]
//   --prompts FILE --out DATA.jsonl [--model NAME] [--concurrency N] [--rate R] [--top-logprobs K]
//   [--samples S] [--max-tokens M] [--temperature T] [--retries N] [--timeout SECONDS] [--ca-file PEM]
//
// A teacher's answers, reasoning and top-k log-probabilities from an OpenAI-compatible endpoint
// (src/distill/collect.h has the output's format and its crash-safety). Exit code 0 when every
// (id, sample) is in the output, 1 when some failed after their retries (a rerun tries them again).
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "command.h"
#include "distill/collect.h"

namespace orchard::cli {
namespace {

std::string clock_text(double seconds) {
  if (seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%" PRId64 "h%02" PRId64 "m", s / 3600, s / 60 % 60);
  else
    std::snprintf(text, sizeof text, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
  return text;
}

int distill_collect(Args& args) {
  distill::CollectOptions o;
  o.teacher = args.require("teacher");
  const std::string key_env = args.get_or("api-key-env", "");
  const std::string endpoint = args.get_or("endpoint", "chat");
  o.prompts_path = args.require("prompts");
  o.out_path = args.require("out");
  o.model = args.get_or("model", "");
  o.concurrency = static_cast<int>(args.get_int("concurrency").value_or(4));
  o.rate = args.get_double("rate").value_or(0);
  o.top_logprobs = static_cast<int>(args.get_int("top-logprobs").value_or(20));
  o.samples = static_cast<int>(args.get_int("samples").value_or(1));
  o.max_tokens = static_cast<int>(args.get_int("max-tokens").value_or(256));
  o.temperature = args.get_double("temperature").value_or(1.0);
  o.retries = static_cast<int>(args.get_int("retries").value_or(6));
  o.timeout_seconds = args.get_double("timeout").value_or(300);
  o.ca_file = args.get_or("ca-file", "");
  args.finish();
  if (endpoint == "chat")
    o.endpoint = distill::Endpoint::chat;
  else if (endpoint == "completions")
    o.endpoint = distill::Endpoint::completions;
  else
    fail("distill collect: --endpoint must be chat or completions, not ", endpoint);
  if (!key_env.empty()) {
    const char* key = std::getenv(key_env.c_str());
    if (!key || !*key) fail("distill collect: the environment variable ", key_env, " (--api-key-env) is not set");
    o.api_key = key;
  }
  const bool tty = ::isatty(2) != 0;
  double last_line = -10;
  int64_t last_count = -1;
  o.progress = [&](const distill::CollectProgress& p) {
    const bool end = p.done + p.failed >= p.total;
    if (p.done + p.failed == last_count) return;
    if (!end && p.seconds - last_line < (tty ? 0.2 : 5.0)) return;  // a log gets a line every 5 s
    last_line = p.seconds;
    last_count = p.done + p.failed;
    std::fprintf(
        stderr, "%scollect: %" PRId64 "/%" PRId64 " done, %" PRId64 " failed, %" PRId64 " tokens, %.0f tok/s, ETA %s%s",
        tty ? "\r" : "", p.done, p.total, p.failed, p.tokens, p.seconds > 0 ? p.tokens / p.seconds : 0.0,
        clock_text(p.eta_seconds).c_str(), tty ? "   " : "\n");
    std::fflush(stderr);
  };
  const distill::CollectReport r = distill::collect(o);
  if (tty) std::fputc('\n', stderr);
  for (const distill::CollectFailure& f : r.failures)
    std::fprintf(stderr, "failed: id %s sample %d: %s\n", f.id.dump().c_str(), f.sample, f.reason.c_str());
  std::printf("%" PRId64 " prompts x %d samples: %" PRId64 " already in %s, %" PRId64 " written (%" PRId64
              " tokens, %" PRId64 " requests), %zu failed\n",
              r.prompts, o.samples, r.already_done, o.out_path.c_str(), r.written, r.tokens, r.requests,
              r.failures.size());
  return r.failures.empty() ? 0 : 1;
}

const RegisterCommand kCollect("distill collect",
                               "collect a teacher's answers and top-k logprobs from an OpenAI endpoint (JSONL)",
                               distill_collect);

}  // namespace
}  // namespace orchard::cli
