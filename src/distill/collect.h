// `orchard distill collect` (issue 18): a teacher's answers, reasoning and top-k log-probabilities
// from any OpenAI-compatible endpoint (http:// or https://), as JSONL for the distillation trainer.
//
// Input: a prompts JSONL, one object per line with a unique "id" (string or integer) and either
// "prompt" (text) or "messages" (an OpenAI chat list). Output: one line per (id, sample):
//   {"id", "sample", "prompt" | "messages", "completion", "reasoning" (absent when none),
//    "finish_reason" (as the teacher gave it: "stop" or "length"; absent when it gave none),
//    "teacher_tokens": [token text, ...], "teacher_logprobs": [chosen token's logprob, ...],
//    "teacher_top": [{token text: logprob, ...} per completion token]}
// The teacher's tokens are kept as raw texts, not ids: the teacher's tokenizer need not be the
// student's, and mapping texts to the student's ids (exact where the vocabularies agree) is a later
// step of the pipeline, not collection's.
//
// The output is append-only and crash-safe: each line goes out whole in one write() to a file
// opened O_APPEND and is fsync'd before the next answer counts as done; at start a torn last line
// (a process killed mid-write) is cut away and every (id, sample) already in the file is skipped.
// A SIGKILL therefore loses at most the requests in flight. Requests that meet 429, 408, 5xx, a
// broken connection or a truncated answer are retried with exponential backoff and jitter, a
// bounded number of times (teacher_client.h); then the (id, sample) is reported as failed and not written, so that a
// rerun tries it again.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace orchard::distill {

enum class Endpoint { chat, completions };

struct CollectProgress {
  int64_t done = 0;         // (id, sample) pairs in the output, those from before this run included
  int64_t total = 0;        // prompts x samples
  int64_t failed = 0;       // given up this run
  int64_t tokens = 0;       // completion tokens written this run
  double seconds = 0;       // since this run began
  double eta_seconds = -1;  // -1: not known yet
};

struct CollectOptions {
  std::string teacher;  // http(s)://host[:port][/prefix]; "/v1/..." is appended (or "/..." after a "/v1" prefix)
  std::string api_key;  // sent as "Authorization: Bearer ..." when not empty; never printed
  std::string ca_file;  // PEM CA certificates for an https teacher with a private CA; empty: the system's
  std::string model;    // the request's "model"; omitted when empty
  Endpoint endpoint = Endpoint::chat;
  std::string prompts_path;
  std::string out_path;
  int concurrency = 4;    // worker threads, each with its own kept-alive connection
  double rate = 0;        // requests per second over all workers, retries included; 0: no limit
  int top_logprobs = 20;  // 0 to 20 (what OpenAI's API gives at most)
  int samples = 1;        // answers per prompt, one request each
  int max_tokens = 256;
  double temperature = 1.0;
  int retries = 6;                // further attempts after the first, per (id, sample)
  double timeout_seconds = 300;   // per request (connect, read)
  double backoff_seconds = 0.25;  // the first retry's delay; doubles each time, capped at 30 s, jittered
  // Called from the workers (serialized) after each answer or failure, and once at the end.
  std::function<void(const CollectProgress&)> progress;
};

struct CollectFailure {
  nlohmann::json id;
  int sample = 0;
  std::string reason;  // the last attempt's error
};

struct CollectReport {
  int64_t prompts = 0;
  int64_t already_done = 0;  // pairs found in the output at start
  int64_t written = 0;       // pairs written this run
  int64_t tokens = 0;
  int64_t requests = 0;  // attempts, retries included
  std::vector<CollectFailure> failures;
};

// Checks the options and the whole prompts file (orchard::Error naming the line or option) before
// sending anything, then collects what is not in the output yet.
CollectReport collect(const CollectOptions& options);

// The pieces, for tests and for the later steps of the pipeline.
struct Prompt {
  nlohmann::json id;        // as given: a string or an integer
  nlohmann::json prompt;    // a string, or null
  nlohmann::json messages;  // an array, or null
};
std::vector<Prompt> read_prompts(const std::string& path);

// Splits a completion text into answer and reasoning: a <think>...</think> block (or, when the
// opening tag was in the prompt, everything before a lone </think>) becomes the reasoning.
struct SplitAnswer {
  std::string completion;
  std::string reasoning;  // empty: none
};
SplitAnswer split_reasoning(const std::string& text);

}  // namespace orchard::distill
