// The fast float32 matrix product (Kernels::gemm_f32 of every fast table this CPU runs) against
// the scalar reference (double sums): the four transpose cases, with and without accumulate, on
// shapes that are not multiples of any register tile or cache block, with leading dimensions
// wider than the rows, on the calling thread and on a 2-thread pool.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm_f32.h"
#include "kernels/kernels.h"
#include "kernels/thread_pool.h"

namespace orchard {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Problem {
  bool a_trans = false, b_trans = false, accumulate = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t a_pad = 0, b_pad = 0, c_pad = 0;  // leading dimension minus the stored row's length
};

std::string describe(const Problem& p) {
  return "m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) + " k=" + std::to_string(p.k) +
         (p.a_trans ? " a_trans" : "") + (p.b_trans ? " b_trans" : "") + (p.accumulate ? " accumulate" : "") +
         " pads " + std::to_string(p.a_pad) + "," + std::to_string(p.b_pad) + "," + std::to_string(p.c_pad);
}

// Operands in their stored layouts, the gaps between rows (past each leading dimension's row)
// filled with NaN so that a read outside the matrices poisons the result.
struct Operands {
  Problem p;
  std::vector<float> a, b, c0;
  int64_t lda, ldb, ldc;

  Operands(const Problem& problem, std::mt19937& rng) : p(problem) {
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    const int64_t a_rows = p.a_trans ? p.k : p.m, a_cols = p.a_trans ? p.m : p.k;
    const int64_t b_rows = p.b_trans ? p.n : p.k, b_cols = p.b_trans ? p.k : p.n;
    lda = a_cols + p.a_pad, ldb = b_cols + p.b_pad, ldc = p.n + p.c_pad;
    auto fill = [&](std::vector<float>& v, int64_t rows, int64_t cols, int64_t ld, bool random) {
      v.assign(static_cast<size_t>(rows * ld), kNaN);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * ld + c)] = random ? value(rng) : kNaN;
    };
    fill(a, a_rows, a_cols, lda, true);
    fill(b, b_rows, b_cols, ldb, true);
    // Without accumulate C's old values must not be read: NaN there would show.
    fill(c0, p.m, p.n, ldc, p.accumulate);
    for (int64_t r = 0; r < p.m; ++r)  // the gaps of C get a finite sentinel, checked unchanged
      for (int64_t c = p.n; c < ldc; ++c) c0[static_cast<size_t>(r * ldc + c)] = 1234.5f;
  }

  GemmF32 gemm(float* c) const {
    GemmF32 g;
    g.a_trans = p.a_trans, g.b_trans = p.b_trans, g.accumulate = p.accumulate;
    g.m = p.m, g.n = p.n, g.k = p.k;
    g.a = a.data(), g.lda = lda, g.b = b.data(), g.ldb = ldb, g.c = c, g.ldc = ldc;
    return g;
  }

  float op_a(int64_t i, int64_t q) const { return p.a_trans ? a[q * lda + i] : a[i * lda + q]; }
  float op_b(int64_t q, int64_t j) const { return p.b_trans ? b[j * ldb + q] : b[q * ldb + j]; }

  // The bound on float32 rounding for element (i, j): relative to the sum of the products'
  // magnitudes (and of the C it adds to), independent of the order the kernel sums in.
  float tolerance(int64_t i, int64_t j) const {
    double magnitude = p.accumulate ? std::fabs(c0[static_cast<size_t>(i * ldc + j)]) : 0.0;
    for (int64_t q = 0; q < p.k; ++q) magnitude += std::fabs(static_cast<double>(op_a(i, q)) * op_b(q, j));
    return static_cast<float>(1e-5 * magnitude + 1e-30);
  }
};

ThreadPool& two_threads() {
  static ThreadPool pool(2);
  return pool;
}

// Every fast path (each ISA's table, and gemm_f32_fast's dispatch) on the calling thread and on the pool.
struct Path {
  std::string name;
  void (*gemm)(const GemmF32&, ThreadPool*);
  ThreadPool* pool;
};

