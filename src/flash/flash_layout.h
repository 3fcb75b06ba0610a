// The flash layout: a model's matrices already packed for the fast kernels, in a file of their
// own that limited-memory mode reads instead of the model file. Streaming from it needs no packing
// (the I/O thread only reads, so reads follow each other back to back) and no staging buffer
// (its budget goes to resident weights instead), and every matrix is one aligned O_DIRECT read.
//
// Built at the first limited-memory load of a model with the fast kernels, in a cache directory,
// never beside the model (whose folder may be read-only or shared). File format: docs/formats.md.
// The name carries a fingerprint of the model file (size, modification time, tensor table) and of
// the packed formats, so an edited model or a changed packing gets a new file, never a stale one.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "flash/buffer_pool.h"
#include "flash/weight_store.h"
#include "kernels/packing.h"
#include "model/model_impl.h"

namespace orchard {

class FlashLayout {
 public:
  struct Entry {
    uint64_t offset = 0;  // in the layout file, a multiple of WeightStore::kAlignment
    uint64_t bytes = 0;   // tiles * tile_bytes of the packed matrix
  };

  // The directory used when LoadOptions::flash_layout_dir is empty: $ORCHARD_CACHE_DIR, else
  // $XDG_CACHE_HOME/orchard, else $HOME/.cache/orchard; "" (no layout) for ORCHARD_CACHE_DIR=off.
  static std::string default_directory();

  // The layout of `impl`'s model in `directory`, built first when it is missing or stale, using
  // two scratch buffers of `scratch_bytes` (at least 16 rows of any matrix, raw and packed) for
  // reading and packing. Returns nullptr, with the reason in *why_not, when
  // the model has no packable matrix or the layout cannot be written (read-only directory, full
  // disk): the caller then packs matrices as it reads them.
  static std::unique_ptr<FlashLayout> open_or_build(const Model::Impl& impl, const std::string& directory,
                                                    uint64_t scratch_bytes, std::string* why_not,
                                                    const std::function<void(double)>& on_progress);

  // The packed copy of a matrix of the model (looked up by its address in the mapping), or null.
  const Entry* find(const TensorRef& matrix) const;

  const WeightStore& store() const { return *store_; }
  const std::string& path() const { return path_; }
  bool built_now() const { return built_now_; }

 private:
  std::string path_;
  std::unique_ptr<WeightStore> store_;
  std::unordered_map<const void*, Entry> entries_;
  bool built_now_ = false;
};

}  // namespace orchard
