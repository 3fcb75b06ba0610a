#include "formats/safetensors_writer.h"

#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "base/atomic_file.h"
#include "base/error.h"

namespace orchard {

void write_safetensors(const std::string& path, const std::vector<SafetensorsF32>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");
  // An ordered_json keeps the tensors in the order their data is laid out (readers do not need
  // it, but a person reading the header does).
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) m[key] = value;
    header["__metadata__"] = std::move(m);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const SafetensorsF32& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      fail(path, ": safetensors tensor name '", t.name, "' is empty or reserved");
    if (!names.insert(t.name).second) fail(path, ": safetensors tensor '", t.name, "' is written twice");
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail(path, ": safetensors tensor '", t.name, "' has a negative dimension");
      elements *= static_cast<uint64_t>(d);
    }
    if (elements != t.values.size())
      fail(path, ": safetensors tensor '", t.name, "' has ", t.values.size(), " values but its shape holds ", elements);
    const uint64_t bytes = elements * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t length = text.size();
  char prefix[8];
  std::memcpy(prefix, &length, 8);

  AtomicFile out(path);
  out.write(std::string_view(prefix, 8));
  out.write(text);
  for (const SafetensorsF32& t : tensors)
    out.write(std::string_view(reinterpret_cast<const char*>(t.values.data()), t.values.size() * sizeof(float)));
  out.commit();
}

}  // namespace orchard