std::vector<Path> fast_paths() {
  std::vector<Path> paths;
  for (Isa isa : supported_isas()) {
    const Kernels& k = fast_kernels(isa);
    paths.push_back({std::string(k.name) + " pool null", k.gemm_f32, nullptr});
    paths.push_back({std::string(k.name) + " 2 threads", k.gemm_f32, &two_threads()});
  }
  paths.push_back({"gemm_f32_fast 2 threads", gemm_f32_fast, &two_threads()});
  return paths;
}

void check(const Problem& problem, std::mt19937& rng) {
  SCOPED_TRACE(describe(problem));
  const Operands ops(problem, rng);
  std::vector<float> expected = ops.c0;
  reference_kernels().gemm_f32(ops.gemm(expected.data()), nullptr);
  std::vector<float> bound(expected.size());
  for (int64_t i = 0; i < problem.m; ++i)
    for (int64_t j = 0; j < problem.n; ++j) bound[static_cast<size_t>(i * ops.ldc + j)] = ops.tolerance(i, j);
  for (const Path& path : fast_paths()) {
    SCOPED_TRACE(path.name);
    std::vector<float> c = ops.c0;
    path.gemm(ops.gemm(c.data()), path.pool);
    int failures = 0;
    for (int64_t i = 0; i < problem.m && failures < 5; ++i)
      for (int64_t j = 0; j < ops.ldc && failures < 5; ++j) {
        const size_t at = static_cast<size_t>(i * ops.ldc + j);
        if (j >= problem.n) {
          if (c[at] != 1234.5f) ++failures, ADD_FAILURE() << "C outside the window changed at " << i << "," << j;
        } else if (!(std::fabs(c[at] - expected[at]) <= bound[at])) {
          ++failures;
          ADD_FAILURE() << "C[" << i << "][" << j << "] = " << c[at] << ", reference " << expected[at] << " +- "
                        << bound[at];
        }
      }
  }
}

constexpr int64_t kSizes[] = {1, 2, 3, 7, 17, 31, 33, 65, 130, 257};

TEST(GemmF32, AwkwardShapesEveryTransposeAndAccumulate) {
  std::mt19937 rng(17);
  for (int variant = 0; variant < 8; ++variant) {
    const bool a_trans = variant & 1, b_trans = variant & 2, accumulate = variant & 4;
    // Each size as M, N and K once, paired with sizes from the rest of the list, so that every
    // dimension meets 1, primes and sizes past a tile or a block.
    for (int s = 0; s < 10; ++s) {
      Problem p{a_trans, b_trans, accumulate, kSizes[s], kSizes[(s + 3 + variant) % 10], kSizes[(s + 7) % 10]};
      // Leading dimensions wider than the rows on every other shape.
      if (s % 2 == 1) p.a_pad = 3, p.b_pad = 5, p.c_pad = 2;
      check(p, rng);
    }
  }
}

TEST(GemmF32, PoolSplitsRowsOrColumns) {
  std::mt19937 rng(18);
  // Few rows and many columns (split by columns), the reverse, and one row or column alone.
  for (const Problem& p : {Problem{false, true, false, 7, 520, 257, 0, 0, 3}, Problem{true, false, true, 520, 7, 257},
                           Problem{false, false, false, 1, 1031, 300, 1},
                           Problem{true, true, true, 1031, 1, 300, 2, 3, 1},
                           Problem{false, true, true, 33, 257, 65, 0, 1, 0}})
    check(p, rng);
}

