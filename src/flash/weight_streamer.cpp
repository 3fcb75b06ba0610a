#include "flash/weight_streamer.h"

#include <algorithm>
#include <utility>

#include "base/error.h"
#include "tensor/dequantize.h"

namespace orchard {

std::unique_ptr<WeightSource> FlashWeights::open(const Model::Impl& model) const {
  return std::make_unique<WeightStreamer>(model, *this);
}

WeightStreamer::WeightStreamer(const Model::Impl& model, const FlashWeights& flash)
    : model_(model),
      flash_(flash),
      pool_(flash.plan.stream_bytes(), "weight stream buffers"),
      views_(model.weights.layers),
      output_view_(model.weights.output) {
  const ResidencyPlan& plan = flash_.plan;
  for (Slot& s : slots_) s.memory = pool_.allocate(plan.slot_bytes);
  if (plan.staging_bytes > 0) staging_ = pool_.allocate(plan.staging_bytes);
  layer_units_.assign(model.weights.layers.size(), -1);
  for (size_t u = 0; u < plan.units.size(); ++u) {
    if (plan.units[u].layer >= 0) layer_units_[static_cast<size_t>(plan.units[u].layer)] = static_cast<int64_t>(u);
    else output_units_.push_back(static_cast<int64_t>(u));
  }
}

WeightStreamer::~WeightStreamer() {
  try {
    if (next_ >= 0) prefetcher_.wait();
  } catch (...) {  // a failed read nobody will use
  }
}

void WeightStreamer::load(int64_t unit, Slot& slot, uint64_t* read_bytes) {
  const StreamUnit& u = flash_.plan.units[static_cast<size_t>(unit)];
  slot.unit = -1;
  slot.refs.clear();
  slot.packed.clear();
  uint64_t cursor = 0;
  size_t run_end = 0;  // slices before this one have been read
  for (size_t i = 0; i < u.slices.size(); ++i) {
    const WeightSlice& s = u.slices[i];
    uint8_t* dest = slot.memory.data() + cursor;
    TensorRef ref = s.ref;
    const auto format = flash_.pack ? packed_format_for(ref.type) : std::nullopt;
    if (s.from_layout) {
      // Already packed: nothing to compute. Slices that follow each other in the layout (a
      // layer's matrices are stored in the order they stream) are read together, as one request.
      if (i >= run_end) {
        uint64_t run_bytes = s.loaded_bytes;
        for (run_end = i + 1; run_end < u.slices.size(); ++run_end) {
          const WeightSlice& next = u.slices[run_end];
          if (!next.from_layout || next.offset != s.offset + run_bytes) break;
          run_bytes += next.loaded_bytes;
        }
        const uint64_t last = u.slices[run_end - 1].offset + u.slices[run_end - 1].read_bytes;
        flash_.layout->store().read(s.offset, last - s.offset, dest, run_bytes, read_bytes);
      }
      uint8_t* tiles = dest + s.offset % WeightStore::kAlignment;
      // On the I/O thread, beside the computation of the previous unit (see docs/formats.md for
      // what it costs).
      flash_.layout->verify(s.offset, s.read_bytes, tiles);
      PackedMatrix p = describe_packed(ref, *packed_format_for(ref.type));
      p.memory = std::shared_ptr<uint8_t>(tiles, [](uint8_t*) {});  // the slot owns it
      ref.data = tiles;  // a key for find_packed
      slot.packed.push_back(std::move(p));
    } else if (format) {
      // Packed as the fast kernels' load-time path does, so the same kernel code runs on it.
      TensorRef raw = ref;
      raw.data = flash_.store->read(s.offset, ref.nbytes, staging_.data(), staging_.size(), read_bytes);
      PackedMatrix p = describe_packed(raw, *format);
      p.memory = std::shared_ptr<uint8_t>(dest, [](uint8_t*) {});  // the slot owns it
      pack_tiles(raw, p, 0, p.tiles);
      ref.data = dest;  // a key for find_packed; the kernels read the packed copy
      slot.packed.push_back(std::move(p));
    } else {
      ref.data = flash_.store->read(s.offset, ref.nbytes, dest, s.loaded_bytes, read_bytes);
      slot.packed.emplace_back();  // no memory: not packed; keeps packed[i] beside refs[i]
    }
    slot.refs.push_back(ref);
    cursor += s.loaded_bytes;
  }
  slot.unit = unit;
}

void WeightStreamer::acquire(int64_t unit) {
  const int64_t n_units = static_cast<int64_t>(flash_.plan.units.size());
  const int other = 1 - current_;
  const int64_t expected = std::exchange(next_, -1);  // stays -1 if the read in flight failed
  if (expected >= 0) {
    io_wait_s_ += prefetcher_.wait();
    bytes_read_ += prefetch_read_;
  }
  if (expected != unit) {
    // Out of the expected order (the first pass, or after a pass that threw): read it now.
    const auto start = std::chrono::steady_clock::now();
    load(unit, slots_[static_cast<size_t>(other)], &bytes_read_);
    io_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  current_ = other;
  // The slot just left is free: the computation has moved on to `unit`.
  next_ = (unit + 1) % n_units;
  Slot& free_slot = slots_[static_cast<size_t>(1 - current_)];
  prefetch_read_ = 0;
  prefetcher_.submit([this, &free_slot, u = next_] { load(u, free_slot, &prefetch_read_); });
}

const LayerWeights& WeightStreamer::layer(int64_t l) {
  LayerWeights& view = views_[static_cast<size_t>(l)];
  const int64_t unit = layer_units_[static_cast<size_t>(l)];
  if (unit < 0) return view;
  acquire(unit);
  const Slot& slot = slots_[static_cast<size_t>(current_)];
  const StreamUnit& u = flash_.plan.units[static_cast<size_t>(unit)];
  for (size_t i = 0; i < u.slices.size(); ++i) layer_matrix(view, u.slices[i].member) = slot.refs[i];
  return view;
}

WeightSource::Chunk WeightStreamer::output_chunk(size_t i) {
  if (output_units_.empty()) return {&output_view_, 0};
  const int64_t unit = output_units_[i];
  acquire(unit);
  return {&slots_[static_cast<size_t>(current_)].refs.front(), flash_.plan.units[static_cast<size_t>(unit)].first_row};
}

const PackedMatrix* WeightStreamer::find_packed(const TensorRef& w) const {
  if (const PackedMatrix* resident = model_.packed.find(w)) return resident;
  const Slot& slot = slots_[static_cast<size_t>(current_)];
  for (size_t i = 0; i < slot.refs.size(); ++i)
    if (slot.refs[i].data == w.data && slot.packed[i].memory) return &slot.packed[i];
  return nullptr;
}

void WeightStreamer::embedding_row(int32_t token, float* out) {
  const TensorRef& e = flash_.embedding;
  embedding_row_.resize(e.row_stride());
  flash_.store->read_small(flash_.embedding_offset + static_cast<uint64_t>(token) * e.row_stride(),
                           embedding_row_.size(), embedding_row_.data(), &bytes_read_);
  dequantize_row(e.type, embedding_row_.data(), out, e.row_length());
}

void WeightStreamer::end_pass(int64_t tokens, double seconds) {
  ++passes_;
  tokens_ += tokens;
  compute_s_ += seconds;
}

FlashStats WeightStreamer::stats() const {
  FlashStats s;
  s.active = true;
  s.budget_bytes = flash_.plan.budget;
  s.resident_bytes = flash_.plan.small_bytes + flash_.plan.resident_bytes;
  s.stream_buffer_bytes = pool_.capacity();
  s.streamed_bytes_per_pass = flash_.plan.streamed_bytes;
  s.direct_io = flash_.store->direct() && (!flash_.layout || flash_.layout->store().direct());
  s.flash_layout = flash_.layout != nullptr;
  s.bytes_read = bytes_read_;
  s.io_wait_s = io_wait_s_;
  s.compute_s = std::max(0.0, compute_s_ - io_wait_s_);
  s.passes = passes_;
  s.tokens = tokens_;
  return s;
}

}  // namespace orchard
