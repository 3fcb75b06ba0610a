// What a core's vector pipes give an int8 matmul: vpdpbusd alone, and beside the other
// instructions a packed micro-kernel issues (broadcasts, unpacking, conversion, the float
// epilogue), in loops of independent chains written in assembly so that no compiler copy or
// spill enters the count. x86-64 with AVX-512 VNNI only; one thread, thread CPU time.
//
//   g++ -O2 bench/pipe_bench.cpp -o /tmp/pipe_bench && /tmp/pipe_bench
//
// Each line: vpdpbusd per ns (x 128 = int8 ops per ns) and all vector instructions per ns. An
// instruction that runs on pipes vpdpbusd does not use leaves the first figure at the peak; one
// that shares them lowers it. The last lines replay the instruction mix of the Q4_0 and Q8_0
// micro-kernels (rows_q4_0 <2 row vectors, 6 tokens> and rows_q8_0 <1, 12>, per 32-input block,
// as GCC compiles them): their ceiling when nothing waits on memory, a dependency or a branch.
#include <time.h>

#include <cstdio>

namespace {

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

// Every loop: rdi iterations, rsi a 4 KiB buffer for the memory operands; 12 or 24 vpdpbusd
// chains in zmm0-zmm23, the other instructions writing zmm24-zmm29, sources zmm30/zmm31.
asm(R"(
.text
.macro DPS n
  .if \n >= 1
  vpdpbusd %zmm31, %zmm30, %zmm0
  vpdpbusd %zmm31, %zmm30, %zmm1
  vpdpbusd %zmm31, %zmm30, %zmm2
  vpdpbusd %zmm31, %zmm30, %zmm3
  vpdpbusd %zmm31, %zmm30, %zmm4
  vpdpbusd %zmm31, %zmm30, %zmm5
  vpdpbusd %zmm31, %zmm30, %zmm6
  vpdpbusd %zmm31, %zmm30, %zmm7
  vpdpbusd %zmm31, %zmm30, %zmm8
  vpdpbusd %zmm31, %zmm30, %zmm9
  vpdpbusd %zmm31, %zmm30, %zmm10
  vpdpbusd %zmm31, %zmm30, %zmm11
  .endif
  .if \n >= 2
  vpdpbusd %zmm31, %zmm30, %zmm12
  vpdpbusd %zmm31, %zmm30, %zmm13
  vpdpbusd %zmm31, %zmm30, %zmm14
  vpdpbusd %zmm31, %zmm30, %zmm15
  vpdpbusd %zmm31, %zmm30, %zmm16
  vpdpbusd %zmm31, %zmm30, %zmm17
  vpdpbusd %zmm31, %zmm30, %zmm18
  vpdpbusd %zmm31, %zmm30, %zmm19
  vpdpbusd %zmm31, %zmm30, %zmm20
  vpdpbusd %zmm31, %zmm30, %zmm21
  vpdpbusd %zmm31, %zmm30, %zmm22
  vpdpbusd %zmm31, %zmm30, %zmm23
  .endif
.endm
.macro LOOP name
  .globl \name
  \name:
  1:
.endm
.macro END
  dec %rdi
  jnz 1b
  ret
.endm

LOOP orchard_pipe_dp12
  DPS 1
END
LOOP orchard_pipe_dp24
  DPS 2
END
LOOP orchard_pipe_fma
  DPS 1
  vfmadd231ps %zmm30, %zmm31, %zmm24
  vfmadd231ps %zmm30, %zmm31, %zmm25
  vfmadd231ps %zmm30, %zmm31, %zmm26
  vfmadd231ps %zmm30, %zmm31, %zmm27
  vfmadd231ps %zmm30, %zmm31, %zmm28
  vfmadd231ps %zmm30, %zmm31, %zmm29
END
LOOP orchard_pipe_mul
  DPS 1
  vmulps %zmm30, %zmm31, %zmm24
  vmulps %zmm30, %zmm31, %zmm25
  vmulps %zmm30, %zmm31, %zmm26
  vmulps %zmm30, %zmm31, %zmm27
  vmulps %zmm30, %zmm31, %zmm28
  vmulps %zmm30, %zmm31, %zmm29
END
LOOP orchard_pipe_add
  DPS 1
  vaddps %zmm30, %zmm31, %zmm24
  vaddps %zmm30, %zmm31, %zmm25
  vaddps %zmm30, %zmm31, %zmm26
  vaddps %zmm30, %zmm31, %zmm27
  vaddps %zmm30, %zmm31, %zmm28
  vaddps %zmm30, %zmm31, %zmm29
END
LOOP orchard_pipe_scalef
  DPS 1
  vscalefps %zmm30, %zmm31, %zmm24
  vscalefps %zmm30, %zmm31, %zmm25
  vscalefps %zmm30, %zmm31, %zmm26
  vscalefps %zmm30, %zmm31, %zmm27
  vscalefps %zmm30, %zmm31, %zmm28
  vscalefps %zmm30, %zmm31, %zmm29
END
LOOP orchard_pipe_mulld
  DPS 1
  vpmulld %zmm30, %zmm31, %zmm24
  vpmulld %zmm30, %zmm31, %zmm25
  vpmulld %zmm30, %zmm31, %zmm26
  vpmulld %zmm30, %zmm31, %zmm27
  vpmulld %zmm30, %zmm31, %zmm28
  vpmulld %zmm30, %zmm31, %zmm29
END
LOOP orchard_pipe_cvt
  DPS 1
  vcvtdq2ps %zmm30, %zmm24
  vcvtdq2ps %zmm30, %zmm25
  vcvtdq2ps %zmm30, %zmm26
  vcvtdq2ps %zmm30, %zmm27
  vcvtdq2ps %zmm30, %zmm28
  vcvtdq2ps %zmm30, %zmm29
END
LOOP orchard_pipe_bcast
  DPS 1
  vpbroadcastd 0(%rsi), %zmm24
  vpbroadcastd 4(%rsi), %zmm25
  vpbroadcastd 8(%rsi), %zmm26
  vpbroadcastd 12(%rsi), %zmm27
  vpbroadcastd 16(%rsi), %zmm28
  vpbroadcastd 20(%rsi), %zmm29
END
LOOP orchard_pipe_unpack
  DPS 1
  vpandd 0(%rsi), %zmm30, %zmm24
  vpandd 64(%rsi), %zmm30, %zmm25
  vpandd 128(%rsi), %zmm30, %zmm26
  vpsrld $4, 192(%rsi), %zmm27
  vpsrld $4, 256(%rsi), %zmm28
  vpandd %zmm30, %zmm27, %zmm29
END
LOOP orchard_pipe_move
  DPS 1
  vmovdqa64 %zmm30, %zmm24
  vmovdqa64 %zmm30, %zmm25
  vmovdqa64 %zmm30, %zmm26
  vmovdqa64 %zmm30, %zmm27
  vmovdqa64 %zmm30, %zmm28
  vmovdqa64 %zmm30, %zmm29
END
LOOP orchard_pipe_embedded_bcast
  vpdpbusd 0(%rsi){1to16}, %zmm30, %zmm0
  vpdpbusd 4(%rsi){1to16}, %zmm30, %zmm1
  vpdpbusd 8(%rsi){1to16}, %zmm30, %zmm2
  vpdpbusd 12(%rsi){1to16}, %zmm30, %zmm3
  vpdpbusd 16(%rsi){1to16}, %zmm30, %zmm4
  vpdpbusd 20(%rsi){1to16}, %zmm30, %zmm5
  vpdpbusd 24(%rsi){1to16}, %zmm30, %zmm6
  vpdpbusd 28(%rsi){1to16}, %zmm30, %zmm7
  vpdpbusd 32(%rsi){1to16}, %zmm30, %zmm8
  vpdpbusd 36(%rsi){1to16}, %zmm30, %zmm9
  vpdpbusd 40(%rsi){1to16}, %zmm30, %zmm10
  vpdpbusd 44(%rsi){1to16}, %zmm30, %zmm11
END
// Per 24 vpdpbusd, a quarter of rows_q4_0<2, 6>'s block: 12 broadcasts, 6 unpacking
// instructions, 3 conversions, 3 multiplies (scale x activation step), 3 FMAs, 1.5 moves (the
// offset start's copies) and 2 broadcasts
// of activation steps (1.5, and the scales' conversion).
LOOP orchard_pipe_q4_0_mix
  DPS 2
  vpbroadcastd 0(%rsi), %zmm24
  vpbroadcastd 4(%rsi), %zmm25
  vpbroadcastd 8(%rsi), %zmm26
  vpbroadcastd 12(%rsi), %zmm27
  vpbroadcastd 16(%rsi), %zmm28
  vpbroadcastd 20(%rsi), %zmm29
  vpbroadcastd 24(%rsi), %zmm24
  vpbroadcastd 28(%rsi), %zmm25
  vpbroadcastd 32(%rsi), %zmm26
  vpbroadcastd 36(%rsi), %zmm27
  vpbroadcastd 40(%rsi), %zmm28
  vpbroadcastd 44(%rsi), %zmm29
  vpandd 64(%rsi), %zmm30, %zmm24
  vpandd 128(%rsi), %zmm30, %zmm25
  vpsrld $4, 192(%rsi), %zmm26
  vpsrld $4, 256(%rsi), %zmm27
  vpandd %zmm30, %zmm26, %zmm28
  vpandd %zmm30, %zmm27, %zmm29
  vcvtdq2ps %zmm30, %zmm24
  vcvtdq2ps %zmm30, %zmm25
  vcvtdq2ps %zmm30, %zmm26
  vmulps %zmm30, %zmm31, %zmm27
  vmulps %zmm30, %zmm31, %zmm28
  vmulps %zmm30, %zmm31, %zmm29
  vfmadd231ps %zmm30, %zmm31, %zmm24
  vfmadd231ps %zmm30, %zmm31, %zmm25
  vfmadd231ps %zmm30, %zmm31, %zmm26
  vmovdqa64 %zmm30, %zmm27
  vmovdqa64 %zmm30, %zmm28
  vbroadcastss 48(%rsi), %zmm29
  vbroadcastss 52(%rsi), %zmm24
END
// Per 24 vpdpbusd, a quarter of rows_q8_0<1, 12>'s block: 24 broadcasts (one row vector: one
// per vpdpbusd), 3 conversions, 3 multiplies, 3 FMAs.
LOOP orchard_pipe_q8_0_mix
  DPS 2
  vpbroadcastd 0(%rsi), %zmm24
  vpbroadcastd 4(%rsi), %zmm25
  vpbroadcastd 8(%rsi), %zmm26
  vpbroadcastd 12(%rsi), %zmm27
  vpbroadcastd 16(%rsi), %zmm28
  vpbroadcastd 20(%rsi), %zmm29
  vpbroadcastd 24(%rsi), %zmm24
  vpbroadcastd 28(%rsi), %zmm25
  vpbroadcastd 32(%rsi), %zmm26
  vpbroadcastd 36(%rsi), %zmm27
  vpbroadcastd 40(%rsi), %zmm28
  vpbroadcastd 44(%rsi), %zmm29
  vpbroadcastd 48(%rsi), %zmm24
  vpbroadcastd 52(%rsi), %zmm25
  vpbroadcastd 56(%rsi), %zmm26
  vpbroadcastd 60(%rsi), %zmm27
  vpbroadcastd 64(%rsi), %zmm28
  vpbroadcastd 68(%rsi), %zmm29
  vpbroadcastd 72(%rsi), %zmm24
  vpbroadcastd 76(%rsi), %zmm25
  vpbroadcastd 80(%rsi), %zmm26
  vpbroadcastd 84(%rsi), %zmm27
  vpbroadcastd 88(%rsi), %zmm28
  vpbroadcastd 92(%rsi), %zmm29
  vcvtdq2ps %zmm30, %zmm24
  vcvtdq2ps %zmm30, %zmm25
  vcvtdq2ps %zmm30, %zmm26
  vmulps %zmm30, %zmm31, %zmm27
  vmulps %zmm30, %zmm31, %zmm28
  vmulps %zmm30, %zmm31, %zmm29
  vfmadd231ps %zmm30, %zmm31, %zmm24
  vfmadd231ps %zmm30, %zmm31, %zmm25
  vfmadd231ps %zmm30, %zmm31, %zmm26
END
.section .note.GNU-stack,"",@progbits
.text
)");

extern "C" {
void orchard_pipe_dp12(long iterations, const void* buffer);
void orchard_pipe_dp24(long iterations, const void* buffer);
void orchard_pipe_fma(long iterations, const void* buffer);
void orchard_pipe_mul(long iterations, const void* buffer);
void orchard_pipe_add(long iterations, const void* buffer);
void orchard_pipe_scalef(long iterations, const void* buffer);
void orchard_pipe_mulld(long iterations, const void* buffer);
void orchard_pipe_cvt(long iterations, const void* buffer);
void orchard_pipe_bcast(long iterations, const void* buffer);
void orchard_pipe_unpack(long iterations, const void* buffer);
void orchard_pipe_move(long iterations, const void* buffer);
void orchard_pipe_embedded_bcast(long iterations, const void* buffer);
void orchard_pipe_q4_0_mix(long iterations, const void* buffer);
void orchard_pipe_q8_0_mix(long iterations, const void* buffer);
}

int main() {
  alignas(64) static unsigned char buffer[4096] = {};
  struct Loop {
    const char* name;
    void (*run)(long, const void*);
    int dpbusd, vector;  // instructions per iteration
  };
  const Loop loops[] = {
      {"12 vpdpbusd chains", orchard_pipe_dp12, 12, 12},
      {"24 vpdpbusd chains", orchard_pipe_dp24, 24, 24},
      {"12 vpdpbusd + 6 vfmadd231ps", orchard_pipe_fma, 12, 18},
      {"12 vpdpbusd + 6 vmulps", orchard_pipe_mul, 12, 18},
      {"12 vpdpbusd + 6 vaddps", orchard_pipe_add, 12, 18},
      {"12 vpdpbusd + 6 vscalefps", orchard_pipe_scalef, 12, 18},
      {"12 vpdpbusd + 6 vpmulld", orchard_pipe_mulld, 12, 18},
      {"12 vpdpbusd + 6 vcvtdq2ps", orchard_pipe_cvt, 12, 18},
      {"12 vpdpbusd + 6 vpbroadcastd m32", orchard_pipe_bcast, 12, 18},
      {"12 vpdpbusd + 6 vpandd/vpsrld (m512)", orchard_pipe_unpack, 12, 18},
      {"12 vpdpbusd + 6 vmovdqa64 reg", orchard_pipe_move, 12, 18},
      {"12 vpdpbusd m32{1to16}", orchard_pipe_embedded_bcast, 12, 12},
      {"Q4_0 <2, 6> mix (24 : 31 others)", orchard_pipe_q4_0_mix, 24, 55},
      {"Q8_0 <1, 12> mix (24 : 33 others)", orchard_pipe_q8_0_mix, 24, 57},
  };
  constexpr long kIterations = 20'000'000;
  std::printf("%-40s %14s %16s %12s\n", "loop", "vpdpbusd/ns", "int8 GOPS", "vector/ns");
  for (const Loop& loop : loops) {
    double best = 1e30;
    for (int r = 0; r < 5; ++r) {
      const double t0 = thread_seconds();
      loop.run(kIterations, buffer);
      const double t = thread_seconds() - t0;
      if (t < best) best = t;
    }
    const double per_ns = static_cast<double>(kIterations) / best * 1e-9;
    std::printf("%-40s %14.2f %16.1f %12.2f\n", loop.name, per_ns * loop.dpbusd, per_ns * loop.dpbusd * 128,
                per_ns * loop.vector);
  }
  return 0;
}
