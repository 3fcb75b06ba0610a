// Limited-memory mode at load: plans residency for the budget, reads the resident matrices with
// pread into a bounded pool (packing them for the fast kernels), and keeps what the per-context
// streamers need to read the rest. After this, nothing reads weights through the file mapping.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "flash/buffer_pool.h"
#include "flash/flash_layout.h"
#include "flash/residency.h"
#include "flash/weight_store.h"
#include "model/model_impl.h"
#include "model/weight_source.h"

namespace orchard {

struct FlashWeights final : StreamedWeights {
  // A WeightStreamer (weight_streamer.h) with its own stream buffers, for one Transformer.
  std::unique_ptr<WeightSource> open(const Model::Impl& model) const override;

  ResidencyPlan plan;
  bool pack = false;  // fast kernels: matrices with a packed format are packed as they are read
  std::unique_ptr<WeightStore> store;    // the model file
  std::unique_ptr<FlashLayout> layout;   // packed copies (fast kernels), or null
  std::string layout_note;               // why there is no layout, when pack is set
  std::unique_ptr<BufferPool> resident_pool;
  std::vector<BufferPool::Buffer> resident;  // the resident matrices' bytes
  TensorRef embedding;            // rows are read one at a time with pread
  uint64_t embedding_offset = 0;  // in the file
};

// The limited-memory weights of a model loaded with them, else null.
inline const FlashWeights* flash_weights(const Model::Impl& impl) {
  return dynamic_cast<const FlashWeights*>(impl.flash.get());
}

// True when `impl` (bound weights) should stream under `budget` (0 = off): its matrices and
// embedding are larger than the budget.
bool needs_streaming(const Model::Impl& impl, uint64_t budget);

// Switches `impl` to limited-memory mode. With `pack` (fast kernels), the matrices are read from
// the flash layout in `layout_dir` (built there first if needed; "" = no layout: packed as they
// are read). Throws orchard::Error naming --memory-budget when the model is not a single GGUF file
// or the budget cannot hold even two layers in flight.
void load_flash_weights(Model::Impl& impl, uint64_t budget, bool pack, const std::string& layout_dir,
                        const std::function<void(double)>& on_progress);

}  // namespace orchard
