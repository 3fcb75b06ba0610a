#include "flash/flash_layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "flash/residency.h"

namespace orchard {
namespace {

constexpr char kMagic[8] = {'O', 'R', 'C', 'H', 'F', 'L', 'S', 'H'};
// Bump when a packed format or this file's layout changes: old files then no longer match.
// Version 2: a checksum per tile (a table after the header page, hashed in the header).
// Version 3: Q4_1, Q5_0, Q5_1 and Q5_K matrices packed too.
// Version 4: Q3_K, Q2_K, IQ4_NL and IQ4_XS matrices packed too.
constexpr uint32_t kLayoutVersion = 4;
constexpr uint64_t kHeaderBytes = WeightStore::kAlignment;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t matrices;
  uint64_t fingerprint;
  uint64_t file_bytes;  // of the whole layout file: a shorter file is an interrupted copy
  uint64_t tiles;       // checksums in the table
  // Known only once the file is written, so not part of what an existing file must match.
  uint64_t table_hash;
};
constexpr size_t kHeaderMatchedBytes = offsetof(Header, table_hash);

uint64_t tile_seed(uint64_t matrix, uint64_t tile) { return (matrix << 32) ^ tile; }

// The matrices a layout holds, in file order: each layer's wq..w_down, then the output.
std::vector<const TensorRef*> packable_matrices(const ModelWeights& w) {
  std::vector<const TensorRef*> out;
  for (const LayerWeights& l : w.layers)
    for (int m = 0; m < kLayerMatrices; ++m)
      if (packed_format_for(layer_matrix(l, m).type)) out.push_back(&layer_matrix(l, m));
  if (packed_format_for(w.output.type)) out.push_back(&w.output);
  return out;
}

struct Fnv1a {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(data)[i]) * 1099511628211ull;
  }
  template <typename T>
  void add(const T& v) {
    add(&v, sizeof v);
  }
};

