#include "flash/residency.h"

#include <algorithm>
#include <cstdlib>

#include "base/error.h"
#include "flash/buffer_pool.h"
#include "flash/flash_layout.h"
#include "flash/weight_store.h"
#include "kernels/packing.h"

namespace orchard {
namespace {

constexpr int kAttentionMatrices = 4;  // layer_matrix indices 0..3; 4..6 are the feed-forward

template <typename T>
uint64_t vector_bytes(const std::vector<T>& v) {
  return v.size() * sizeof(T);
}

uint64_t small_bytes(const ModelWeights& w) {
  uint64_t n = vector_bytes(w.output_norm) + vector_bytes(w.rope_freq_factors);
  for (const LayerWeights& l : w.layers)
    for (const auto* v : {&l.attn_norm, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm, &l.ffn_norm}) n += vector_bytes(*v);
  return n;
}

// Rows [first, first + rows) of `ref` as a matrix of its own.
TensorRef row_range(const TensorRef& ref, int64_t first, int64_t rows) {
  if (first == 0 && rows == ref.rows()) return ref;
  TensorRef r = ref;
  r.name = ref.name + "[rows " + std::to_string(first) + "+" + std::to_string(rows) + "]";
  r.shape = {ref.row_length(), rows};
  r.data = ref.row(first);
  r.nbytes = static_cast<uint64_t>(rows) * ref.row_stride();
  return r;
}

bool is_packed(const TensorRef& ref, bool pack) { return pack && packed_format_for(ref.type).has_value(); }

// Plans for `budget` without checking that the result fits (minimum_memory_budget plans for 0).
// slot_cap: the stream slot size to reserve; 0 reserves for the largest layer.
ResidencyPlan plan(const ModelWeights& w, const uint8_t* base, uint64_t budget, bool pack, const FlashLayout* layout,
                   uint64_t slot_cap) {
  const auto whole = [&](const TensorRef& m, int member) {
    return matrix_slice(m, 0, m.rows(), member, base, pack, layout);
  };
  ResidencyPlan p;
  p.budget = budget;
  p.small_bytes = small_bytes(w);
  const size_t n_layers = w.layers.size();
  p.resident.assign(n_layers, {});

  // A slot must hold any one layer's matrices, since any layer may end up wholly streamed; the
  // output chunks are cut to that size.
  uint64_t layer_cap = 0;
  for (const LayerWeights& l : w.layers) {
    uint64_t bytes = 0;
    for (int m = 0; m < kLayerMatrices; ++m) bytes += whole(layer_matrix(l, m), m).loaded_bytes;
    layer_cap = std::max(layer_cap, bytes);
  }
  const TensorRef& out = w.output;
  const uint64_t out_row_bytes = std::max<uint64_t>(1, whole(out, -1).loaded_bytes / static_cast<uint64_t>(out.rows()));
  int64_t chunk_rows = static_cast<int64_t>(layer_cap / out_row_bytes) / kTileRows * kTileRows;
  // ORCHARD_FLASH_CHUNK_ROWS caps the chunks (a multiple of 16): for tests on tiny models, whose
  // output matrix is smaller than a layer, and for tuning the prefetch granularity.
  if (const char* env = std::getenv("ORCHARD_FLASH_CHUNK_ROWS"); env && std::atoll(env) >= kTileRows)
    chunk_rows = std::min<int64_t>(chunk_rows, std::atoll(env) / kTileRows * kTileRows);
  chunk_rows = std::clamp<int64_t>(chunk_rows, kTileRows, std::max<int64_t>(kTileRows, out.rows()));
  // Slices packed as they are read (no flash layout) are read into a staging buffer first.
  const auto staging_for = [&](const WeightSlice& s) {
    return is_packed(s.ref, pack) && !s.from_layout ? BufferPool::round_up(WeightStore::span_bytes(s.ref.nbytes)) : 0;
  };
  const auto output_chunk = [&](int64_t first) {
    return matrix_slice(out, first, std::min(chunk_rows, out.rows() - first), -1, base, pack, layout);
  };
  uint64_t staging_cap = staging_for(output_chunk(0));
  for (const LayerWeights& l : w.layers)
    for (int m = 0; m < kLayerMatrices; ++m) staging_cap = std::max(staging_cap, staging_for(whole(layer_matrix(l, m), m)));
  const uint64_t out_chunk_cap = output_chunk(0).loaded_bytes + (out.rows() > chunk_rows ? WeightStore::kAlignment : 0);
  const uint64_t reserve = 2 * (slot_cap > 0 ? slot_cap : std::max(layer_cap, out_chunk_cap)) + staging_cap;

  // Greedy by priority into what the budget leaves after the vectors and the stream reserve.
  uint64_t room = budget > p.small_bytes + reserve ? budget - p.small_bytes - reserve : 0;
  const auto take = [&](uint64_t bytes) {
    if (bytes > room) return false;
    room -= bytes;
    p.resident_bytes += bytes;
    return true;
  };
  for (size_t l = 0; l < n_layers; ++l)
    for (int m = 0; m < kAttentionMatrices; ++m)
      p.resident[l][m] = take(whole(layer_matrix(w.layers[l], m), m).loaded_bytes);
  p.output_resident = take(whole(out, -1).loaded_bytes);
  for (size_t l = 0; l < n_layers; ++l)
    for (int m = kAttentionMatrices; m < kLayerMatrices; ++m)
      p.resident[l][m] = take(whole(layer_matrix(w.layers[l], m), m).loaded_bytes);

  for (size_t l = 0; l < n_layers; ++l) {
    StreamUnit u;
    u.layer = static_cast<int64_t>(l);
    for (int m = 0; m < kLayerMatrices; ++m)
      if (!p.resident[l][m]) {
        u.slices.push_back(whole(layer_matrix(w.layers[l], m), m));
        u.bytes += u.slices.back().loaded_bytes;
        p.streamed_bytes += u.slices.back().read_bytes;
      }
    if (!u.slices.empty()) p.units.push_back(std::move(u));
  }
  if (!p.output_resident)
    for (int64_t first = 0; first < out.rows(); first += chunk_rows) {
      StreamUnit u;
      u.first_row = first;
      u.slices.push_back(output_chunk(first));
      u.bytes = u.slices.back().loaded_bytes;
      p.streamed_bytes += u.slices.back().read_bytes;
      p.units.push_back(std::move(u));
    }
  for (const StreamUnit& u : p.units) {
    p.slot_bytes = std::max(p.slot_bytes, u.bytes);
    for (const WeightSlice& s : u.slices) p.staging_bytes = std::max(p.staging_bytes, staging_for(s));
  }
  return p;
}

}  // namespace

TensorRef& layer_matrix(LayerWeights& w, int index) {
  TensorRef* all[kLayerMatrices] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down};
  return *all[index];
}

