// LoRA adapters at inference: small low-rank corrections to a base model's projections, loaded
// beside the model and applied per sequence, so that one base serves many adapters and requests
// for different adapters decode in one batch. For a target projection W [out, in] the adapted
// output is x W^T + scale * (x A^T) B^T with A [rank, in], B [out, rank]; scale is alpha / rank
// (PEFT's default) or alpha / sqrt(rank) (rsLoRA), times the user's multiplier.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "orchard/model.h"

namespace orchard {

class Adapter {
 public:
  // Loads a PEFT folder (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA file for
  // `model`, with its scale multiplied by `multiplier`. Throws orchard::Error naming the file and
  // the problem: another architecture, shapes or ranks that do not fit the model, missing tensors.
  static std::shared_ptr<const Adapter> load(const Model& model, const std::string& path, float multiplier = 1.0f);

  ~Adapter();
  const std::string& path() const;
  int64_t rank() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Adapter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A model whose target weights are W + scale * B A for each adapter, in float32 (--lora-merge):
// no per-token cost, one adapter set for every request. The base must be a GGUF file (read again
// from model->path()); the merged copy is held in memory (no limited-memory mode), prepared for
// the fast kernels when the base was (else for the reference kernels). The sum is computed in
// double from the dequantized base weight; untargeted tensors are copied as they are.
std::shared_ptr<const Model> merge_adapters(std::shared_ptr<const Model> model,
                                            std::span<const std::shared_ptr<const Adapter>> adapters);
// The same, prepared for `kernels` (KernelChoice::fast packs the matrices for the fast kernels).
std::shared_ptr<const Model> merge_adapters(std::shared_ptr<const Model> model,
                                            std::span<const std::shared_ptr<const Adapter>> adapters,
                                            KernelChoice kernels);

}  // namespace orchard
