// Where the transformer gets its weights during a forward pass. The model layer owns this
// interface so that the forward pass never names an implementation: the mapped weights
// (MappedWeights, below) are one; limited-memory mode's streamer (src/flash/) is the other, and it
// sits above this layer, so model/ includes nothing of flash/ (docs/architecture.md, "Layers").
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/packing.h"
#include "model/model_impl.h"

namespace orchard {

// One Transformer's view of the weights, asked in the order a forward pass needs them:
// embedding rows, then layer 0 .. n_layers-1, then the output matrix's chunks, then end_pass.
// A source may reuse its buffers from call to call, so what it returns is valid until the next
// call of layer() or output_chunk(). One per Transformer: sources are never shared by contexts.
class WeightSource {
 public:
  virtual ~WeightSource() = default;

  // Token `token`'s embedding row as float32 (dim values) into `out`.
  virtual void embedding_row(int32_t token, float* out) = 0;

  // Layer l's weights for this pass.
  virtual const LayerWeights& layer(int64_t l) = 0;

  // The output matrix in row chunks, each a contiguous range of its rows starting at first_row;
  // one chunk (the whole matrix) when it is all in memory.
  struct Chunk {
    const TensorRef* ref;
    int64_t first_row;
  };
  virtual size_t output_chunks() const = 0;
  virtual Chunk output_chunk(size_t i) = 0;

  // The packed copy of `w` (a matrix this source handed out) that the fast kernels use, or null.
  virtual const PackedMatrix* find_packed(const TensorRef& w) const = 0;

  // Called once a forward pass of `tokens` tokens has finished, `seconds` after it started.
  virtual void end_pass(int64_t tokens, double seconds) {}
  // Limited-memory mode's figures; inactive for weights that are all in memory.
  virtual FlashStats stats() const { return {}; }
};

// The weights as loaded: mapped from the file (or in memory), packed at load for the fast kernels.
class MappedWeights final : public WeightSource {
 public:
  explicit MappedWeights(const Model::Impl& model);
  void embedding_row(int32_t token, float* out) override;
  const LayerWeights& layer(int64_t l) override { return model_.weights.layers[static_cast<size_t>(l)]; }
  size_t output_chunks() const override { return 1; }
  Chunk output_chunk(size_t) override { return {&model_.weights.output, 0}; }
  const PackedMatrix* find_packed(const TensorRef& w) const override { return model_.packed.find(w); }

 private:
  const Model::Impl& model_;
  const PackedMatrix* packed_embedding_;  // the tied output's packed copy, or null
};

// Weights that are not all in memory (limited-memory mode): made at load, shared by every
// context of the model, each of which opens a WeightSource of its own (its own stream buffers).
class StreamedWeights {
 public:
  virtual ~StreamedWeights() = default;
  virtual std::unique_ptr<WeightSource> open(const Model::Impl& model) const = 0;
};

// The source a Transformer of `model` computes with: the streamed weights' when the model has
// them, else the mapped weights.
std::unique_ptr<WeightSource> open_weight_source(const Model::Impl& model);

}  // namespace orchard