const TensorRef& layer_matrix(const LayerWeights& w, int index) {
  return layer_matrix(const_cast<LayerWeights&>(w), index);
}

WeightSlice matrix_slice(const TensorRef& matrix, int64_t first_row, int64_t rows, int member,
                         const uint8_t* file_base, bool pack, const FlashLayout* layout) {
  WeightSlice s;
  s.member = member;
  s.ref = row_range(matrix, first_row, rows);
  const FlashLayout::Entry* entry = is_packed(matrix, pack) && layout ? layout->find(matrix) : nullptr;
  if (entry) {
    const PackedMatrix whole = describe_packed(matrix, *packed_format_for(matrix.type));
    const PackedMatrix part = describe_packed(s.ref, whole.format);
    s.from_layout = true;
    s.offset = entry->offset + static_cast<uint64_t>(first_row / kTileRows) * whole.tile_bytes;
    s.read_bytes = static_cast<uint64_t>(part.tiles) * part.tile_bytes;
    s.loaded_bytes = BufferPool::round_up(s.offset % WeightStore::kAlignment + s.read_bytes);
  } else {
    s.offset = static_cast<uint64_t>(s.ref.data - file_base);
    s.read_bytes = s.ref.nbytes;
    if (is_packed(matrix, pack)) {
      const PackedMatrix part = describe_packed(s.ref, *packed_format_for(matrix.type));
      s.loaded_bytes = BufferPool::round_up(static_cast<uint64_t>(part.tiles) * part.tile_bytes);
    } else {
      s.loaded_bytes = BufferPool::round_up(WeightStore::span_bytes(s.read_bytes));
    }
  }
  return s;
}

uint64_t minimum_memory_budget(const ModelWeights& weights, const uint8_t* file_base, bool pack,
                               const FlashLayout* layout) {
  const ResidencyPlan everything_streamed = plan(weights, file_base, 0, pack, layout, 0);
  return everything_streamed.small_bytes + everything_streamed.stream_bytes();
}

ResidencyPlan plan_residency(const ModelWeights& weights, const uint8_t* file_base, uint64_t budget, bool pack,
                             const FlashLayout* layout) {
  ResidencyPlan p = plan(weights, file_base, budget, pack, layout, 0);
  if (p.small_bytes + p.resident_bytes + p.stream_bytes() > budget)
    fail("--memory-budget ", budget, " bytes is too small for this model: streaming it needs at least ",
         minimum_memory_budget(weights, file_base, pack, layout), " bytes");
  // The slots were reserved for a whole layer; when only part of each layer streams (the
  // feed-forward, say), slots of the largest actual unit leave more of the budget resident.
  if (p.slot_bytes > 0) {
    ResidencyPlan tighter = plan(weights, file_base, budget, pack, layout, p.slot_bytes);
    if (tighter.slot_bytes <= p.slot_bytes &&
        tighter.small_bytes + tighter.resident_bytes + tighter.stream_bytes() <= budget)
      return tighter;
  }
  return p;
}

}  // namespace orchard
