// Part of _loops.cpp, one translation unit: the BLAS, the loops' threads and the own register-blocked kernel of the recurrent products.
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

// ---------------------------------------------------------------------------------------------
// BLAS (Fortran interface, column-major) and row-major helpers
// ---------------------------------------------------------------------------------------------
extern "C" {
typedef void (*sgemm_fn)(const char*, const char*, const int*, const int*, const int*,
                         const float*, const float*, const int*, const float*, const int*,
                         const float*, float*, const int*);
typedef void (*dgemm_fn)(const char*, const char*, const int*, const int*, const int*,
                         const double*, const double*, const int*, const double*, const int*,
                         const double*, double*, const int*);
}

static sgemm_fn g_sgemm = nullptr;
static dgemm_fn g_dgemm = nullptr;

extern "C" void rnnkit_set_blas(void* sgemm, void* dgemm) {
    g_sgemm = reinterpret_cast<sgemm_fn>(sgemm);
    g_dgemm = reinterpret_cast<dgemm_fn>(dgemm);
}

static void gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
    g_sgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

static void gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) {
    g_dgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// Threads for the current call (set from the geometry block). The recurrent products have few
// rows (the batch) against a W_hh that is read again at every step, so the loops split W's
// output columns over the threads themselves, each running the BLAS on one thread: every core
// then reads only its own slice of W_hh, which stays in that core's cache from step to step.
// Measured on 2 threads against the BLAS's own threading (torch's MKL), time of the loops: about
// 0.85 at B = 32, 0.9 at B = 64 and 0.93 at B = 128 for H = 256 and 512, every cell. Above
// g_split_rows rows (not measured) the BLAS threads the product itself.
static thread_local int t_threads = 1;
static i64 g_split_rows = 256;  // set from native.SPLIT_ROWS at load

// For measurements: the most rows a column-split product may have (0: never split).
extern "C" void rnnkit_set_split_rows(long long rows) { g_split_rows = rows; }

static bool split_columns(i64 m, i64 n, i64 k) {
    return t_threads > 1 && m <= g_split_rows && n >= 64 && n * k >= (i64(1) << 16);
}

// product(lo, hi) computes output columns lo..hi-1 of an (m, n) product over k; run once for
// all columns, or in column blocks over the threads (see split_columns).
template <typename F>
static void by_columns(i64 m, i64 n, i64 k, F product) {
    if (!split_columns(m, n, k)) {
        product(0, n);
        return;
    }
#pragma omp parallel num_threads(t_threads)
    {
        const i64 nt = omp_get_num_threads(), t = omp_get_thread_num();
        const i64 lo = n * t / nt, hi = n * (t + 1) / nt;
        if (hi > lo) product(lo, hi);
    }
}

// Sweeps that turn back. A product on a few rows reads its whole slice of W_hh for little
// arithmetic. When the slice is larger than the core's L2 cache (NAS at H = 512 on 2 threads:
// 4 MiB a core, against 2 MiB of L2 on the Intel Xeon), a sweep in the same order at every step
// misses the L2 on every line, since the lines it reads first are the ones the step before
// evicted first, and the step waits on L3. So the own kernel reads every other step's panels
// from the last to the first (t_back, set by step_mm from the step's parity): that sweep starts
// on the lines the step before read last, still in the L2. The order changes no value: each
// output column is the same sum, whichever panel comes first.
// (python benchmarks/turn_back.py: time with the sweeps turning back over the same steps
// without, one process, taking turns)
static int g_turn_back = 1;
static thread_local bool t_back = false;

// For measurements and tests: whether every other step's products read their panels from the
// far end (1, the default) or all from the first (0).
extern "C" void rnnkit_set_turn_back(int on) { g_turn_back = on; }
extern "C" int rnnkit_turn_back() { return g_turn_back; }

// Calls of one row (B = 1) take the own kernel too (g_one_row), and split a product's columns
// over the threads from ONE_ROW_SPLIT multiply-adds, as the BLAS path does (split_columns):
// a product on one row reads a value of W for every multiply-add, so it is worth two cores'
// caches and bandwidth well before its arithmetic is. They kept the BLAS's matrix-vector
// product before; its calls cost more than the product at small H, and read all of W from the
// same end at every step at large H. Training steps at B = 1, T = 100, own kernel over the BLAS
// (Intel Xeon, 2 threads; docs/benchmarks.md, "Sweeps that turn back"): 0.67-0.93 at H = 64,
// 0.66-0.89 at H = 128, 0.77-0.90 at H = 256, 0.69-0.88 at H = 512, every loop cell measured.
// Split by the multiply-adds of the rows (below 2^19 with AVX-512), Elman and MUT1 at H = 512
// kept 1 MiB of W on one core and took 1.2 and 1.4 times the BLAS's time.
static int g_one_row = 1;
static constexpr i64 ONE_ROW_SPLIT = i64(1) << 16;

// For measurements: whether calls of one row take the own kernel (1, the default) or the BLAS.
extern "C" void rnnkit_set_one_row(int on) { g_one_row = on; }
extern "C" int rnnkit_one_row() { return g_one_row; }

// For measurements and tests: whether the own kernel's products of 1 to 3 rows take several
// panels of W at a time (1, the default; micro_panels) or one (0).
static int g_few_rows = 1;
extern "C" void rnnkit_set_few_rows(int on) { g_few_rows = on; }
extern "C" int rnnkit_few_rows() { return g_few_rows; }

// ---------------------------------------------------------------------------------------------
// The recurrent products on few rows: rnnkit's own register-blocked kernel (AVX2 + FMA, AVX-512)
// ---------------------------------------------------------------------------------------------
// The BLAS is slow exactly where the loops need it: a product of a few rows (the batch) against
// W_hh, once per step, from two threads at a time, each on its half of the output columns. Two
// threads of torch's MKL then take almost as long per step as one thread over all the columns,
// and each call pays a cost that does not shrink with the rows
// (python benchmarks/rnn_products.py, "loops"). This kernel keeps MR rows by 2 vectors of output
// columns in registers (MR = 6 with AVX2's 16 vector registers, 12 with AVX-512's 32):
//   * W is packed once per call, each thread its own output columns, in panels of PW = 2 vectors
//     of columns laid out k-major (packed_columns), which every step of the call reuses;
//   * each step streams a panel once per block of MR rows, from the core's own cache.
// With AVX-512 the BLAS (MKL) has fast kernels of its own for more rows, so there the own kernel
// takes the products of up to 48 rows only (native.OWN_MAX_ROWS).
// Each output is the sum over kk = 0..k-1 in order, so a row of the product does not depend on
// the other rows, the thread count or the split of the columns.
#if defined(__AVX2__) && defined(__FMA__)
#define RNNKIT_OWN_PRODUCTS 1
#include <immintrin.h>

#include <atomic>
#include <type_traits>
#include <vector>

template <typename T>
struct Simd;

#if defined(__AVX512F__)
// AVX-512 (Intel since Skylake-SP, AMD since Zen 4): vectors of 16 floats or 8 doubles, so a
// panel is twice as wide and each FMA does twice the work (the BLAS uses them too).
template <>
struct Simd<float> {
    using V = __m512;
    static constexpr int L = 16;
    static V zero() { return _mm512_setzero_ps(); }
    static V load(const float* p) { return _mm512_loadu_ps(p); }
    static V bcast(const float* p) { return _mm512_set1_ps(*p); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};

template <>
struct Simd<double> {
    using V = __m512d;
    static constexpr int L = 8;
    static V zero() { return _mm512_setzero_pd(); }
    static V load(const double* p) { return _mm512_loadu_pd(p); }
    static V bcast(const double* p) { return _mm512_set1_pd(*p); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
    static V add(V a, V b) { return _mm512_add_pd(a, b); }
    static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
};
#else
template <>
struct Simd<float> {
    using V = __m256;
    static constexpr int L = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};

template <>
struct Simd<double> {
    using V = __m256d;
    static constexpr int L = 4;
    static V zero() { return _mm256_setzero_pd(); }
    static V load(const double* p) { return _mm256_loadu_pd(p); }
    static V bcast(const double* p) { return _mm256_broadcast_sd(p); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
    static V add(V a, V b) { return _mm256_add_pd(a, b); }
    static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
};
#endif

// Rows per block of the microkernel: its accumulators (2 vectors a row) plus the panel's two
// vectors and a broadcast must fit the vector registers (16 with AVX2, 32 with AVX-512).
#if defined(__AVX512F__)
static constexpr int MR = 12;
#else
static constexpr int MR = 6;
#endif

// C[r, 0:w] (=, or += with acc) Σ_kk A[r, kk] · B[kk, 0:w] for r < R, from a packed panel B
// (rows sb apart, 2L columns, zero past w); FULL: w = 2L. The loops over r have constant trip
// counts and are unrolled, so c0 and c1 live in registers.
template <typename T, int R, bool FULL>
static inline void micro(i64 k, const T* A, i64 lda, const T* B, i64 sb, i64 w, T* C, i64 ldc,
                         bool acc) {
    using S = Simd<T>;
    using V = typename S::V;
    constexpr int L = S::L;
    V c0[R], c1[R];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) c0[r] = c1[r] = S::zero();
    for (i64 kk = 0; kk < k; ++kk) {
        const T* b = B + kk * sb;
        V b0 = S::load(b), b1 = S::load(b + L);
        // b0 and b1 in registers: on fewer than 4 rows the compiler would otherwise fold the
        // loads into every multiply-add, 2R loads per kk instead of 2, and R = 2 and 3 took
        // 1.7-2.8 times as long as R = 4 (same measurement as Pack's)
        asm("" : "+x"(b0), "+x"(b1));
#pragma GCC unroll 12
        for (int r = 0; r < R; ++r) {
            const V a = S::bcast(A + r * lda + kk);
            c0[r] = S::fma(a, b0, c0[r]);
            c1[r] = S::fma(a, b1, c1[r]);
        }
    }
    alignas(64) T tmp[2 * L];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
        T* c = C + r * ldc;
        if (FULL) {
            S::store(c, acc ? S::add(S::load(c), c0[r]) : c0[r]);
            S::store(c + L, acc ? S::add(S::load(c + L), c1[r]) : c1[r]);
        } else {
            S::store(tmp, c0[r]);
            S::store(tmp + L, c1[r]);
            for (i64 j = 0; j < w; ++j) c[j] = acc ? c[j] + tmp[j] : tmp[j];
        }
    }
}

// The last m < MR rows: micro with R = m.
template <typename T, bool FULL, int R = MR - 1>
static inline void micro_tail(i64 m, i64 k, const T* A, i64 lda, const T* B, i64 sb, i64 w,
                              T* C, i64 ldc, bool acc) {
    if constexpr (R > 0) {
        if (m == R) return micro<T, R, FULL>(k, A, lda, B, sb, w, C, ldc, acc);
        micro_tail<T, FULL, R - 1>(m, k, A, lda, B, sb, w, C, ldc, acc);
    }
}

template <typename T, bool FULL>
static void micro_rows(i64 m, i64 k, const T* A, i64 lda, const T* B, i64 sb, i64 w, T* C,
                       i64 ldc, bool acc) {
    i64 r = 0;
    for (; r + MR <= m; r += MR)
        micro<T, MR, FULL>(k, A + r * lda, lda, B, sb, w, C + r * ldc, ldc, acc);
    if (r < m) micro_tail<T, FULL>(m - r, k, A + r * lda, lda, B, sb, w, C + r * ldc, ldc, acc);
}

// Products of 1 to 3 rows: NP full panels at a time, the panels pstride apart and their output
// columns PW apart. micro on R < 4 rows keeps 2R chains of multiply-adds, each waiting on the
// one before it (4 cycles on the Intel Xeon), so a panel took as long on 1 row as on 4; with NP
// panels at once there are 2·R·NP chains. Each output is still the sum over kk = 0..k-1 in
// order, the same bits as micro's.
template <typename T, int R, int NP>
static inline void micro_panels(i64 k, const T* A, i64 lda, const T* B, i64 pstride, i64 sb,
                                T* C, i64 ldc, bool acc) {
    using S = Simd<T>;
    using V = typename S::V;
    constexpr int L = S::L, PW = 2 * L;
    V c0[NP][R], c1[NP][R];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 3
        for (int r = 0; r < R; ++r) c0[p][r] = c1[p][r] = S::zero();
    for (i64 kk = 0; kk < k; ++kk) {
        V a[R];
#pragma GCC unroll 3
        for (int r = 0; r < R; ++r) a[r] = S::bcast(A + r * lda + kk);
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) {
            const T* b = B + p * pstride + kk * sb;
            V b0 = S::load(b), b1 = S::load(b + L);
            if (R > 1) asm("" : "+x"(b0), "+x"(b1));  // one load each (see micro)
#pragma GCC unroll 3
            for (int r = 0; r < R; ++r) {
                c0[p][r] = S::fma(a[r], b0, c0[p][r]);
                c1[p][r] = S::fma(a[r], b1, c1[p][r]);
            }
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 3
        for (int r = 0; r < R; ++r) {
            T* c = C + p * PW + r * ldc;
            S::store(c, acc ? S::add(S::load(c), c0[p][r]) : c0[p][r]);
            S::store(c + L, acc ? S::add(S::load(c + L), c1[p][r]) : c1[p][r]);
        }
}

// Panels per micro_panels call on R rows: 4 on one row (8 chains), 2 on two (8), and on three 2
// with AVX-512's 32 registers (12) but 1 with AVX2's 16, where 12 accumulators, 4 panel vectors
// and 3 broadcasts spill: one panel at a time took 4.46 µs, two 5.1-5.3 (own_kernel_rows.cpp,
// AVX2 build on the Intel Xeon, H = 256; one row 3.45 -> 1.81, two 3.95 -> 2.34-2.46).
template <int R>
static constexpr int few_row_panels() {
#if defined(__AVX512F__)
    return R == 1 ? 4 : 2;
#else
    return R == 1 ? 4 : R == 2 ? 2 : 1;
#endif
}

// The first `count` full panels of a product on R < 4 rows (of `panels` in the sweep), NP at a
// time and the rest one by one; from the last to the first when back.
template <typename T, int R>
static void few_rows(i64 k, const T* A, i64 lda, const T* B0, i64 pstride, i64 sb, T* C,
                     i64 ldc, bool acc, i64 lo, i64 count, bool back, i64 panels) {
    constexpr int NP = few_row_panels<R>();
    constexpr i64 PW = 2 * Simd<T>::L;
    i64 q = 0;
    for (; q + NP <= count; q += NP) {
        // the group's first panel: forward, q; turned back, the group ends at panels - 1 - q
        const i64 p = back ? panels - q - NP : q;
        micro_panels<T, R, NP>(k, A, lda, B0 + p * pstride, pstride, sb, C + lo + p * PW, ldc,
                               acc);
    }
    for (; q < count; ++q) {
        const i64 p = back ? panels - 1 - q : q;
        micro<T, R, true>(k, A, lda, B0 + p * pstride, sb, PW, C + lo + p * PW, ldc, acc);
    }
}

// few_rows on m = R < 4 rows: the full panels of columns lo..hi several at a time, in the
// sweep's order (back: from the last to the first), and a partial last panel on its own.
template <typename T>
static void few_row_product(i64 m, i64 lo, i64 hi, i64 k, const T* A, i64 lda, const T* B0,
                            i64 pstride, i64 sb, T* C, i64 ldc, bool acc, bool back) {
    constexpr i64 PW = 2 * Simd<T>::L;
    const i64 full = (hi - lo) / PW, w = hi - lo - full * PW;
    auto run = [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        const T* last = B0 + full * pstride;
        if (back && w)  // turned back, the partial panel comes first
            micro<T, R, false>(k, A, lda, last, sb, w, C + lo + full * PW, ldc, acc);
        few_rows<T, R>(k, A, lda, B0, pstride, sb, C, ldc, acc, lo, full, back, full);
        if (!back && w) micro<T, R, false>(k, A, lda, last, sb, w, C + lo + full * PW, ldc, acc);
    };
    if (m == 1) run(std::integral_constant<int, 1>());
    if (m == 2) run(std::integral_constant<int, 2>());
    if (m == 3) run(std::integral_constant<int, 3>());
}

// C[:, lo:hi] of an (m, ·) output: panel p (columns lo + p·PW ...) starts at B0 + p·pstride,
// its rows sb apart; back: the panels from the last to the first (see "Sweeps that turn back").
// A product of 1 to 3 rows (a batch of so few, or the last steps of a batch with lengths) takes
// several panels at a time (few_row_product). The last 1 to 3 rows of a larger product stay in
// micro_rows: taken after the blocks, several panels at a time, they read each panel once more
// from L2 and gained nothing measurable (Intel Xeon, B = 13, 25 and 32 with lengths, paired).
template <typename T>
static void own_product(i64 m, i64 lo, i64 hi, i64 k, const T* A, i64 lda, const T* B0,
                        i64 pstride, i64 sb, T* C, i64 ldc, bool acc, bool back) {
    if (m < 4 && g_few_rows)
        return few_row_product<T>(m, lo, hi, k, A, lda, B0, pstride, sb, C, ldc, acc, back);
    constexpr i64 PW = 2 * Simd<T>::L;
    const i64 panels = (hi - lo + PW - 1) / PW;
    for (i64 q = 0; q < panels; ++q) {
        const i64 p = back ? panels - 1 - q : q, j0 = lo + p * PW;
        const i64 w = hi - j0 < PW ? hi - j0 : PW;
        const T* B = B0 + p * pstride;
        if (w == PW)
            micro_rows<T, true>(m, k, A, lda, B, sb, w, C + j0, ldc, acc);
        else
            micro_rows<T, false>(m, k, A, lda, B, sb, w, C + j0, ldc, acc);
    }
}

// Packed weights, per thread: a few entries (a cell reads up to four blocks of W_hh), valid for
// one call of the loops (g_call: a new call may come after W changed in place).
static std::atomic<uint64_t> g_call{0};
static std::atomic<uint64_t> g_own_count{0};  // products taken by the own kernel (for tests)

// The packed panels start on a 64-byte boundary (P): a vector load from a panel then never
// spans two cache lines. std::vector's storage is only 16-byte aligned, and with the panels
// misaligned the kernel on 1-3 rows (the late steps of a batch with lengths) took 1.5-2.8 times
// as long (own kernel alone, H = 256, one thread, Intel Xeon with AVX-512).
template <typename T>
struct Pack {
    const T* W = nullptr;
    bool trans = false;
    i64 ldw = 0, lo = 0, hi = 0, k = 0;
    uint64_t call = ~uint64_t(0);
    std::vector<T> data;
    T* P = nullptr;
    void resize(i64 count) {
        constexpr i64 extra = 64 / i64(sizeof(T));
        data.resize(size_t(count + extra));
        const uintptr_t at = reinterpret_cast<uintptr_t>(data.data());
        P = reinterpret_cast<T*>((at + 63) & ~uintptr_t(63));
    }
};

// Columns lo..hi of the product's output, packed in panels of PW columns, k-major: panel p holds
// P[kk][jj] = W[lo + p·PW + jj][kk] for the forward product (W (n, k), TRANS) or
// W[kk][lo + p·PW + jj] for the backward one (W (k, n)); zero past hi. The backward product could
// read W in place, but its rows are ldw apart, a stride that maps a panel onto a few sets of the
// L1 cache, which then evicts it between blocks of rows.
// Packed blocks a thread keeps per call: up to four blocks of W_hh on the column split, and on
// the split by hidden units (_loops_units.h) one per gate block, up to NAS's eight.
static constexpr int PACK_SLOTS = 10;

template <typename T, bool TRANS>
static const T* packed_columns(const T* W, i64 ldw, i64 lo, i64 hi, i64 k) {
    constexpr i64 PW = 2 * Simd<T>::L;
    static thread_local Pack<T> slots[PACK_SLOTS];
    static thread_local unsigned next = 0;
    const uint64_t call = g_call.load(std::memory_order_relaxed);
    for (auto& e : slots)
        if (e.call == call && e.W == W && e.trans == TRANS && e.ldw == ldw && e.lo == lo &&
            e.hi == hi && e.k == k)
            return e.P;
    Pack<T>& e = slots[next++ % PACK_SLOTS];
    const i64 panels = (hi - lo + PW - 1) / PW;
    e.resize(panels * k * PW);
    T* P = e.P;
    for (i64 p = 0; p < panels; ++p) {
        const i64 j0 = lo + p * PW, w = hi - j0 < PW ? hi - j0 : PW;
        T* panel = P + p * k * PW;
        if (TRANS) {
            for (i64 jj = 0; jj < w; ++jj) {
                const T* row = W + (j0 + jj) * ldw;
                for (i64 kk = 0; kk < k; ++kk) panel[kk * PW + jj] = row[kk];
            }
        } else {
            for (i64 kk = 0; kk < k; ++kk)
                for (i64 jj = 0; jj < w; ++jj) panel[kk * PW + jj] = W[kk * ldw + j0 + jj];
        }
        for (i64 kk = 0; kk < k; ++kk)
            for (i64 jj = w; jj < PW; ++jj) panel[kk * PW + jj] = T(0);
    }
    e.W = W, e.trans = TRANS, e.ldw = ldw, e.lo = lo, e.hi = hi, e.k = k, e.call = call;
    return P;
}
#endif

// Whether this call's products take the own kernel (set from the geometry block): enough steps
// times rows to pay for packing W once (about three passes over W); a call of one row only
// with g_one_row.
[[maybe_unused]] static thread_local bool t_own = false;
static i64 g_own_min_rows = 64;  // steps × batch; set from native.OWN_MIN_ROWS at load

// For measurements and tests: the fewest steps × rows for which a call takes the own kernel
// (-1: never).
extern "C" void rnnkit_set_own_min_rows(long long rows) { g_own_min_rows = rows; }

// The most rows a product may have to take the own kernel (more: the BLAS); set from
// native.OWN_MAX_ROWS at load, which depends on the vector width (rnnkit_own_vector_bits).
static i64 g_own_max_rows = 256;

extern "C" void rnnkit_set_own_max_rows(long long rows) { g_own_max_rows = rows; }

// The own kernel's vector width in bits: 512 (AVX-512), 256 (AVX2 + FMA), 0 (not compiled in).
extern "C" int rnnkit_own_vector_bits() {
#if defined(RNNKIT_OWN_PRODUCTS) && defined(__AVX512F__)
    return 512;
#elif defined(RNNKIT_OWN_PRODUCTS)
    return 256;
#else
    return 0;
#endif
}

// Whether the own kernel was compiled in (an AVX2 + FMA or AVX-512 build).
extern "C" int rnnkit_own_products() {
#ifdef RNNKIT_OWN_PRODUCTS
    return 1;
#else
    return 0;
#endif
}

// How many recurrent products the own kernel has computed in this process (for tests).
extern "C" unsigned long long rnnkit_own_product_count() {
#ifdef RNNKIT_OWN_PRODUCTS
    return g_own_count.load(std::memory_order_relaxed);
#else
    return 0;
#endif
}

// The batch of the current call (the rows of its first step), for by_panels' split rule.
static thread_local i64 t_call_rows = 0;
// For measurements: whether by_panels decides by the call's batch (1, the default) or by each
// product's own rows (0).
static int g_split_by_call = 1;
extern "C" void rnnkit_set_split_by_call(int on) { g_split_by_call = on; }
extern "C" int rnnkit_split_by_call() { return g_split_by_call; }

static void begin_call(i64 steps, i64 B) {
    t_call_rows = B;
#ifdef RNNKIT_OWN_PRODUCTS
    g_call.fetch_add(1, std::memory_order_relaxed);
    t_own = g_own_min_rows >= 0 && (B >= 2 || g_one_row) && steps * B >= g_own_min_rows;
#else
    (void)steps, (void)B;
#endif
}

// product(lo, hi) over column blocks starting at multiples of the panel width PW, one per
// thread, as by_columns does for the BLAS; split whenever the product has work enough to pay for
// the threads' start (on one thread the BLAS would have threaded a large product itself). An
// AVX-512 core does twice the work per instruction, so there a split pays from four times the
// work: measured at H = 64 on an Intel Xeon, splitting from 2^17 made the loop cells' training
// steps 0.97-1.29 times the BLAS's, from 2^19 0.75-1.01 (benchmarks/rnn_products.py
// --layers-H 64).
// The work is counted with the call's batch, not the product's own rows: with lengths the
// batch shrinks step by step, and a product that stopped splitting part-way would run on one
// core, which holds only its own half of the packed W in its cache. Deciding once per call
// keeps every step on the same split (Intel Xeon, lengths over [T/2, T], training step with
// lengths over the full batch's: Elman B=8 H=256 1.00-1.03 -> 0.95-0.99, Elman B=16 H=512
// 0.86-0.89 -> 0.85-0.87; python benchmarks/lengths_overheads.py --pieces "split by call").
#if defined(__AVX512F__)
static constexpr i64 OWN_SPLIT_MACS = i64(1) << 19;
#else
static constexpr i64 OWN_SPLIT_MACS = i64(1) << 17;
#endif

// How many threads by_panels splits an (m, n) product over k into: all of them from
// OWN_SPLIT_MACS multiply-adds with the call's rows, or for a call of one row from ONE_ROW_SPLIT.
static i64 own_threads(i64 m, i64 n, i64 k, i64 PW) {
    const i64 rows = g_split_by_call ? t_call_rows : m;
    const i64 least = t_call_rows == 1 ? ONE_ROW_SPLIT : OWN_SPLIT_MACS;
    return t_threads <= 1 || n < 2 * PW || rows * n * k < least ? 1 : t_threads;
}

template <typename F>
static void by_panels(i64 m, i64 n, i64 k, i64 PW, F product) {
    if (own_threads(m, n, k, PW) == 1) {
        product(0, n);
        return;
    }
#pragma omp parallel num_threads(t_threads)
    {
        const i64 nt = omp_get_num_threads(), t = omp_get_thread_num();
        const i64 lo = t ? (n * t / nt) / PW * PW : 0;
        const i64 hi = t + 1 < nt ? (n * (t + 1) / nt) / PW * PW : n;
        if (hi > lo) product(lo, hi);
    }
}

// The product on the own kernel when this call takes it (then true): W (n, k) with TRANS, else
// W (k, n); beta is 0 or 1.
template <typename T, bool TRANS>
static bool own_mm(i64 m, i64 n, i64 k, const T* A, i64 lda, const T* W, i64 ldw, T beta, T* C,
                   i64 ldc) {
#ifdef RNNKIT_OWN_PRODUCTS
    if (!t_own || m > g_own_max_rows || m > g_split_rows) return false;
    constexpr i64 PW = 2 * Simd<T>::L;
    g_own_count.fetch_add(1, std::memory_order_relaxed);
    const bool back = g_turn_back && t_back;  // (read here: t_back is the calling thread's)
    by_panels(m, n, k, PW, [&](i64 lo, i64 hi) {
        const T* P = packed_columns<T, TRANS>(W, ldw, lo, hi, k);
        own_product<T>(m, lo, hi, k, A, lda, P, k * PW, PW, C, ldc, beta != T(0), back);
    });
    return true;
#else
    (void)m, (void)n, (void)k, (void)A, (void)lda, (void)W, (void)ldw, (void)beta, (void)C,
        (void)ldc;
    return false;
#endif
}

// C (m, n) = A (m, k) · W (n, k)ᵀ + beta·C     (the forward recurrent product h · W_hhᵀ)
template <typename T>
static void mm_nt(i64 m, i64 n, i64 k, const T* A, i64 lda, const T* W, i64 ldw, T beta, T* C,
                  i64 ldc) {
    if (own_mm<T, true>(m, n, k, A, lda, W, ldw, beta, C, ldc)) return;
    by_columns(m, n, k, [&](i64 lo, i64 hi) {
        gemm('T', 'N', int(hi - lo), int(m), int(k), T(1), W + lo * ldw, int(ldw), A, int(lda),
             beta, C + lo, int(ldc));
    });
}

// C (m, n) = A (m, k) · W (k, n) + beta·C      (the backward product dz · W_hh)
template <typename T>
static void mm_nn(i64 m, i64 n, i64 k, const T* A, i64 lda, const T* W, i64 ldw, T beta, T* C,
                  i64 ldc) {
    if (own_mm<T, false>(m, n, k, A, lda, W, ldw, beta, C, ldc)) return;
    by_columns(m, n, k, [&](i64 lo, i64 hi) {
        gemm('N', 'N', int(hi - lo), int(m), int(k), T(1), W + lo, int(ldw), A, int(lda), beta,
             C + lo, int(ldc));
    });
}
