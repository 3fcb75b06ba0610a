// Single-thread CPU time of the packed int8 matmul (prefill shape) on one ISA path, for random
// weights at Qwen2.5-1.5B shapes. Thread CPU time (not wall clock) so that other processes on a
// shared machine disturb the figure less.
//
//   gemm_bench [--isa avx512vnni] [--type q4_0|q8_0|q2_k|q3_k|q4_k|q5_k|q6_k|iq4_xs] [--tokens 512] [--reps 3]
//              [--activations residual|int8] [--shape INxOUT ...] [--copies N]
//
// --copies N: N packed copies of each matrix, one per repetition in turn, so that with enough
// of them (their bytes well past the L3 cache) every repetition reads its weights from memory.
// Each line then also gives the weights' bytes per second, and those of a plain read of the
// same bytes (vector loads and nothing else: what one core can stream).
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "base/plain_read.h"
#include "kernels/isa_kernels.h"
#include "kernels/packing.h"
#include "tensor/dequantize.h"

using namespace orchard;

namespace {

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Random quants with moderate f16 scales in every scale field the packed formats read.
std::vector<uint8_t> random_weights(DType type, int64_t in, int64_t out, std::mt19937& rng) {
  std::vector<uint8_t> bytes(row_bytes(type, in) * static_cast<size_t>(out));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  const size_t block = traits(type).block_bytes;
  std::vector<size_t> fields;
  if (type == DType::Q4_0 || type == DType::Q8_0 || type == DType::IQ4_XS) fields = {0};
  if (type == DType::Q4_K || type == DType::Q5_K) fields = {0, 2};
  if (type == DType::Q6_K) fields = {208};
  if (type == DType::Q3_K) fields = {108};
  if (type == DType::Q2_K) fields = {80, 82};
  for (size_t at = 0; at < bytes.size(); at += block)
    for (size_t f : fields) {
      const uint16_t h = f32_to_f16(0.01f);
      bytes[at + f] = static_cast<uint8_t>(h);
      bytes[at + f + 1] = static_cast<uint8_t>(h >> 8);
    }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  std::string isa_arg = "avx512vnni", type_arg = "q4_0", act = "residual";
  int64_t tokens = 512;
  int reps = 3, copies = 1;
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--isa") isa_arg = v;
    else if (a == "--type") type_arg = v;
    else if (a == "--tokens") tokens = std::stoll(v);
    else if (a == "--reps") reps = std::stoi(v);
    else if (a == "--copies") copies = std::max(1, std::stoi(v));
    else if (a == "--activations") act = v;
    else if (a == "--shape") {
      const size_t x = v.find('x');
      shapes.emplace_back(std::stoll(v.substr(0, x)), std::stoll(v.substr(x + 1)));
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (shapes.empty()) shapes = {{1536, 1536}, {1536, 8960}, {8960, 1536}};
  Isa isa = Isa::generic;
  for (Isa candidate : supported_isas())
    if (isa_arg == isa_name(candidate)) isa = candidate;
  const std::pair<const char*, DType> types[] = {{"q4_0", DType::Q4_0}, {"q8_0", DType::Q8_0}, {"q2_k", DType::Q2_K},
                                                 {"q3_k", DType::Q3_K}, {"q4_k", DType::Q4_K}, {"q5_k", DType::Q5_K},
                                                 {"q6_k", DType::Q6_K}, {"iq4_xs", DType::IQ4_XS}};
  DType type = DType::Q4_0;
  for (auto [name, t] : types)
    if (type_arg == name) type = t;
  const IsaKernels& k = isa_kernels(isa);
  std::mt19937 rng(1);

  double total_ops = 0, total_seconds = 0;
  for (auto [in, out] : shapes) {
    std::vector<uint8_t> bytes = random_weights(type, in, out, rng);
    const TensorRef ref{"w", type, {in, out}, bytes.data(), bytes.size()};
    std::vector<PackedMatrix> packed;
    for (int c = 0; c < copies; ++c) {
      packed.push_back(allocate_packed(ref, *packed_format_for(type)));
      pack_tiles(ref, packed.back(), 0, packed.back().tiles);
    }
    const size_t weight_bytes = static_cast<size_t>(packed[0].tiles) * packed[0].tile_bytes;

    std::vector<float> x(static_cast<size_t>(tokens * in)), y(static_cast<size_t>(tokens * out));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) v = normal(rng);
    const bool residual = act != "int8";
    std::vector<int8_t> qs(x.size()), lo(residual ? x.size() : 0);
    std::vector<ActivationBlock> info(static_cast<size_t>(tokens * in / kBlock));
    QuantizedActivations q{tokens, in, in / kBlock, qs.data(), residual ? lo.data() : nullptr, info.data()};

    double best = 1e30, best_read = 1e30;
    for (int r = 0; r < reps; ++r) {
      const PackedMatrix& p = packed[static_cast<size_t>(r % copies)];
      const double t0 = thread_seconds();
      k.quantize(x.data(), 0, tokens, q);
      k.matmul_packed(p, q, 0, tokens, 0, p.tiles, y.data());
      best = std::min(best, thread_seconds() - t0);
      if (copies > 1) {
        const PackedMatrix& other = packed[static_cast<size_t>((r + copies / 2) % copies)];
        const double t1 = thread_seconds();
        plain_read(other.memory.get(), weight_bytes);
        best_read = std::min(best_read, thread_seconds() - t1);
      }
    }
    const double ops = 2.0 * static_cast<double>(in * out * tokens);
    total_ops += ops;
    total_seconds += best;
    std::printf("%s %s %-9s %5lldx%-5lld n=%lld  %8.2f ms  %6.1f GOPS\n", std::string(isa_name(isa)).c_str(), type_arg.c_str(),
                act.c_str(), static_cast<long long>(in), static_cast<long long>(out),
                static_cast<long long>(tokens), best * 1e3, ops / best * 1e-9);
    if (copies > 1)
      std::printf("  from memory: weights %.1f GB/s, a plain read of them %.1f GB/s\n", weight_bytes / best * 1e-9,
                  weight_bytes / best_read * 1e-9);
  }
  std::printf("total %.2f ms  %.1f GOPS\n", total_seconds * 1e3, total_ops / total_seconds * 1e-9);
  return 0;
}
