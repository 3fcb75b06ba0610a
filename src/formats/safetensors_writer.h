// Safetensors writer (the format safetensors.h reads): an 8-byte little-endian header length, a
// JSON header naming each tensor's dtype, shape and data_offsets, then the tensors' bytes. Float32
// only for now: adapters and full fine-tuning results are written in float32. The file appears
// at its path only when complete (base/atomic_file.h), so a crash leaves no half file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace orchard {

struct SafetensorsF32 {
  std::string name;
  std::vector<int64_t> shape;  // as safetensors lists it: outermost first ([rows, cols] for a matrix)
  std::vector<float> values;   // row-major, product(shape) elements
};

// Writes `tensors` in the given order (names unique, "__metadata__" reserved) and `metadata`
// (string to string, safetensors' "__metadata__"). The header is padded with spaces to a multiple
// of 8 bytes so that the data starts aligned, as the reference implementation does. Throws
// orchard::Error naming the path or the tensor on bad input or a failed write.
void write_safetensors(const std::string& path, const std::vector<SafetensorsF32>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace orchard