uint64_t fingerprint(const Model::Impl& impl, const std::vector<const TensorRef*>& matrices, const struct stat& st) {
  Fnv1a f;
  f.add(kLayoutVersion);
  f.add(static_cast<uint64_t>(st.st_size));
  f.add(static_cast<int64_t>(st.st_mtim.tv_sec));
  f.add(static_cast<int64_t>(st.st_mtim.tv_nsec));
  const uint8_t* base = impl.files.front()->data();
  for (const TensorRef* m : matrices) {
    f.add(m->name.data(), m->name.size());
    f.add(static_cast<int32_t>(m->type));
    for (int64_t d : m->shape) f.add(d);
    f.add(static_cast<uint64_t>(m->data - base));
  }
  return f.h;
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Writes the layout file sequentially, keeping its pages out of the page cache as it goes: under
// a cgroup limit, dirty and cached pages count as the process's memory.
class LayoutWriter {
 public:
  explicit LayoutWriter(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(path, ": cannot create: ", std::strerror(errno));
  }
  ~LayoutWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write_at(uint64_t offset, const uint8_t* data, uint64_t bytes) {
    uint64_t done = 0;
    while (done < bytes) {
      const ssize_t put = ::pwrite(fd_, data + done, bytes - done, static_cast<off_t>(offset + done));
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) fail(path_, ": write failed: ", put == 0 ? "no progress" : std::strerror(errno));
      done += static_cast<uint64_t>(put);
    }
    unflushed_ += bytes;
    if (unflushed_ >= (32u << 20)) flush();
  }
  void flush() {
    if (::fdatasync(fd_) != 0) fail(path_, ": fdatasync failed: ", std::strerror(errno));
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
    unflushed_ = 0;
  }
  void finish(uint64_t file_bytes) {
    if (::ftruncate(fd_, static_cast<off_t>(file_bytes)) != 0) fail(path_, ": ftruncate failed: ", std::strerror(errno));
    flush();
    if (::close(std::exchange(fd_, -1)) != 0) fail(path_, ": close failed: ", std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t unflushed_ = 0;
};

// Packs every matrix into `temp_path`, in slices of whole tiles that fit the scratch buffers.
void build(const Model::Impl& impl, const std::vector<const TensorRef*>& matrices,
           const std::vector<FlashLayout::Entry>& entries, Header header, const std::string& temp_path,
           uint64_t scratch_bytes, const std::function<void(double)>& on_progress) {
  std::vector<uint64_t> checksums(header.tiles);
  const WeightStore source(impl.path);
  const uint8_t* base = impl.files.front()->data();
  BufferPool pool(2 * BufferPool::round_up(scratch_bytes) + kHeaderBytes, "flash layout scratch buffers");
  BufferPool::Buffer raw_buffer = pool.allocate(scratch_bytes);
  BufferPool::Buffer packed_buffer = pool.allocate(scratch_bytes);
  LayoutWriter out(temp_path);
  for (size_t i = 0; i < matrices.size(); ++i) {
    const TensorRef& m = *matrices[i];
    const PackedMatrix whole = describe_packed(m, *packed_format_for(m.type));
    const uint64_t stride = m.row_stride();
    const uint64_t tile_raw = kTileRows * stride;
    const uint64_t room = std::min<uint64_t>(raw_buffer.size() - 2 * WeightStore::kAlignment, packed_buffer.size());
    const int64_t slice_tiles = std::max<int64_t>(1, static_cast<int64_t>(room / std::max(tile_raw, whole.tile_bytes)));
    if (static_cast<uint64_t>(slice_tiles) * std::max(tile_raw, whole.tile_bytes) > room)
      fail(impl.path, ": internal: flash layout scratch too small for ", m.name);
    const uint64_t offset = static_cast<uint64_t>(m.data - base);
    for (int64_t t = 0; t < whole.tiles; t += slice_tiles) {
      const int64_t first_row = t * kTileRows;
      const int64_t rows = std::min<int64_t>(slice_tiles * kTileRows, m.rows() - first_row);
      TensorRef raw = m;
      raw.shape = {m.row_length(), rows};
      raw.nbytes = static_cast<uint64_t>(rows) * stride;
      raw.data = source.read(offset + static_cast<uint64_t>(first_row) * stride, raw.nbytes, raw_buffer.data(),
                             raw_buffer.size(), nullptr);
      PackedMatrix slice = describe_packed(raw, whole.format);
      slice.memory = std::shared_ptr<uint8_t>(packed_buffer.data(), [](uint8_t*) {});
      pack_tiles(raw, slice, 0, slice.tiles);
      for (int64_t k = 0; k < slice.tiles; ++k)
        checksums[entries[i].first_checksum + static_cast<uint64_t>(t + k)] =
            layout_tile_hash(packed_buffer.data() + static_cast<uint64_t>(k) * slice.tile_bytes, slice.tile_bytes,
                             tile_seed(i, static_cast<uint64_t>(t + k)));
      out.write_at(entries[i].offset + static_cast<uint64_t>(t) * whole.tile_bytes, packed_buffer.data(),
                   static_cast<uint64_t>(slice.tiles) * slice.tile_bytes);
    }
    if (on_progress) on_progress(static_cast<double>(i + 1) / static_cast<double>(matrices.size()));
  }
  // The checksum table, in pieces that fit the scratch buffer (the pool holds nothing more).
  const uint8_t* table = reinterpret_cast<const uint8_t*>(checksums.data());
  const uint64_t table_bytes = checksums.size() * sizeof(uint64_t);
  header.table_hash = layout_tile_hash(table, table_bytes, ~uint64_t{0});
  for (uint64_t done = 0; done < table_bytes;) {
    const uint64_t n = std::min<uint64_t>(table_bytes - done, packed_buffer.size());
    std::memcpy(packed_buffer.data(), table + done, n);
    out.write_at(kHeaderBytes + done, packed_buffer.data(), n);
    done += n;
  }
  BufferPool::Buffer header_page = pool.allocate(kHeaderBytes);
  std::memset(header_page.data(), 0, kHeaderBytes);
  std::memcpy(header_page.data(), &header, sizeof header);
  out.write_at(0, header_page.data(), kHeaderBytes);
  out.finish(header.file_bytes);
}

// Reads the checksum table of the layout at `path` into *checksums when the file is the one
// `expected` describes (header and size) and the table matches its hash; false otherwise (a
// missing, stale, cut or damaged file, to be built again).
bool read_checksums(const std::string& path, const Header& expected, std::vector<uint64_t>* checksums) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != expected.file_bytes)
    return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  Header found{};
  bool ok = ::pread(fd, &found, sizeof found, 0) == static_cast<ssize_t>(sizeof found) &&
            std::memcmp(&found, &expected, kHeaderMatchedBytes) == 0;
  if (ok) {
    checksums->assign(expected.tiles, 0);
    const size_t bytes = checksums->size() * sizeof(uint64_t);
    ok = ::pread(fd, checksums->data(), bytes, static_cast<off_t>(kHeaderBytes)) == static_cast<ssize_t>(bytes) &&
         layout_tile_hash(reinterpret_cast<const uint8_t*>(checksums->data()), bytes, ~uint64_t{0}) == found.table_hash;
  }
  ::close(fd);
  return ok;
}

}  // namespace

