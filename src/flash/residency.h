// Which weights stay in memory and which are streamed from storage on every forward pass, for a
// given budget. Priority (most reused per byte first): the small f32 vectors (norms, biases, rope
// factors) always; then the attention matrices, layer by layer; then the output matrix; then the
// feed-forward matrices, layer by layer. Whatever does not fit is streamed: per layer, and the
// output matrix in row chunks no larger than a layer, so that two stream slots (one computing,
// one being read) bound the streaming memory whatever the vocabulary size. The token embedding is
// never resident: each forward pass reads only the rows of its tokens.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "model/model_impl.h"

namespace orchard {

class FlashLayout;

constexpr int kLayerMatrices = 7;  // wq, wk, wv, wo, w_gate, w_up, w_down
TensorRef& layer_matrix(LayerWeights& w, int index);
const TensorRef& layer_matrix(const LayerWeights& w, int index);

// A matrix, or a range of its rows, and where its bytes are read from: its packed copy in the
// flash layout when there is one (fast kernels), else the model file.
struct WeightSlice {
  int member = -1;        // layer_matrix index; -1 for an output chunk
  TensorRef ref;          // shape of the slice; data: where it is in the mapping (never read)
  bool from_layout = false;
  uint64_t offset = 0;      // in the model file, or in the layout file
  uint64_t read_bytes = 0;  // bytes read from storage
  uint64_t loaded_bytes = 0;  // what it takes in a buffer once read (and packed)
};

// What one step of the stream reads: one layer's streamed matrices, or one output chunk.
struct StreamUnit {
  int64_t layer = -1;      // -1: an output chunk
  int64_t first_row = 0;   // output chunk: its first row of the output matrix
  std::vector<WeightSlice> slices;
  uint64_t bytes = 0;      // buffer bytes for all slices (each page-rounded)
};

struct ResidencyPlan {
  uint64_t budget = 0;
  uint64_t small_bytes = 0;      // f32 vectors, held as they are
  uint64_t resident_bytes = 0;   // resident matrices as held (packed or raw)
  uint64_t slot_bytes = 0;       // one stream slot: the largest unit
  uint64_t staging_bytes = 0;    // raw bytes of the largest slice packed as it is read
  uint64_t streamed_bytes = 0;   // bytes read from storage per forward pass
  std::vector<std::array<bool, kLayerMatrices>> resident;  // per layer and matrix
  bool output_resident = false;
  std::vector<StreamUnit> units;  // in the order a forward pass uses them

  // What streaming needs besides the resident weights: two slots and the staging buffer.
  uint64_t stream_bytes() const { return 2 * slot_bytes + staging_bytes; }
};

// Rows [first_row, first_row + rows) of `matrix` (first_row a multiple of kTileRows), as a slice:
// `pack` when the fast kernels will run it, `layout` (may be null) when the flash layout exists.
WeightSlice matrix_slice(const TensorRef& matrix, int64_t first_row, int64_t rows, int member,
                         const uint8_t* file_base, bool pack, const FlashLayout* layout);

// file_base: where the mapping of the model file starts, to turn TensorRef::data into offsets.
// Throws orchard::Error naming --memory-budget, with the smallest budget that works, when even
// streaming everything does not fit.
ResidencyPlan plan_residency(const ModelWeights& weights, const uint8_t* file_base, uint64_t budget, bool pack,
                             const FlashLayout* layout = nullptr);

// The smallest budget plan_residency accepts for these weights.
uint64_t minimum_memory_budget(const ModelWeights& weights, const uint8_t* file_base, bool pack,
                               const FlashLayout* layout = nullptr);

}  // namespace orchard
