// GFLOP/s of the fast float32 matrix product (Kernels::gemm_f32) on the trainer's shapes, on one
// thread (pool null) and on a pool, with the fraction of the FMA peak: lanes x FMA pipes x 2 x the
// clock /proc/cpuinfo reports (AVX-512 on Zen 5: 16 lanes x 2 pipes x 2 = 64 FLOP per cycle).
// Also measures the FMA peak at the clock the core runs now (it boosts above /proc/cpuinfo's figure).
//
//   g++ -O2 -std=c++20 -Iinclude -Isrc bench/gemm_f32_bench.cpp build/liborchard_{kernels,tensor,base}.a
//     -lpthread -o /tmp/gemm_f32_bench   (one command)
//   /tmp/gemm_f32_bench [--isa avx512] [--threads 2] [--reps 5] [--flop-per-cycle 64] [--shape MxNxK[t|T|tT] ...]
//
// One thread is timed by its CPU time, the pool by the wall clock (best of reps, after a warm-up).
//
// A shape's suffix: t = a_trans (A stored [K, M]), T = b_trans (B stored [N, K]).
#include <time.h>

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

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best of `reps`: on the calling thread alone its CPU time (time spent descheduled by other
// processes does not count), on the pool the wall clock.
double seconds_of(const Kernels& k, const GemmF32& g, ThreadPool* pool, int reps) {
  k.gemm_f32(g, pool);  // warm-up: packing buffers, caches, pool threads
  double (*clock)() = pool ? wall_seconds : thread_seconds;
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = clock();
    k.gemm_f32(g, pool);
    best = std::min(best, clock() - t0);
  }
  return best;
}

#if defined(__x86_64__)
// GFLOP/s of 16 independent FMA chains in registers on this thread: the peak that the clock the
// core runs at now allows (above /proc/cpuinfo's figure when it boosts). The asm keeps each
// chain a register operand and the loop from being folded.
__attribute__((target("avx512f"))) double fma_peak_avx512() {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const int64_t iters = 1000000;
    const double t0 = thread_seconds();
    for (int64_t it = 0; it < iters; ++it)
      asm volatile(
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm0\n vfmadd231ps %%zmm16, %%zmm17, %%zmm1\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm2\n vfmadd231ps %%zmm16, %%zmm17, %%zmm3\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm4\n vfmadd231ps %%zmm16, %%zmm17, %%zmm5\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm6\n vfmadd231ps %%zmm16, %%zmm17, %%zmm7\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm8\n vfmadd231ps %%zmm16, %%zmm17, %%zmm9\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm10\n vfmadd231ps %%zmm16, %%zmm17, %%zmm11\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm12\n vfmadd231ps %%zmm16, %%zmm17, %%zmm13\n"
          "vfmadd231ps %%zmm16, %%zmm17, %%zmm14\n vfmadd231ps %%zmm16, %%zmm17, %%zmm15\n" ::
              : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                "xmm12", "xmm13", "xmm14", "xmm15");
    best = std::max(best, 2.0 * 16 * 16 * static_cast<double>(iters) / (thread_seconds() - t0) * 1e-9);
  }
  return best;
}

__attribute__((target("avx2,fma"))) double fma_peak_avx2() {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const int64_t iters = 1000000;
    const double t0 = thread_seconds();
    for (int64_t it = 0; it < iters; ++it)
      asm volatile(
          "vfmadd231ps %%ymm14, %%ymm15, %%ymm0\n vfmadd231ps %%ymm14, %%ymm15, %%ymm1\n"
          "vfmadd231ps %%ymm14, %%ymm15, %%ymm2\n vfmadd231ps %%ymm14, %%ymm15, %%ymm3\n"
          "vfmadd231ps %%ymm14, %%ymm15, %%ymm4\n vfmadd231ps %%ymm14, %%ymm15, %%ymm5\n"
          "vfmadd231ps %%ymm14, %%ymm15, %%ymm6\n vfmadd231ps %%ymm14, %%ymm15, %%ymm7\n"
          "vfmadd231ps %%ymm14, %%ymm15, %%ymm8\n vfmadd231ps %%ymm14, %%ymm15, %%ymm9\n"
          "vfmadd231ps %%ymm14, %%ymm15, %%ymm10\n vfmadd231ps %%ymm14, %%ymm15, %%ymm11\n" ::
              : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11");
    best = std::max(best, 2.0 * 8 * 12 * static_cast<double>(iters) / (thread_seconds() - t0) * 1e-9);
  }
  return best;
}
#endif

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
  double measured = 0;
#if defined(__x86_64__)
  if (isa == Isa::avx512 || isa == Isa::avx512vnni) measured = fma_peak_avx512();
  if (isa == Isa::avx2) measured = fma_peak_avx2();
#endif
  std::printf("%s, /proc/cpuinfo %.0f MHz x %.0f FLOP/cycle = %.1f GFLOP/s per core; FMA loop measured %.1f GFLOP/s"
              " (%.0f MHz); best of %d\n",
              kernels.name, mhz, flop_per_cycle, peak, measured, measured / flop_per_cycle * 1e3, reps);
  std::printf("%-22s %9s %8s %8s %10s %8s\n", "M x N x K", "1 thread", "nominal", "measured", "threads",
              "nominal");
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
    char of_measured[16] = "-";
    if (measured > 0) std::snprintf(of_measured, sizeof of_measured, "%.0f%%", 100 * one / measured);
    std::printf("%-22s %9.1f %7.0f%% %8s %10.1f %7.0f%% (of %d cores)\n", label, one, 100 * one / peak, of_measured,
                many, 100 * many / (peak * threads), threads);
  }
  return 0;
}
