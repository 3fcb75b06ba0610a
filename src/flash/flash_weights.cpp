#include "flash/flash_weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "base/error.h"
#include "kernels/packing.h"

namespace orchard {
namespace {

uint64_t matrix_bytes(const ModelWeights& w) {
  uint64_t n = w.output.nbytes;
  if (w.token_embedding.data != w.output.data) n += w.token_embedding.nbytes;
  for (const LayerWeights& l : w.layers)
    for (int m = 0; m < kLayerMatrices; ++m) n += layer_matrix(l, m).nbytes;
  return n;
}

// Reads a resident matrix into a buffer of its own. Packed ones (fast kernels) come from the
// flash layout as they are, or are packed from a staging copy, and are registered in `packed`
// under their mapped address, as pack_weights does, so that the transformer finds them the same
// way (the ref's data is then only a key, never read); the others point at their bytes.
void load_resident(FlashWeights& f, TensorRef& ref, const uint8_t* file_base, BufferPool& staging_pool,
                   PackedWeights& packed) {
  const WeightSlice s = matrix_slice(ref, 0, ref.rows(), -1, file_base, f.pack, f.layout.get());
  BufferPool::Buffer buffer = f.resident_pool->allocate(s.loaded_bytes);
  if (s.from_layout) {
    PackedMatrix p = describe_packed(ref, *packed_format_for(ref.type));
    uint8_t* tiles = const_cast<uint8_t*>(f.layout->store().read(s.offset, s.read_bytes, buffer.data(), buffer.size(), nullptr));
    f.layout->verify(s.offset, s.read_bytes, tiles);
    p.memory = std::shared_ptr<uint8_t>(tiles, [](uint8_t*) {});  // the pool owns it
    packed.add(ref, std::move(p));
  } else if (f.pack && packed_format_for(ref.type)) {
    PackedMatrix p = describe_packed(ref, *packed_format_for(ref.type));
    p.memory = std::shared_ptr<uint8_t>(buffer.data(), [](uint8_t*) {});  // the pool owns it
    // In slices of whole tiles that fit the staging buffer (the stream reserve, not yet in use at
    // load): a resident output matrix can be far larger than it. Tiles are independent, so the
    // slice's tiles are exactly the whole matrix's tiles at the same place.
    BufferPool::Buffer staging = staging_pool.allocate(staging_pool.capacity());
    const uint64_t stride = ref.row_stride();
    const int64_t slice_rows =
        std::max<int64_t>(kTileRows, static_cast<int64_t>((staging.size() - 2 * WeightStore::kAlignment) / stride) /
                                         kTileRows * kTileRows);
    for (int64_t first = 0; first < ref.rows(); first += slice_rows) {
      const int64_t rows = std::min(slice_rows, ref.rows() - first);
      TensorRef raw = ref;
      raw.shape = {ref.row_length(), rows};
      raw.nbytes = static_cast<uint64_t>(rows) * stride;
      raw.data = f.store->read(s.offset + static_cast<uint64_t>(first) * stride, raw.nbytes, staging.data(),
                               staging.size(), nullptr);
      PackedMatrix slice = describe_packed(raw, p.format);
      slice.memory = std::shared_ptr<uint8_t>(buffer.data() + (first / kTileRows) * p.tile_bytes, [](uint8_t*) {});
      pack_tiles(raw, slice, 0, slice.tiles);
    }
    packed.add(ref, std::move(p));
  } else {
    ref.data = f.store->read(s.offset, ref.nbytes, buffer.data(), buffer.size(), nullptr);
  }
  f.resident.push_back(std::move(buffer));
}

}  // namespace

bool needs_streaming(const Model::Impl& impl, uint64_t budget) {
  return budget > 0 && matrix_bytes(impl.weights) > budget;
}

void load_flash_weights(Model::Impl& impl, uint64_t budget, bool pack, const std::string& layout_dir,
                        const std::function<void(double)>& on_progress) {
  if (!impl.gguf || impl.files.size() != 1)
    fail("--memory-budget: streaming weights needs a single GGUF file; ", impl.path, " is not one");
  const Blob& file = *impl.files.front();
  auto f = std::make_shared<FlashWeights>();
  f->pack = pack;
  // Checks the budget before anything is read; building the layout takes two buffers of at most
  // a stream slot each, which the budget holds since it holds the two slots.
  const ResidencyPlan without_layout = plan_residency(impl.weights, file.data(), budget, pack);
  std::function<void(double)> build_progress;
  if (on_progress) build_progress = [&](double done) { on_progress(0.5 * done); };
  if (pack && layout_dir.empty()) f->layout_note = "flash layout off";
  if (pack && !layout_dir.empty())
    f->layout = FlashLayout::open_or_build(impl, layout_dir, std::min<uint64_t>(without_layout.slot_bytes, 64u << 20),
                                           &f->layout_note, build_progress);
  f->plan = f->layout ? plan_residency(impl.weights, file.data(), budget, pack, f->layout.get()) : without_layout;
  f->store = std::make_unique<WeightStore>(impl.path);
  f->resident_pool = std::make_unique<BufferPool>(f->plan.resident_bytes, "resident weights");
  f->embedding = impl.weights.token_embedding;
  f->embedding_offset = static_cast<uint64_t>(f->embedding.data - file.data());
  // Packing reads raw bytes first; at load nothing streams yet, so the stream reserve covers it.
  BufferPool staging(f->plan.stream_bytes(), "staging buffer");

  const double total = static_cast<double>(impl.weights.layers.size()) + 1;
  const double progress_from = f->layout && f->layout->built_now() ? 0.5 : 0.0;
  const auto resident = [&](TensorRef& ref) { load_resident(*f, ref, file.data(), staging, impl.packed); };
  for (size_t l = 0; l < impl.weights.layers.size(); ++l) {
    for (int m = 0; m < kLayerMatrices; ++m)
      if (f->plan.resident[l][m]) resident(layer_matrix(impl.weights.layers[l], m));
    if (on_progress) on_progress(progress_from + (1 - progress_from) * static_cast<double>(l + 1) / total);
  }
  // The embedding (tied or not) keeps its file offset in f->embedding: rows are read with pread.
  if (f->plan.output_resident) resident(impl.weights.output);

  // The mapping stays only for the header and the tensor table: drop any weight pages that
  // binding (the f32 vectors) faulted in, and their page-cache copies.
  ::madvise(const_cast<uint8_t*>(file.data()) - reinterpret_cast<uintptr_t>(file.data()) % 4096,
            file.size() + reinterpret_cast<uintptr_t>(file.data()) % 4096, MADV_DONTNEED);
  const int fd = ::open(impl.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  impl.flash = std::move(f);
}

}  // namespace orchard
