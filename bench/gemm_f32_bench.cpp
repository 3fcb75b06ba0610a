// GFLOP/s of the fast float32 matrix product (Kernels::gemm_f32) on the trainer's shapes, on one
// thread (pool null) and on a pool, with the fraction of the FMA peak: lanes x FMA pipes x 2 x the
// clock /proc/cpuinfo reports (AVX-512 on Zen 5: 16 lanes x 2 pipes x 2 = 64 FLOP per cycle).
// Best of --reps wall-clock runs after one warm-up, so that a shared machine disturbs it less.
//
//   g++ -O2 -std=c++20 -Iinclude -Isrc bench/gemm_f32_bench.cpp build/liborchard_{kernels,tensor,base}.a \
//     -lpthread -o /tmp/gemm_f32_bench
//   /tmp/gemm_f32_bench [--isa avx512] [--threads 2] [--reps 5] [--flop-per-cycle 64] [--shape MxNxK[t|T|tT] ...]
//
// A shape's suffix: t = a_trans (A stored [K, M]), T = b_trans (B stored [N, K]).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/thread_pool.h"

using namespace orchard;

namespace {

struct Shape {
  int64_t m, n, k;
  bool a_trans = false, b_trans = false;
};

Shape parse_shape(const char* s) {
  Shape sh{};
  char suffix[8] = {};
  long long m = 0, n = 0, k = 0;
  if (std::sscanf(s, "%lldx%lldx%lld%7s", &m, &n, &k, suffix) < 3) {
    std::fprintf(stderr, "bad --shape %s (MxNxK with an optional t / T suffix)\n", s);
    std::exit(2);
  }
  sh.m = m, sh.n = n, sh.k = k;
  sh.a_trans = std::strchr(suffix, 't') != nullptr;
  sh.b_trans = std::strchr(suffix, 'T') != nullptr;
  return sh;
}

double cpu_mhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("cpu MHz", 0) == 0) return std::stod(line.substr(line.find(':') + 1));
  return 0;
}

double seconds_of(const Kernels& k, const GemmF32& g, ThreadPool* pool, int reps) {
  k.gemm_f32(g, pool);  // warm-up: packing buffers, caches, pool threads
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    k.gemm_f32(g, pool);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  Isa isa = selected_isa();
  int threads = 2, reps = 5;
  double flop_per_cycle = 0;
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--isa" && v) {
      const auto parsed = parse_isa(v);
      if (!parsed) return std::fprintf(stderr, "unknown --isa %s\n", v), 2;
      isa = *parsed, ++i;
    } else if (a == "--threads" && v) {
      threads = std::atoi(v), ++i;
    } else if (a == "--reps" && v) {
      reps = std::atoi(v), ++i;
    } else if (a == "--flop-per-cycle" && v) {
      flop_per_cycle = std::atof(v), ++i;
    } else if (a == "--shape" && v) {
      shapes.push_back(parse_shape(v)), ++i;
    } else {
      return std::fprintf(stderr, "unknown argument %s\n", a.c_str()), 2;
    }
  }
  if (shapes.empty()) shapes = {{512, 896, 896, false, true}, {512, 4864, 896, false, true},
                                {896, 896, 512, true, false}, {512, 896, 4864, false, true}};
  if (flop_per_cycle == 0) {
    const bool wide = isa == Isa::avx512 || isa == Isa::avx512vnni;
    flop_per_cycle = isa == Isa::avx2 ? 32 : wide ? 64 : 16;  // 2 FMA pipes x lanes x 2
  }
  const Kernels& kernels = fast_kernels(isa);
  const double mhz = cpu_mhz(), peak = flop_per_cycle * mhz * 1e-3;  // GFLOP/s of one core
  ThreadPool pool(threads);
  std::printf("%s, clock %.0f MHz, peak %.1f GFLOP/s per core (%.0f FLOP/cycle), best of %d\n", kernels.name, mhz,
              peak, flop_per_cycle, reps);
  std::printf("%-22s %10s %8s %10s %8s\n", "M x N x K", "1 thread", "of peak", "threads", "of peak");
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (const Shape& s : shapes) {
    std::vector<float> a(static_cast<size_t>(s.m * s.k)), b(static_cast<size_t>(s.k * s.n)),
        c(static_cast<size_t>(s.m * s.n));
    for (float& x : a) x = value(rng);
    for (float& x : b) x = value(rng);
    GemmF32 g;
    g.a_trans = s.a_trans, g.b_trans = s.b_trans;
    g.m = s.m, g.n = s.n, g.k = s.k;
    g.a = a.data(), g.lda = s.a_trans ? s.m : s.k;
    g.b = b.data(), g.ldb = s.b_trans ? s.k : s.n;
    g.c = c.data(), g.ldc = s.n;
    const double flop = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
    const double one = flop / seconds_of(kernels, g, nullptr, reps) * 1e-9;
    const double many = flop / seconds_of(kernels, g, &pool, reps) * 1e-9;
    char label[64];
    std::snprintf(label, sizeof label, "%lldx%lldx%lld%s%s", static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), s.a_trans ? " a_t" : "",
                  s.b_trans ? " b_t" : "");
    std::printf("%-22s %10.1f %7.0f%% %10.1f %7.0f%% (of %d cores)\n", label, one, 100 * one / peak, many,
                100 * many / (peak * threads), threads);
  }
  return 0;
}
