#include "formats/safetensors.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/json_parse.h"

namespace orchard {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  return std::nullopt;
}

}  // namespace

void read_safetensors(std::shared_ptr<const Blob> blob, SafetensorsSet& set) {
  const std::string& path = blob->name();
  if (blob->size() < 8) fail(path, ": truncated safetensors file (no header length)");
  uint64_t header_bytes;
  std::memcpy(&header_bytes, blob->data(), 8);
  if (header_bytes > kMaxHeaderBytes || header_bytes > blob->size() - 8)
    fail(path, ": safetensors header length ", header_bytes, " exceeds the file");
  const char* header_begin = reinterpret_cast<const char*>(blob->data() + 8);
  const nlohmann::json header =
      parse_json(std::string_view(header_begin, header_bytes), path + ": safetensors header");
  if (!header.is_object()) fail(path, ": safetensors header is not a JSON object");

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_size = blob->size() - data_start;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry["shape"].is_array() ||
        !entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      fail(path, ": tensor '", name, "' has a malformed entry (needs dtype, shape, data_offsets)");
    const std::string dtype_name = entry["dtype"].get<std::string>();
    auto dtype = dtype_from_safetensors(dtype_name);
    if (!dtype) fail(path, ": tensor '", name, "' has unsupported dtype ", dtype_name,
                     " (F32, F16 and BF16 are supported)");
    TensorRef t;
    t.name = name;
    t.type = *dtype;
    int64_t elements = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40))
        fail(path, ": tensor '", name, "' has an invalid shape");
      const int64_t extent = d.get<int64_t>();
      if (extent != 0 && elements > std::numeric_limits<int64_t>::max() / extent)
        fail(path, ": tensor '", name, "' has too many elements");
      elements *= extent;
      t.shape.insert(t.shape.begin(), extent);  // row-major to contiguous-first
    }
    if (t.shape.empty()) t.shape.push_back(1);
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      fail(path, ": tensor '", name, "' has invalid data_offsets");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      fail(path, ": tensor '", name, "' data [", begin, ", ", end,
           ") lies outside the file's data (", data_size, " bytes)");
    t.nbytes = end - begin;
    if (t.nbytes != static_cast<uint64_t>(elements) * traits(t.type).block_bytes)
      fail(path, ": tensor '", name, "' holds ", t.nbytes, " bytes but its shape and dtype need ",
           static_cast<uint64_t>(elements) * traits(t.type).block_bytes);
    t.data = blob->data() + data_start + begin;
    set.tensors.push_back(std::move(t));
  }
  set.total_bytes += blob->size();
  set.files.push_back(std::move(blob));
}

SafetensorsSet load_safetensors_folder(const std::string& folder) {
  SafetensorsSet set;
  const std::string single = folder + "/model.safetensors";
  const std::string index_path = folder + "/model.safetensors.index.json";
  if (file_exists(index_path)) {
    const nlohmann::json index = parse_json(read_text_file(index_path), index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail(index_path, ": missing object 'weight_map'");
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) fail(index_path, ": weight_map entry '", tensor, "' is not a string");
      const std::string file = shard.get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "..")
        fail(index_path, ": weight_map entry '", tensor, "' names an invalid shard '", file, "'");
      shards.insert(file);
    }
    if (shards.empty()) fail(index_path, ": weight_map is empty");
    for (const std::string& shard : shards) read_safetensors(map_file(folder + "/" + shard), set);
  } else if (file_exists(single)) {
    read_safetensors(map_file(single), set);
  } else {
    fail(folder, ": no model.safetensors or model.safetensors.index.json in this folder");
  }
  std::set<std::string> seen;
  for (const TensorRef& t : set.tensors)
    if (!seen.insert(t.name).second) fail(folder, ": tensor '", t.name, "' appears in two files");
  return set;
}

}  // namespace orchard
