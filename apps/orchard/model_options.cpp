#include "model_options.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/mapped_file.h"
#include "flash/memory_budget.h"

namespace orchard::cli {

KernelChoice kernel_choice(Args& args) {
  const std::string kernels = args.get_or("kernels", "fast");
  if (kernels == "reference") return KernelChoice::reference;
  if (kernels == "fast") return KernelChoice::fast;
  fail("orchard ", args.command(), ": --kernels must be 'reference' or 'fast', got '", kernels, "'");
}

KvCacheType kv_cache_type(Args& args) {
  const std::optional<std::string> type = args.get("kv-type");
  if (!type) return KvCacheType::automatic;
  if (*type == "f32") return KvCacheType::f32;
  if (*type == "f16") return KvCacheType::f16;
  if (*type == "int8") return KvCacheType::int8;
  fail("orchard ", args.command(), ": --kv-type must be f32, f16 or int8, got '", *type, "'");
}

int64_t context_size(Args& args) {
  const std::optional<int64_t> n_ctx = args.get_int("ctx-size");
  if (n_ctx && *n_ctx < 0)
    fail("orchard ", args.command(), ": --ctx-size must be a positive number of tokens (or 0 for the model's), got ", *n_ctx);
  return n_ctx.value_or(0);
}

uint64_t memory_budget(Args& args) {
  const std::optional<std::string> text = args.get("memory-budget");
  return text ? parse_memory_budget(*text) : 0;
}

SamplingParams sampling_params(Args& args, SamplingParams p) {
  p.temperature = static_cast<float>(args.get_double("temperature").value_or(p.temperature));
  p.top_k = static_cast<int32_t>(args.get_int("top-k").value_or(p.top_k));
  p.top_p = static_cast<float>(args.get_double("top-p").value_or(p.top_p));
  p.min_p = static_cast<float>(args.get_double("min-p").value_or(p.min_p));
  p.repeat_penalty = static_cast<float>(args.get_double("repeat-penalty").value_or(p.repeat_penalty));
  p.seed = static_cast<uint64_t>(args.get_int("seed").value_or(static_cast<int64_t>(p.seed)));
  p.presence_penalty = static_cast<float>(args.get_double("presence-penalty").value_or(p.presence_penalty));
  p.frequency_penalty = static_cast<float>(args.get_double("frequency-penalty").value_or(p.frequency_penalty));
  return p;
}

bool measure_activation_levels(Args& args) {
  const std::string v = args.get_or("activations", "measured");
  if (v != "measured" && v != "two") fail("orchard ", args.command(), ": --activations must be measured or two, got '", v, "'");
  return v == "measured";
}

void print_flash_stats(const FlashStats& s) {
  if (!s.active) return;
  const double tokens = static_cast<double>(std::max<int64_t>(1, s.tokens));
  std::fprintf(stderr,
               "flash: budget %.1f MiB, resident %.1f MiB, stream buffers %.1f MiB, %s reads%s; "
               "%lld tokens (prefill and decode) in %lld passes: per token %.2f MiB read, I/O wait %.4f s, "
               "compute %.4f s\n",
               static_cast<double>(s.budget_bytes) / 1048576.0, static_cast<double>(s.resident_bytes) / 1048576.0,
               static_cast<double>(s.stream_buffer_bytes) / 1048576.0, s.direct_io ? "O_DIRECT" : "buffered",
               s.flash_layout ? " from the flash layout" : "",
               (long long)s.tokens, (long long)s.passes, static_cast<double>(s.bytes_read) / tokens / 1048576.0,
               s.io_wait_s / tokens, s.compute_s / tokens);
}

SpeculationArgs speculation_args(Args& args) {
  SpeculationArgs spec;
  const std::optional<std::string> mode = args.get("spec");
  const std::optional<std::string> draft = args.get("draft-model");
  if (mode && *mode != "ngram" && *mode != "draft" && *mode != "off")
    fail("--spec must be ngram, draft or off, got \"", *mode, "\"");
  if (draft) spec.mode = SpeculationMode::draft_model, spec.draft_path = *draft;
  if (mode && *mode == "ngram") {
    if (draft) fail("--spec ngram and --draft-model: choose one");
    spec.mode = SpeculationMode::ngram;
  }
  if (mode && *mode == "draft" && !draft) fail("--spec draft needs --draft-model PATH");
  if (mode && *mode == "off") spec.mode = SpeculationMode::off;
  const int64_t max = args.get_int("draft-max").value_or(spec.draft_max);
  const int64_t min = args.get_int("draft-min").value_or(spec.draft_min);
  if (max < 1 || max > 64) fail("--draft-max must be between 1 and 64, got ", max);
  if (min < 0 || min > max) fail("--draft-min must be between 0 and --draft-max (", max, "), got ", min);
  spec.draft_max = static_cast<int>(max), spec.draft_min = static_cast<int>(min);
  return spec;
}

SpeculationOptions load_speculation(const SpeculationArgs& spec, KernelChoice kernels, uint64_t& budget) {
  SpeculationOptions options{.mode = spec.mode, .draft_max = spec.draft_max, .draft_min = spec.draft_min};
  if (spec.mode != SpeculationMode::draft_model) return options;
  options.draft_model = Model::load(spec.draft_path, {.kernels = kernels});
  if (budget > 0) {
    const uint64_t draft = options.draft_model->file_bytes();
    if (draft >= budget)
      fail("--memory-budget: the draft model ", spec.draft_path, " (", draft / 1048576, " MiB) stays resident and leaves "
           "nothing of the ", budget / 1048576, " MiB budget for the model");
    budget -= draft;
  }
  return options;
}

void print_speculation(const JobSummary& summary, const FlashStats& flash) {
  if (summary.drafted_tokens == 0) return;
  std::fprintf(stderr, "speculation: %lld tokens drafted, %lld accepted (%.1f%%)\n", (long long)summary.drafted_tokens,
               (long long)summary.accepted_tokens,
               100.0 * static_cast<double>(summary.accepted_tokens) / static_cast<double>(summary.drafted_tokens));
  if (flash.active && flash.passes > 0)
    std::fprintf(stderr, "speculation: %.2f tokens per read of the streamed weights (%lld passes)\n",
                 static_cast<double>(summary.completion_tokens + summary.prompt_tokens - summary.cached_prompt_tokens) /
                     static_cast<double>(flash.passes), (long long)flash.passes);
}

std::vector<int32_t> parse_token_list(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  if (text.empty()) fail(option, ": empty token list");
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno == ERANGE || v < std::numeric_limits<int32_t>::min() ||
        v > std::numeric_limits<int32_t>::max())
      fail(option, ": '", item, "' is not a token id (expected comma-separated integers)");
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  return ids;
}

std::vector<int32_t> read_token_file(const std::string& path) {
  std::string text = read_text_file(path);
  for (char& c : text)
    if (std::isspace(static_cast<unsigned char>(c))) c = ',';
  std::string joined;
  for (char c : text)
    if (!(c == ',' && (joined.empty() || joined.back() == ','))) joined += c;
  while (!joined.empty() && joined.back() == ',') joined.pop_back();
  if (joined.empty()) fail(path, ": holds no token ids");
  return parse_token_list(joined, path);
}


void write_file_atomically(const std::string& path, const void* bytes, size_t size) {
  AtomicFile out(path);
  out.write(std::string_view(static_cast<const char*>(bytes), size));
  out.commit();
}

}  // namespace orchard::cli