TEST(GemmF32, FourThreadsInAGrid) {
  // Four threads split rows and columns (a 2 x 2 grid on square products), or one side only.
  static ThreadPool four(4);
  std::mt19937 rng(21);
  for (const Problem& p : {Problem{false, true, false, 130, 257, 65, 1, 2, 3}, Problem{true, false, true, 257, 130, 33},
                           Problem{false, false, true, 7, 1031, 65}, Problem{true, true, false, 1031, 3, 65}}) {
    SCOPED_TRACE(describe(p));
    const Operands ops(p, rng);
    std::vector<float> expected = ops.c0, c = ops.c0;
    reference_kernels().gemm_f32(ops.gemm(expected.data()), nullptr);
    for (Isa isa : supported_isas()) {
      SCOPED_TRACE(isa_name(isa));
      c = ops.c0;
      fast_kernels(isa).gemm_f32(ops.gemm(c.data()), &four);
      int64_t wrong = 0;
      for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < ops.ldc; ++j) {
          const size_t at = static_cast<size_t>(i * ops.ldc + j);
          if (j >= p.n ? c[at] != 1234.5f : !(std::fabs(c[at] - expected[at]) <= ops.tolerance(i, j))) ++wrong;
        }
      EXPECT_EQ(wrong, 0);
    }
  }
}

TEST(GemmF32, CrossesCacheBlocks) {
  std::mt19937 rng(19);
  // Past the row block (kMc), several K blocks, many panels; all four transpose cases.
  for (int variant = 0; variant < 4; ++variant)
    check(Problem{(variant & 1) != 0, (variant & 2) != 0, variant == 3, 300, 520, 700, variant, 2 * variant, 1}, rng);
  // Wider than a column block (kNc) on either thread's half.
  check(Problem{false, true, true, 40, 2100, 200, 1, 0, 3}, rng);
}

TEST(GemmF32, AttentionShapeWithStridedOperands) {
  std::mt19937 rng(20);
  // Scores q k^T and the product with v of one head, reading a head's 64 columns of rows 896 wide.
  check(Problem{false, true, false, 256, 256, 64, 896 - 64, 896 - 64, 0}, rng);
  check(Problem{false, false, true, 256, 64, 256, 0, 896 - 64, 896 - 64}, rng);
}

TEST(GemmF32, EmptySumClearsOrKeeps) {
  for (const Path& path : fast_paths()) {
    SCOPED_TRACE(path.name);
    std::vector<float> c = {kNaN, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    GemmF32 g;
    g.m = 2, g.n = 2, g.k = 0, g.ldc = 3, g.c = c.data(), g.lda = 1, g.ldb = 2;
    path.gemm(g, path.pool);
    EXPECT_EQ(c, (std::vector<float>{0.0f, 0.0f, 3.0f, 0.0f, 0.0f, 6.0f}));
    c = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    g.accumulate = true;
    path.gemm(g, path.pool);
    EXPECT_EQ(c, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}));
  }
}

TEST(GemmF32, NaNInAReachesC) {
  for (const bool a_trans : {false, true}) {
    const int64_t m = 40, n = 70, k = 300;
    std::vector<float> a(static_cast<size_t>(m * k), 0.5f), b(static_cast<size_t>(k * n), 0.25f);
    // Element (row 13, step 250): past the first K block and inside a middle register tile.
    a[static_cast<size_t>(a_trans ? 250 * m + 13 : 13 * k + 250)] = kNaN;
    for (const Path& path : fast_paths()) {
      SCOPED_TRACE(path.name + (a_trans ? " a_trans" : ""));
      std::vector<float> c(static_cast<size_t>(m * n), 0.0f);
      GemmF32 g;
      g.a_trans = a_trans, g.m = m, g.n = n, g.k = k, g.a = a.data(), g.lda = a_trans ? m : k;
      g.b = b.data(), g.ldb = n, g.c = c.data(), g.ldc = n;
      path.gemm(g, path.pool);
      int64_t wrong = 0, first = -1;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const float v = c[static_cast<size_t>(i * n + j)];
          // Row 13 sums the NaN; every other element is 300 products of 0.125, exact in float.
          if (i == 13 ? !std::isnan(v) : v != 0.125f * k) wrong += 1, first = first < 0 ? i * n + j : first;
        }
      EXPECT_EQ(wrong, 0) << "first wrong element: row " << first / n << ", column " << first % n;
    }
  }
}

}  // namespace
}  // namespace orchard
