// Load-time repacking for the fast kernels: every matrix with a packed format is copied once into
// anonymous memory in the layout the kernels stream, and the file pages it came from are
// released, so the process holds one copy of the weights rather than two.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <unordered_set>

#include "kernels/thread_pool.h"
#include "model/activation_levels.h"
#include "model/model_impl.h"

namespace orchard {
namespace {

// Drops the mapped pages wholly inside [data, data + bytes) from this process; a later read
// (an embedding lookup, the reference kernels) faults them back in from the file.
void release_mapped_range(const uint8_t* data, uint64_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

void pack_weights(Model::Impl& impl, const std::function<void(double)>& on_progress, bool measure_levels) {
  std::vector<const TensorRef*> matrices;
  ModelWeights& w = impl.weights;
  for (const LayerWeights& l : w.layers)
    for (const TensorRef* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      matrices.push_back(t);
  matrices.push_back(&w.output);

  // The packed matrices end to end in one allocation (allocate_weight_memory: huge pages), in
  // the order a forward pass reads them, each 64-byte aligned.
  std::vector<PackedMatrix> packed(matrices.size());
  std::vector<size_t> offsets(matrices.size(), SIZE_MAX);  // SIZE_MAX: not packed here
  std::unordered_set<const void*> seen;  // PackedWeights' key: a tied or shared matrix once
  size_t arena_bytes = 0;
  for (size_t i = 0; i < matrices.size(); ++i) {
    const TensorRef& t = *matrices[i];
    const auto format = packed_format_for(t.type);
    if (!format || impl.packed.find(t) || !seen.insert(t.data).second) continue;
    packed[i] = describe_packed(t, *format);
    offsets[i] = (arena_bytes + 63) / 64 * 64;
    arena_bytes = offsets[i] + static_cast<size_t>(packed[i].tiles) * packed[i].tile_bytes;
  }
  const std::shared_ptr<uint8_t> arena = allocate_weight_memory(arena_bytes);

  ThreadPool pool(0);
  uint64_t total_bytes = 0, done_bytes = 0;
  for (const TensorRef* t : matrices) total_bytes += t->nbytes;
  for (size_t i = 0; i < matrices.size(); ++i) {
    const TensorRef* t = matrices[i];
    done_bytes += t->nbytes;
    if (on_progress && total_bytes > 0) on_progress(static_cast<double>(done_bytes) / static_cast<double>(total_bytes));
    if (offsets[i] == SIZE_MAX) continue;
    PackedMatrix& p = packed[i];
    p.memory = std::shared_ptr<uint8_t>(arena, arena.get() + offsets[i]);  // owns the arena with the others
    // In slices of rows, releasing each slice's file pages once packed, so that a large matrix
    // (the 150k-row embedding) never sits in memory twice. Only file mappings can be released:
    // GGUF tensors live in the mapped file, unless the model was loaded from bytes in memory
    // (Model::load_from_memory), where releasing would zero the tensor that the embedding lookup
    // and the reference kernels still read.
    constexpr int64_t kSliceTiles = 512;
    for (int64_t first = 0; first < p.tiles; first += kSliceTiles) {
      const int64_t last = std::min(p.tiles, first + kSliceTiles);
      pool.parallel_for(last - first, [&](int64_t b, int64_t e) { pack_tiles(*t, p, first + b, first + e); });
      if (impl.gguf && impl.gguf->blob()->maps_file()) {
        const int64_t row_end = std::min(p.out, last * kTileRows);
        const uint8_t* begin = t->row(first * kTileRows);
        release_mapped_range(begin, static_cast<uint64_t>(t->row(row_end) - begin));
      }
    }
    impl.packed.add(*t, std::move(p));
  }
  if (measure_levels) choose_activation_levels(impl);
}

}  // namespace orchard
