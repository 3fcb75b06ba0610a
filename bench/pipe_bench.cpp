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
asm(R"asm(
.text
/* n x 12 vpdpbusd chains. */
.macro DPS n
  .irp r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
  vpdpbusd %zmm31, %zmm30, %zmm\r
  .endr
  .if \n >= 2
  .irp r, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23
  vpdpbusd %zmm31, %zmm30, %zmm\r
  .endr
  .endif
.endm
/* `count` (at most 24) times "op sources, destination", the destinations zmm24-zmm29 in turn. */
.macro OTHERS count, op, sources
  .set k, 0
  .irp r, 24, 25, 26, 27, 28, 29, 24, 25, 26, 27, 28, 29, 24, 25, 26, 27, 28, 29, 24, 25, 26, 27, 28, 29
  .if k < \count
  \op \sources, %zmm\r
  .endif
  .set k, k + 1
  .endr
.endm
/* `count` vpbroadcastd of consecutive dwords of the buffer from byte `at`. */
.macro BROADCASTS count, at
  .set k, 0
  .irp r, 24, 25, 26, 27, 28, 29, 24, 25, 26, 27, 28, 29, 24, 25, 26, 27, 28, 29, 24, 25, 26, 27, 28, 29
  .if k < \count
  vpbroadcastd (\at + 4 * k)(%rsi), %zmm\r
  .endif
  .set k, k + 1
  .endr
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
  OTHERS 6, vfmadd231ps, "%zmm30, %zmm31"
END
LOOP orchard_pipe_mul
  DPS 1
  OTHERS 6, vmulps, "%zmm30, %zmm31"
END
LOOP orchard_pipe_add
  DPS 1
  OTHERS 6, vaddps, "%zmm30, %zmm31"
END
LOOP orchard_pipe_scalef
  DPS 1
  OTHERS 6, vscalefps, "%zmm30, %zmm31"
END
LOOP orchard_pipe_mulld
  DPS 1
  OTHERS 6, vpmulld, "%zmm30, %zmm31"
END
LOOP orchard_pipe_cvt
  DPS 1
  OTHERS 6, vcvtdq2ps, "%zmm30"
END
LOOP orchard_pipe_bcast
  DPS 1
  BROADCASTS 6, 0
END
LOOP orchard_pipe_unpack
  DPS 1
  OTHERS 3, vpandd, "64(%rsi), %zmm30"
  OTHERS 3, vpsrld, "$4, 128(%rsi)"
END
LOOP orchard_pipe_move
  DPS 1
  OTHERS 6, vmovdqa64, "%zmm30"
END
LOOP orchard_pipe_embedded_bcast
  .set k, 0
  .irp r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
  vpdpbusd (4 * k)(%rsi){1to16}, %zmm30, %zmm\r
  .set k, k + 1
  .endr
END
/* Per 24 vpdpbusd, a quarter of rows_q4_0<2, 6>'s block: 12 broadcasts, 6 unpacking
   instructions, 3 conversions, 3 multiplies (scale x activation step), 3 FMAs, 1.5 moves (the
   offset start's copies) and 2 broadcasts of activation steps (1.5, and the scales' conversion). */
LOOP orchard_pipe_q4_0_mix
  DPS 2
  BROADCASTS 12, 0
  OTHERS 3, vpandd, "64(%rsi), %zmm30"
  OTHERS 3, vpsrld, "$4, 192(%rsi)"
  OTHERS 3, vcvtdq2ps, "%zmm30"
  OTHERS 3, vmulps, "%zmm30, %zmm31"
  OTHERS 3, vfmadd231ps, "%zmm30, %zmm31"
  OTHERS 2, vmovdqa64, "%zmm30"
  OTHERS 2, vbroadcastss, "48(%rsi)"
END
/* Per 24 vpdpbusd, a quarter of rows_q8_0<1, 12>'s block: 24 broadcasts (one row vector: one
   per vpdpbusd), 3 conversions, 3 multiplies, 3 FMAs. */
LOOP orchard_pipe_q8_0_mix
  DPS 2
  BROADCASTS 24, 0
  OTHERS 3, vcvtdq2ps, "%zmm30"
  OTHERS 3, vmulps, "%zmm30, %zmm31"
  OTHERS 3, vfmadd231ps, "%zmm30, %zmm31"
END
.section .note.GNU-stack,"",@progbits
.text
)asm");

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
