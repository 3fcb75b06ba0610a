// Load-time repacking for the fast kernels: every matrix with a packed format is copied once into
// anonymous memory in the layout the kernels stream, and the file pages it came from are
// released, so the process holds one copy of the weights rather than two.
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/thread_pool.h"
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

void pack_weights(Model::Impl& impl) {
  std::vector<const TensorRef*> matrices;
  ModelWeights& w = impl.weights;
  for (const LayerWeights& l : w.layers)
    for (const TensorRef* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      matrices.push_back(t);
  matrices.push_back(&w.output);

  ThreadPool pool(0);
  for (const TensorRef* t : matrices) {
    if (impl.packed.find(*t)) continue;  // tied or shared
    auto format = packed_format_for(t->type);
    if (!format) continue;
    PackedMatrix p = allocate_packed(*t, *format);
    pool.parallel_for(p.tiles, [&](int64_t b, int64_t e) { pack_tiles(*t, p, b, e); });
    impl.packed.add(*t, std::move(p));
    // Only file mappings can be released: GGUF tensors live in the mapped file.
    if (impl.gguf) release_mapped_range(t->data, t->nbytes);
  }
}

}  // namespace orchard