uint64_t layout_tile_hash(const uint8_t* data, size_t bytes, uint64_t seed) {
  constexpr uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xbf58476d1ce4e5b9ull, k3 = 0x94d049bb133111ebull;
  const auto rotl = [](uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  const auto word = [](const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, sizeof w);
    return w;
  };
  // Four independent lanes keep the multiplier busy; each mixes a word in as xxHash's rounds do.
  uint64_t lane[4] = {seed + k1, seed ^ k2, seed - k3, ~seed};
  size_t i = 0;
  for (; i + 32 <= bytes; i += 32)
    for (int l = 0; l < 4; ++l) lane[l] = rotl(lane[l] + word(data + i + 8 * l) * k2, 31) * k1;
  uint64_t h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18) + bytes * k3;
  for (; i + 8 <= bytes; i += 8) h = rotl(h ^ (word(data + i) * k2), 27) * k1 + k3;
  for (; i < bytes; ++i) h = rotl(h ^ (data[i] * k1), 11) * k2;
  // Final avalanche (splitmix64's), so that every input bit reaches every output bit.
  h = (h ^ (h >> 30)) * k2;
  h = (h ^ (h >> 27)) * k3;
  return h ^ (h >> 31);
}

std::string FlashLayout::default_directory() {
  if (const char* dir = std::getenv("ORCHARD_CACHE_DIR"); dir && *dir) return std::strcmp(dir, "off") == 0 ? "" : dir;
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir) return std::string(dir) + "/orchard";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/orchard";
  return {};
}

