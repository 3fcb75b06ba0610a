// Cost of JSON Schema constrained decoding on a real vocabulary: vocabulary index build, schema
// compile, mask computation at first use, and the steady per-token cost of apply + accept over a
// 151,936-entry logit vector (Qwen2.5's). Tokens are picked as the argmax of random logits after
// masking, a random walk through the schema like a random-weight model's. Built and run by
// bench/schema_bench.sh.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/tokenizer.h"
#include "runtime/constraint/json_schema_constraint.h"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

const char* kSchema = R"({"type": "object", "properties": {
  "id": {"type": "integer", "minimum": 0, "maximum": 1000000},
  "name": {"type": "string", "minLength": 1, "maxLength": 40},
  "email": {"type": "string"},
  "active": {"type": "boolean"},
  "role": {"enum": ["admin", "editor", "viewer"]},
  "address": {"type": "object", "properties": {
      "street": {"type": "string", "maxLength": 60}, "city": {"type": "string"},
      "zip": {"type": "string", "minLength": 5, "maxLength": 5},
      "geo": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                                "lon": {"type": "number", "minimum": -180, "maximum": 180}},
              "required": ["lat", "lon"], "additionalProperties": false}},
      "required": ["street", "city"], "additionalProperties": false},
  "scores": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100}, "maxItems": 10},
  "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}},
  "meta": {"type": "object"}},
  "required": ["id", "name", "active", "role", "address"], "additionalProperties": false})";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: schema_bench TOKENIZER [RUNS] [MAX_TOKENS]\n");
    return 2;
  }
  const int runs = argc > 2 ? std::atoi(argv[2]) : 40;
  const int64_t max_tokens = argc > 3 ? std::atoll(argv[3]) : 200;
  const size_t n_logits = 151936;  // Qwen2.5's output rows (the tokenizer has fewer ids)

  auto t = Clock::now();
  const auto tokenizer = orchard::Tokenizer::load(argv[1]);
  const double load_ms = ms_since(t);
  t = Clock::now();
  const auto vocab = orchard::TokenVocabulary::build(*tokenizer);
  const double vocab_ms = ms_since(t);
  t = Clock::now();
  const auto schema = orchard::JsonSchemaConstraint::compile_text(kSchema, vocab);
  const double compile_ms = ms_since(t);
  std::printf("tokenizer load %.0f ms; vocabulary trie %.0f ms (%zu nodes); schema compile %.1f ms (%zu DFA states)\n",
              load_ms, vocab_ms, vocab->trie().byte.size(), compile_ms, schema->dfa().size());

  // Pass 0 meets every state for the first time (masks computed on first use); pass 1 replays the
  // same random walks, so every mask is served from the cache: the steady cost of a server
  // that has seen the schema before.
  std::vector<float> logits(n_logits);
  for (int pass = 0; pass < 2; ++pass) {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<double> per_token_us;
    double apply_ms = 0, accept_ms = 0, first_request_ms = 0;
    size_t completed = 0;
    for (int run = 0; run < runs; ++run) {
      orchard::JsonSchemaConstraint c(schema);
      int64_t produced = 0;
      while (!c.finished() && produced < max_tokens) {
        for (float& x : logits) x = normal(rng);
        auto t0 = Clock::now();
        c.apply(logits, max_tokens - produced);
        const double a = ms_since(t0);
        const int32_t token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        t0 = Clock::now();
        c.accept(token);
        const double b = ms_since(t0);
        ++produced;
        apply_ms += a;
        accept_ms += b;
        if (run == 0) first_request_ms += a + b;
        per_token_us.push_back((a + b) * 1000);
      }
      completed += c.complete();
    }
    std::sort(per_token_us.begin(), per_token_us.end());
    const size_t n = per_token_us.size();
    const double mean_us = (apply_ms + accept_ms) * 1000 / double(n);
    const double p99_us = per_token_us[n * 99 / 100];
    std::printf("%s: %d requests, %zu tokens, %zu complete; first request %.1f ms in all; per token apply %.1f us + "
                "accept %.2f us (mean %.1f us, median %.1f us, p99 %.1f us, max %.1f us); %zu masks cached\n",
                pass == 0 ? "cold cache" : "warm cache", runs, n, completed, first_request_ms,
                apply_ms * 1000 / double(n), accept_ms * 1000 / double(n), mean_us, per_token_us[n / 2], p99_us,
                per_token_us.back(), schema->cached_masks());
    for (double decode_ms : {40.0, 60.0, 100.0})
      std::printf("  vs %.0f ms/token decode: mean %.2f%%, p99 %.2f%%, max %.2f%%\n", decode_ms,
                  mean_us / 10 / decode_ms, p99_us / 10 / decode_ms, per_token_us.back() / 10 / decode_ms);
  }
  t = Clock::now();
  const auto fresh = orchard::JsonSchemaConstraint::compile_text(kSchema, vocab);
  fresh->precompute_all();
  std::printf("precompute every state's mask: %.0f ms for %zu states (%.2f ms per state)\n", ms_since(t),
              fresh->dfa().size() - 1, ms_since(t) / double(fresh->dfa().size() - 1));
  return 0;
}
