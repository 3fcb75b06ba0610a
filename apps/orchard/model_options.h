// Options shared by the subcommands that load a model.
#pragma once
#include <string>
#include <vector>

#include "args.h"
#include "orchard/engine.h"
#include "orchard/model.h"

namespace orchard::cli {

// --kernels reference|fast (default fast).
KernelChoice kernel_choice(Args& args);

// --kv-type f32|f16|int8: what the KV cache stores (default: what the kernels prefer).
KvCacheType kv_cache_type(Args& args);

// --ctx-size N: the context in tokens; 0 (the default) for the model's own, capped at 4096.
// A negative size is an error naming --ctx-size (it used to mean the default, silently); the
// upper bound and the memory the KV cache needs are checked where it is allocated.
int64_t context_size(Args& args);

// --memory-budget SIZE (e.g. 800M, 1.5G): limited-memory mode; 0 when absent.
uint64_t memory_budget(Args& args);

// --temperature, --top-k, --top-p, --min-p, --repeat-penalty, --seed, --presence-penalty and
// --frequency-penalty over `base` (default: the engine's defaults).
SamplingParams sampling_params(Args& args, SamplingParams base = {});

// --activations measured|two: LoadOptions::measure_activation_levels (default measured).
bool measure_activation_levels(Args& args);

// Limited-memory mode's figures of `context` on stderr, per token (nothing when inactive).
void print_flash_stats(const FlashStats& stats);

// Speculative decoding: --spec ngram, or --draft-model PATH (--spec draft implied), with
// --draft-max K (default 4) and --draft-min N (default 0). Parsed before Args::finish.
struct SpeculationArgs {
  SpeculationMode mode = SpeculationMode::off;
  std::string draft_path;
  int draft_max = 4, draft_min = 0;
};
SpeculationArgs speculation_args(Args& args);

// Loads the draft model (resident: never streamed) with `kernels`. Under a memory budget
// (limited-memory mode) the draft's bytes count against it: `budget` is lowered by them, and a
// budget they do not leave room in is refused.
SpeculationOptions load_speculation(const SpeculationArgs& spec, KernelChoice kernels, uint64_t& budget);

// What speculation did for a job, on stderr (nothing when it drafted nothing); with `flash`
// active, the generated tokens per read of the streamed weights.
void print_speculation(const JobSummary& summary, const FlashStats& flash);

// "1,2,3" -> ids; orchard::Error naming --tokens when malformed.
std::vector<int32_t> parse_token_list(const std::string& text, const std::string& option);

// Token ids separated by commas or whitespace; orchard::Error naming the file when malformed.
std::vector<int32_t> read_token_file(const std::string& path);

// Writes `bytes` to `path` through an unnamed temporary file (base/atomic_file.h), so that a
// failure or a kill never leaves a half-written file, in place of an old one or beside it.
void write_file_atomically(const std::string& path, const void* bytes, size_t size);

}  // namespace orchard::cli