std::unique_ptr<FlashLayout> FlashLayout::open_or_build(const Model::Impl& impl, const std::string& directory,
                                                        uint64_t scratch_bytes, std::string* why_not,
                                                        const std::function<void(double)>& on_progress) {
  const std::vector<const TensorRef*> matrices = packable_matrices(impl.weights);
  if (matrices.empty()) {
    *why_not = "no matrix has a packed format";
    return nullptr;
  }
  if (directory.empty()) {
    *why_not = "no cache directory (set ORCHARD_CACHE_DIR or HOME)";
    return nullptr;
  }
  struct stat st {};
  if (::stat(impl.path.c_str(), &st) != 0) fail(impl.path, ": cannot stat: ", std::strerror(errno));

  Header header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.version = kLayoutVersion;
  header.matrices = static_cast<uint32_t>(matrices.size());
  header.fingerprint = fingerprint(impl, matrices, st);
  std::vector<Entry> entries;
  uint64_t tiles = 0;
  for (const TensorRef* m : matrices) {
    const PackedMatrix p = describe_packed(*m, *packed_format_for(m->type));
    entries.push_back({0, static_cast<uint64_t>(p.tiles) * p.tile_bytes, p.tile_bytes, tiles,
                       static_cast<uint32_t>(entries.size())});
    tiles += static_cast<uint64_t>(p.tiles);
  }
  header.tiles = tiles;
  // The checksum table follows the header page; the matrices follow the table.
  uint64_t cursor = kHeaderBytes + BufferPool::round_up(tiles * sizeof(uint64_t));
  for (Entry& e : entries) {
    e.offset = cursor;
    cursor += BufferPool::round_up(e.bytes);
  }
  header.file_bytes = cursor;

  char name_suffix[32];
  std::snprintf(name_suffix, sizeof name_suffix, "-%016llx.flash", static_cast<unsigned long long>(header.fingerprint));
  auto layout = std::unique_ptr<FlashLayout>(new FlashLayout);
  layout->path_ = directory + "/" + base_name(impl.path) + name_suffix;
  if (!read_checksums(layout->path_, header, &layout->checksums_)) {
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    // Built under a name of its own and renamed when complete, so that a reader (or a process
    // building the same layout at the same time) never sees a partial file.
    const std::string temp = layout->path_ + ".tmp." + std::to_string(::getpid());
    try {
      build(impl, matrices, entries, header, temp, scratch_bytes, on_progress);
      if (::rename(temp.c_str(), layout->path_.c_str()) != 0) fail(temp, ": rename failed: ", std::strerror(errno));
    } catch (const Error& e) {
      ::unlink(temp.c_str());
      *why_not = e.what();
      return nullptr;
    }
    layout->built_now_ = true;
    if (!read_checksums(layout->path_, header, &layout->checksums_)) {
      *why_not = layout->path_ + ": the flash layout just written does not read back";
      return nullptr;
    }
  }
  layout->store_ = std::make_unique<WeightStore>(layout->path_);
  for (size_t i = 0; i < matrices.size(); ++i) {
    layout->entries_.emplace(matrices[i]->data, entries[i]);
    layout->names_.push_back(matrices[i]->name);
  }
  layout->by_offset_ = std::move(entries);
  return layout;
}

void FlashLayout::verify(uint64_t offset, uint64_t bytes, const uint8_t* data) const {
  // The entry holding `offset`: the last one starting at or before it.
  auto it = std::upper_bound(by_offset_.begin(), by_offset_.end(), offset,
                             [](uint64_t o, const Entry& e) { return o < e.offset; });
  if (it == by_offset_.begin()) fail(path_, ": internal: read at ", offset, " is not in a matrix");
  const Entry& e = *std::prev(it);
  const uint64_t within = offset - e.offset;
  if (within % e.tile_bytes != 0 || bytes % e.tile_bytes != 0 || within + bytes > e.bytes)
    fail(path_, ": internal: read of ", bytes, " bytes at ", offset, " is not whole tiles of '", names_[e.index], "'");
  const uint64_t first = within / e.tile_bytes;
  for (uint64_t t = 0; t < bytes / e.tile_bytes; ++t) {
    const uint64_t expected = checksums_[e.first_checksum + first + t];
    if (layout_tile_hash(data + t * e.tile_bytes, e.tile_bytes, tile_seed(e.index, first + t)) != expected) {
      // Removed so that the next load builds it again; a process still reading it keeps its
      // descriptor, and fails the same way at the same tile.
      ::unlink(path_.c_str());
      throw FlashLayoutDamaged(str_cat(path_, ": flash layout damaged: the checksum of tile ", first + t, " of '",
                                       names_[e.index], "' does not match (file removed; it is rebuilt at the next load)"));
    }
  }
}

const FlashLayout::Entry* FlashLayout::find(const TensorRef& matrix) const {
  const auto it = entries_.find(matrix.data);
  return it == entries_.end() ? nullptr : &it->second;
}

}  // namespace orchard
