// Limited-memory mode in a forward pass: hands the transformer each layer's weights (resident
// ones as loaded, streamed ones read into one of two stream slots) and the output matrix's
// chunks, reading the next stream unit on the I/O thread while the current one computes.
// One per Transformer, so contexts never share a slot: the WeightSource that FlashWeights::open
// gives each (model/weight_source.h).
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

#include "flash/buffer_pool.h"
#include "flash/flash_weights.h"
#include "flash/prefetcher.h"
#include "kernels/packing.h"
#include "model/weight_source.h"
#include "orchard/model.h"

namespace orchard {

class WeightStreamer final : public WeightSource {
 public:
  WeightStreamer(const Model::Impl& model, const FlashWeights& flash);
  ~WeightStreamer() override;

  // Layer l's weights for this pass; valid until the next call of layer() or output_chunk().
  const LayerWeights& layer(int64_t l) override;

  // The output matrix in row chunks: one chunk (the whole matrix) when it is resident.
  size_t output_chunks() const override { return output_units_.empty() ? 1 : output_units_.size(); }
  Chunk output_chunk(size_t i) override;

  // The packed copy of a resident matrix (packed at load), or of a streamed one this pass holds.
  const PackedMatrix* find_packed(const TensorRef& w) const override;

  // Reads one embedding row with pread (never through the mapping) and converts it to f32.
  void embedding_row(int32_t token, float* out) override;

  void end_pass(int64_t tokens, double seconds) override;
  FlashStats stats() const override;

 private:
  struct Slot {
    BufferPool::Buffer memory;
    int64_t unit = -1;  // the plan unit it holds
    std::vector<TensorRef> refs;
    std::vector<PackedMatrix> packed;
  };

  void acquire(int64_t unit);
  void load(int64_t unit, Slot& slot, uint64_t* read_bytes);

  const Model::Impl& model_;
  const FlashWeights& flash_;
  BufferPool pool_;  // the two slots and the staging buffer: plan.stream_bytes()
  std::array<Slot, 2> slots_;
  BufferPool::Buffer staging_;
  int current_ = 0;     // slot the computation uses
  int64_t next_ = -1;   // unit being read into the other slot, or -1
  Prefetcher prefetcher_;
  std::vector<int64_t> layer_units_;   // plan unit of each layer, -1 when wholly resident
  std::vector<int64_t> output_units_;  // plan units of the output chunks
  std::vector<LayerWeights> views_;    // per layer: resident weights, streamed refs patched in
  TensorRef output_view_;
  std::vector<uint8_t> embedding_row_;  // one row as the file holds it

  uint64_t prefetch_read_ = 0;  // written by the I/O thread between submit and wait
  uint64_t bytes_read_ = 0;
  double io_wait_s_ = 0, compute_s_ = 0;
  int64_t passes_ = 0, tokens_ = 0;
};

}  // namespace orchard
