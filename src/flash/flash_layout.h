// The flash layout: a model's matrices already packed for the fast kernels, in a file of their
// own that limited-memory mode reads instead of the model file. Streaming from it needs no packing
// (the I/O thread only reads, so reads follow each other back to back) and no staging buffer
// (its budget goes to resident weights instead), and every matrix is one aligned O_DIRECT read.
//
// Built at the first limited-memory load of a model with the fast kernels, in a cache directory,
// never beside the model (whose folder may be read-only or shared). File format: docs/formats.md.
// The name carries a fingerprint of the model file (size, modification time, tensor table) and of
// the packed formats, so an edited model or a changed packing gets a new file, never a stale one.
// Every tile of every matrix has a 64-bit checksum, written with it and verified each time the
// tile is read (resident or streamed): a file damaged on disk is removed and refused with an error
// naming it (FlashLayoutDamaged; Model::load then rebuilds it), never used.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "orchard/error.h"

#include "flash/buffer_pool.h"
#include "flash/weight_store.h"
#include "kernels/packing.h"
#include "model/model_impl.h"

namespace orchard {

// A tile of the layout whose bytes do not match their checksum. The layout file has been removed
// by the time this is thrown, so the next load builds it again.
class FlashLayoutDamaged : public Error {
 public:
  using Error::Error;
};

// The checksum of one tile: a 64-bit multiply-rotate hash over 32-byte blocks (4 independent
// lanes), seeded with the tile's place so that swapped tiles are caught too. Measured at about
// 10 GB/s on one core (docs/formats.md), several times what storage delivers.
uint64_t layout_tile_hash(const uint8_t* data, size_t bytes, uint64_t seed);

class FlashLayout {
 public:
  struct Entry {
    uint64_t offset = 0;  // in the layout file, a multiple of WeightStore::kAlignment
    uint64_t bytes = 0;   // tiles * tile_bytes of the packed matrix
    uint64_t tile_bytes = 0;
    uint64_t first_checksum = 0;  // index of its first tile's checksum in the table
    uint32_t index = 0;           // of the matrix in the file
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

  // Checks the bytes of [offset, offset + bytes) of the layout, read to `data`: whole tiles of
  // one matrix, as every read of the layout is. Throws FlashLayoutDamaged naming the file and
  // the matrix (after removing the file) when a checksum does not match.
  void verify(uint64_t offset, uint64_t bytes, const uint8_t* data) const;

  const WeightStore& store() const { return *store_; }
  const std::string& path() const { return path_; }
  bool built_now() const { return built_now_; }

 private:
  std::string path_;
  std::unique_ptr<WeightStore> store_;
  std::unordered_map<const void*, Entry> entries_;
  std::vector<Entry> by_offset_;         // the entries in file order, for verify()
  std::vector<std::string> names_;       // of the matrices, for errors
  std::vector<uint64_t> checksums_;      // one per tile, in file order
  bool built_now_ = false;
};

}  // namespace orchard
