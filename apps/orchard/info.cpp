// orchard info --model PATH [--tensors]: what a model file holds.
#include <cstdio>
#include <map>

#include "command.h"
#include "orchard/model.h"

namespace orchard::cli {
namespace {

const char* rope_style_name(RopeStyle s) { return s == RopeStyle::neox ? "neox (half-split)" : "interleaved"; }

int run_info(Args& args) {
  const std::string path = args.require("model");
  const bool list_tensors = args.flag("tensors");
  args.finish();
  auto model = Model::load(path);
  const ModelConfig& c = model->config();
  std::printf("model:          %s\n", path.c_str());
  std::printf("format:         %s\n", c.source_format.c_str());
  std::printf("architecture:   %s\n", c.architecture.c_str());
  std::printf("vocab:          %lld\n", (long long)c.n_vocab);
  std::printf("hidden:         %lld\n", (long long)c.dim);
  std::printf("layers:         %lld\n", (long long)c.n_layers);
  std::printf("heads:          %lld (kv %lld, head_dim %lld)\n", (long long)c.n_heads,
              (long long)c.n_kv_heads, (long long)c.head_dim);
  std::printf("ffn:            %lld\n", (long long)c.ffn_dim);
  std::printf("context:        %lld\n", (long long)c.context_length);
  std::printf("rms_norm_eps:   %g\n", c.rms_norm_eps);
  std::printf("rope:           theta %g, %lld dims, %s%s\n", c.rope_theta, (long long)c.rope_dims,
              rope_style_name(c.rope_style), c.has_rope_freq_factors ? ", llama3 frequency factors" : "");
  std::printf("qkv bias:       %s\n", c.qkv_bias ? "yes" : "no");
  std::printf("qk norm:        %s\n", c.qk_norm ? "yes" : "no");
  std::printf("output:         %s\n", c.tied_output ? "tied to the token embedding" : "separate");
  std::map<std::string, std::pair<int, int64_t>> by_type;
  for (const TensorSummary& t : model->tensors()) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    by_type[t.type].first++;
    by_type[t.type].second += n;
  }
  std::printf("tensor types:  ");
  for (const auto& [type, count] : by_type)
    std::printf(" %s x%d (%lld params)", type.c_str(), count.first, (long long)count.second);
  std::printf("\n");
  std::printf("parameters:     %lld (%.3f M)\n", (long long)model->parameter_count(),
              model->parameter_count() / 1e6);
  std::printf("file size:      %llu bytes (%.2f MiB)\n", (unsigned long long)model->file_bytes(),
              model->file_bytes() / 1048576.0);
  if (list_tensors) {
    for (const TensorSummary& t : model->tensors()) {
      std::printf("  %-32s %-6s [", t.name.c_str(), t.type.c_str());
      for (size_t i = 0; i < t.shape.size(); ++i) std::printf("%s%lld", i ? ", " : "", (long long)t.shape[i]);
      std::printf("]\n");
    }
  }
  return 0;
}

const RegisterCommand kInfo("info", "describe a model: architecture, hyper-parameters, tensors, size",
                            run_info, {"tensors"});

}  // namespace
}  // namespace orchard::cli
