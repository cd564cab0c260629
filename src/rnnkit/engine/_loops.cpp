// Sequence loops of rnnkit's cells: the forward pass and the hand-written BPTT backward pass.
//
// Compiled on first use by rnnkit/engine/native.py and called through ctypes; no torch headers,
// so it builds in a second or two. The recurrent products go to the loops' own register-blocked
// kernel (AVX2 + FMA or AVX-512 builds, a batch of 2 rows or more; see "The recurrent products
// on few rows") or else to the BLAS inside torch (its sgemm_/dgemm_, handed over by rnnkit_set_blas);
// the pointwise part of each step is one fused loop, split over rows with OpenMP (torch's own
// libgomp, which the loader shares).
//
// Layout (shapes use rnnkit's glossary; every matrix is row-major and contiguous):
//   * A sequence is processed in `steps` steps; step s works on the first n[s] rows of the batch
//     (rows are sorted by decreasing length, so the active rows always form a prefix).
//   * Per-row tensors (gx, y, saved activations, gradients) are "packed": step s owns rows
//     off[s] .. off[s] + n[s]. Without lengths this is the (T, B) layout, with off[s] = t·B
//     (t = s, or T-1-s for the backward direction).
//   * The state entering step s is h0/c0 for s = 0 and the rows of step s-1 otherwise.
//   * Forward-only calls (full = 0) keep saved activations in two alternating blocks of B rows
//     instead of N rows.
//   * In place: a training forward pass (full = 1) may write its saved activations over its
//     input projection (act == gx), and the backward pass its input-projection gradient over
//     the saved activations (dgx == act); see each kernel's list. The row loops that touch such
//     a pair read every element of a column j before they write that column's output, and
//     carry `#pragma omp simd` instead of __restrict on the pair, which keeps them vectorised
//     (a restrict pair that aliases is undefined behaviour; a runtime overlap check would pick
//     the scalar loop).
//   * Backward: dh and dc (B, H) hold, on entry, the gradient of the final state; a row keeps
//     it until the loop reaches the row's last step. On exit they hold the gradient of h0/c0.
//     dgx receives the gradient of every step's input projection; the weight gradients are
//     large matrix products done by the caller after the loop, from dgx and the saved buffers.
//
// Every entry point has the signature
//     void rnnkit_<cell>_<forward|backward>_<f32|f64>(const int64_t* geo, void* const* p,
//                                                    const double* scalars, void* const* rows)
// geo = [steps, B, H, full, threads, v0..v4, turn, n[steps], off[steps], (perm[B] when turn)]
// (v: the cell's variant integers); p: the data pointers in the order listed above each kernel.
// turn: 0, or the step m at which the rows go from the batch's order to the sorted order. The
// packed rows of steps 0..m-1 (every row running) are then the batch's rows as they come, and
// those of steps m on are sorted by length, perm[r] being sorted row r's batch row. Only at
// step m is the previous step's block not row for row that of the step: the forward and
// backward loops read it gathered through perm (Geo::prior), and the backward loop moves its
// running state gradients back to the batch's order after step m (Geo::unturn).
// turn = -1 marks a masked call instead (a small layer with lengths), -2 one of the backward
// direction: every step runs all B rows in the batch's order (n[s] = B, off[s] = t·B) and geo
// ends with lens[B], each row's length. Forwards, a row is frozen from its length on: the
// forward loop writes zeros as its outputs and leaves its state where it is (an LSTM's c
// carried into the step's saved block), and the backward loop writes zeros as its
// input-projection gradient and passes its state gradients through unchanged (Geo::frozen;
// step_mm runs a step's products on the running rows alone where that saves a block of the
// own kernel, else on every row around Geo::hold and Geo::release). Backwards (t = T-1-s), a
// row is frozen until its last valid step t = lens[r] - 1, where it starts from its initial
// state (Geo::prior puts h0/c0 in its row of the previous block). So the outputs need no
// scatter and the inputs no gather.
// rows: null, or {map, out, ldy}. map (or null) is for a batch with lengths whose caller wants its
// outputs in the padded (T·B, H) layout: map[r] (int64) is packed row r's flat position t·B + b
// there. The forward loop then also writes each output row at map[r] of out (the caller zeroes
// the padding), and the backward loop reads the output gradient of packed row r at row map[r]
// of dy (T·B, H). This spares a scatter of y and a gather of dy outside the loops, each a pass
// over N rows. ldy (an integer in the pointer's place, 0 for H) is the distance in elements
// between two rows of dy, which may be a column block of a wider matrix.

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

using i64 = int64_t;

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

// C[:, lo:hi] of an (m, ·) output: panel p (columns lo + p·PW ...) starts at B0 + p·pstride,
// its rows sb apart.
template <typename T>
static void own_product(i64 m, i64 lo, i64 hi, i64 k, const T* A, i64 lda, const T* B0,
                        i64 pstride, i64 sb, T* C, i64 ldc, bool acc) {
    constexpr i64 PW = 2 * Simd<T>::L;
    for (i64 j0 = lo, p = 0; j0 < hi; j0 += PW, ++p) {
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
template <typename T, bool TRANS>
static const T* packed_columns(const T* W, i64 ldw, i64 lo, i64 hi, i64 k) {
    constexpr i64 PW = 2 * Simd<T>::L;
    static thread_local Pack<T> slots[6];
    static thread_local unsigned next = 0;
    const uint64_t call = g_call.load(std::memory_order_relaxed);
    for (auto& e : slots)
        if (e.call == call && e.W == W && e.trans == TRANS && e.ldw == ldw && e.lo == lo &&
            e.hi == hi && e.k == k)
            return e.P;
    Pack<T>& e = slots[next++ % 6];
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

// Whether this call's products take the own kernel (set from the geometry block): a batch of at
// least 2 rows (one row is a matrix-vector product, bound by reading W either way) and enough
// steps times rows to pay for packing W once (about three passes over W).
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
    t_own = g_own_min_rows >= 0 && B >= 2 && steps * B >= g_own_min_rows;
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

template <typename F>
static void by_panels(i64 m, i64 n, i64 k, i64 PW, F product) {
    const i64 rows = g_split_by_call ? t_call_rows : m;
    if (t_threads <= 1 || n < 2 * PW || rows * n * k < OWN_SPLIT_MACS) {
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
    by_panels(m, n, k, PW, [&](i64 lo, i64 hi) {
        const T* P = packed_columns<T, TRANS>(W, ldw, lo, hi, k);
        own_product<T>(m, lo, hi, k, A, lda, P, k * PW, PW, C, ldc, beta != T(0));
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

// ---------------------------------------------------------------------------------------------
// Geometry and the row-parallel pointwise loop
// ---------------------------------------------------------------------------------------------
struct Geo {
    i64 steps, B, H, full, threads;
    i64 v[5];
    const i64* n;
    const i64* off;
    // The padded (T·B, H) layout of the caller's output (see "rows" above), or null.
    const i64* map = nullptr;
    void* out = nullptr;
    // Elements from one row of dy to the next (H, or more for a column block of a wider
    // gradient: each direction's half of a bidirectional layer's).
    i64 ldy;
    // The step at which the rows go from the batch's order to the sorted order (0: none), and
    // each sorted row's batch row.
    i64 turn;
    const i64* perm;
    // A masked call's lengths (turn = -1 or -2 in geo), else null; first: the shortest of
    // them; rev: the backward direction.
    const i64* lens = nullptr;
    i64 first = 0;
    bool rev = false;
    mutable std::vector<char> turned[2], held, live_a, live_c;
    mutable std::vector<i64> live;

    Geo(const i64* g, void* const* rows)
        : steps(g[0]), B(g[1]), H(g[2]), full(g[3]), threads(g[4]), n(g + 11), off(g + 11 + g[0]),
          ldy(g[2]), turn(g[10] > 0 ? g[10] : 0),
          perm(g[10] > 0 ? g + 11 + 2 * g[0] : nullptr) {
        for (int k = 0; k < 5; ++k) v[k] = g[5 + k];
        if (g[10] < 0) {
            lens = g + 11 + 2 * g[0];
            rev = g[10] == -2;
            first = steps;
            for (i64 r = 0; r < B; ++r) first = std::min(first, lens[r]);
        }
        t_threads = int(threads);
        begin_call(steps, B);
        if (rows) {
            map = static_cast<const i64*>(rows[0]), out = rows[1];
            const i64 ld = static_cast<i64>(reinterpret_cast<intptr_t>(rows[2]));
            if (ld > 0) ldy = ld;
        }
    }
    // Masked calls: whether row r is frozen at step s, and whether any row is.
    bool frozen(i64 s, i64 r) const { return lens && (rev ? s < steps - lens[r] : s >= lens[r]); }
    bool any_frozen(i64 s) const { return lens && (rev ? s < steps - first : s >= first); }
    // first row of step s in a saved-activation buffer: its packed rows (full), or one of two
    // alternating blocks of B rows, and with a turn a third for the step before it (see
    // Plan.saved_rows in packing.py)
    i64 save(i64 s) const {
        if (full) return off[s];
        return (turn && s == turn - 1 ? 2 : (s & 1)) * B;
    }
    // The previous step's block of rows `block` (width values a row) as step s reads it: as it
    // is, except at the turn, where its rows are gathered into the sorted order, and in a
    // masked call of the backward direction, where the rows that start at step s read their
    // initial state `init` (into scratch `slot`, one per state the step reads).
    template <typename T>
    const T* prior(const T* block, i64 s, i64 width, int slot, const T* init) const {
        if (rev && s > 0) return starting(block, s, width, slot, init);
        if (s != turn || !turn) return block;
        std::vector<char>& buf = turned[slot];
        buf.resize(size_t(n[s] * width) * sizeof(T));
        T* rows = reinterpret_cast<T*>(buf.data());
        for (i64 r = 0; r < n[s]; ++r)
            std::memcpy(rows + r * width, block + perm[r] * width, size_t(width) * sizeof(T));
        return rows;
    }
    // Backward, after step s: at the turn, the running state gradient d (B rows, sorted) goes
    // to the batch's order, which the steps before the turn use.
    template <typename T>
    void unturn(T* d, i64 s, i64 width) const {
        if (s != turn || !turn) return;
        std::vector<char>& buf = turned[0];
        buf.resize(size_t(B * width) * sizeof(T));
        T* rows = reinterpret_cast<T*>(buf.data());
        std::memcpy(rows, d, size_t(B * width) * sizeof(T));
        for (i64 r = 0; r < B; ++r)
            std::memcpy(d + perm[r] * width, rows + r * width, size_t(width) * sizeof(T));
    }
    template <typename T>
    const T* starting(const T* block, i64 s, i64 width, int slot, const T* init) const {
        bool any = false;
        for (i64 r = 0; r < B && !any; ++r) any = steps - lens[r] == s;
        if (!any) return block;
        std::vector<char>& buf = turned[slot];
        buf.resize(size_t(B * width) * sizeof(T));
        T* rows = reinterpret_cast<T*>(buf.data());
        for (i64 r = 0; r < B; ++r)
            std::memcpy(rows + r * width, (steps - lens[r] == s ? init : block) + r * width,
                        size_t(width) * sizeof(T));
        return rows;
    }
    // Around a backward product that writes the running state gradient d (B rows of `width`):
    // the frozen rows' rows are kept aside before it and put back after it, so that they pass
    // through the step unchanged (their rows of the product's input are zero).
    template <typename T>
    void hold(const T* d, i64 s, i64 width) const {
        if (!any_frozen(s)) return;
        std::vector<char>& buf = held;
        buf.resize(size_t(B * width) * sizeof(T));
        T* kept = reinterpret_cast<T*>(buf.data());
        for (i64 r = 0; r < B; ++r)
            if (frozen(s, r)) std::memcpy(kept + r * width, d + r * width, size_t(width) * sizeof(T));
    }
    template <typename T>
    void release(T* d, i64 s, i64 width) const {
        if (!any_frozen(s)) return;
        const T* kept = reinterpret_cast<const T*>(held.data());
        for (i64 r = 0; r < B; ++r)
            if (frozen(s, r)) std::memcpy(d + r * width, kept + r * width, size_t(width) * sizeof(T));
    }
    // Forward: output row h of packed row r is also written at its padded position.
    template <typename T>
    void emit(const T* h, i64 r) const {
        if (out) std::memcpy(static_cast<T*>(out) + map[r] * H, h, size_t(H) * sizeof(T));
    }
    // Backward: the output gradient of packed row r, read from the padded layout when mapped.
    template <typename T>
    const T* grad(const T* dy, i64 r) const {
        return dy + (map ? map[r] : r) * ldy;
    }
};

// f(row, thread) for row < n; split over threads when the step is large enough to pay for it.
template <typename F>
static void for_rows(const Geo& g, i64 n, i64 width, F&& f) {
    if (g.threads <= 1 || n < 2 || n * width < 8192) {
        for (i64 r = 0; r < n; ++r) f(r, 0);
        return;
    }
    const int nt = int(g.threads < n ? g.threads : n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 r = 0; r < n; ++r) f(r, omp_get_thread_num());
}

// For measurements: whether a masked call's recurrent products run on the running rows only (1,
// the default) or on every row of the step (0).
static int g_live_rows = 1;
extern "C" void rnnkit_set_live_rows(int on) { g_live_rows = on; }
extern "C" int rnnkit_live_rows() { return g_live_rows; }
// How many products have run on the running rows only in this process (for tests).
static std::atomic<unsigned long long> g_live_count{0};
extern "C" unsigned long long rnnkit_live_product_count() {
    return g_live_count.load(std::memory_order_relaxed);
}

// Whether a product on q of its m rows costs less than on all m: the own kernel takes rows in
// blocks of MR, and a block of fewer than 4 rows costs about as much as one of 4 (measured: at
// B = 2 the product on the one running row, gathered, read 1.01-1.02 of the product on both
// rows in the training step, paired; splitting each row's accumulator chains in two, to hide
// the multiply-adds' latency, changed no step at B = 2-3 either). So 1 running row of 2 saves
// nothing, 6 of 8 a quarter. Products on the BLAS keep every row (not measured).
#ifdef RNNKIT_OWN_PRODUCTS
static i64 block_rows(i64 m) {
    const i64 tail = m % MR;
    return m - tail + (tail == 0 ? 0 : tail < 4 ? 4 : tail);
}
static bool fewer_blocks(i64 q, i64 m) { return t_own && block_rows(q) + 1 < block_rows(m); }
#else
static bool fewer_blocks(i64, i64) { return false; }
#endif

// A step's recurrent product, C (m, n) = A (m, k) · op(W) + beta·C (NT: W (n, k) transposed,
// mm_nt; else W (k, n), mm_nn). In a masked call, a frozen row's row of A is zero or unread and
// its row of C is not wanted, or (keep) must stay as it is (the running state gradient a frozen
// row passes through). So when the rows running at step s fill fewer of the own kernel's
// blocks, the product runs on them alone: their rows of A (and of C when beta is 1) are
// gathered into scratch, multiplied, and put back, and a frozen row's row of C is left as it
// is. Otherwise it runs on every row, a frozen row's row of C held aside when it must stay.
template <typename T, bool NT>
static void step_mm(const Geo& g, i64 s, i64 m, i64 n, i64 k, const T* A, i64 lda, const T* W,
                    i64 ldw, T beta, T* C, i64 ldc, bool keep = false) {
    auto product = [&](i64 rows, const T* a, i64 la, T* c, i64 lc) {
        if (NT)
            mm_nt<T>(rows, n, k, a, la, W, ldw, beta, c, lc);
        else
            mm_nn<T>(rows, n, k, a, la, W, ldw, beta, c, lc);
    };
    if (!g.any_frozen(s)) return product(m, A, lda, C, ldc);
    std::vector<i64>& live = g.live;
    live.clear();
    if (g_live_rows)
        for (i64 r = 0; r < m; ++r)
            if (!g.frozen(s, r)) live.push_back(r);
    const i64 q = i64(live.size());
    if (!g_live_rows || !fewer_blocks(q, m)) {  // every row
        if (keep) g.hold(C, s, n);
        product(m, A, lda, C, ldc);
        if (keep) g.release(C, s, n);
        return;
    }
    g.live_a.resize(size_t(q * k) * sizeof(T));
    g.live_c.resize(size_t(q * n) * sizeof(T));
    T* a = reinterpret_cast<T*>(g.live_a.data());
    T* c = reinterpret_cast<T*>(g.live_c.data());
    for (i64 i = 0; i < q; ++i) std::memcpy(a + i * k, A + live[i] * lda, size_t(k) * sizeof(T));
    if (beta != T(0))
        for (i64 i = 0; i < q; ++i)
            std::memcpy(c + i * n, C + live[i] * ldc, size_t(n) * sizeof(T));
    g_live_count.fetch_add(1, std::memory_order_relaxed);
    product(q, a, k, c, n);
    for (i64 i = 0; i < q; ++i) std::memcpy(C + live[i] * ldc, c + i * n, size_t(n) * sizeof(T));
}

template <typename T>
static inline T sigm(T x) {
    return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
static inline T relu(T x) {
    return x > T(0) ? x : T(0);
}

template <typename T>
static const T* P(void* const* p, int k) {
    return static_cast<const T*>(p[k]);
}

template <typename T>
static T* W(void* const* p, int k) {
    return static_cast<T*>(p[k]);
}

// ---------------------------------------------------------------------------------------------
// Elman: h = act(gx + h_prev·W_hhᵀ + b_hh); v0 = 1 for relu.
// forward  p: gx (N,H), W_hh (H,H), b_hh (H), h0 (B,H), y (N,H), z (B,H)
// backward p: W_hh, h0, y, dy (N,H), dh (B,H), dgx (N,H)
// ---------------------------------------------------------------------------------------------
template <typename T, bool RELU>
static void elman_fwd_row(i64 H, const T* __restrict x, const T* __restrict z,
                          const T* __restrict b, T* __restrict h) {
    for (i64 j = 0; j < H; ++j) h[j] = RELU ? relu(x[j] + z[j] + b[j]) : std::tanh(x[j] + z[j] + b[j]);
}

template <typename T, bool RELU>
static void elman_bwd_row(i64 H, const T* __restrict h, const T* __restrict dy,
                          const T* __restrict dh, T* __restrict d) {
    for (i64 j = 0; j < H; ++j) {
        const T dhj = dh[j] + dy[j];
        d[j] = RELU ? (h[j] > T(0) ? dhj : T(0)) : dhj * (T(1) - h[j] * h[j]);
    }
}

template <typename T, bool RELU>
static void elman_forward_impl(const Geo& g, void* const* p) {
    const i64 H = g.H;
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *b = P<T>(p, 2), *h0 = P<T>(p, 3);
    T *y = W<T>(p, 4), *z = W<T>(p, 5);
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        step_mm<T, true>(g, s, n, H, H, hp, H, Whh, H, T(0), z, H);
        for_rows(g, n, H, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
            elman_fwd_row<T, RELU>(H, gx + (o + r) * H, z + r * H, b, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        });
    }
}

template <typename T, bool RELU>
static void elman_backward_impl(const Geo& g, void* const* p) {
    const i64 H = g.H;
    const T *Whh = P<T>(p, 0), *y = P<T>(p, 2), *dy = P<T>(p, 3);
    T *dh = W<T>(p, 4), *dgx = W<T>(p, 5);
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        for_rows(g, n, H, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(dgx + (o + r) * H, 0, size_t(H) * sizeof(T));
            elman_bwd_row<T, RELU>(H, y + (o + r) * H, g.grad(dy, o + r), dh + r * H,
                                   dgx + (o + r) * H);
        });
        // dh_prev = dpre · W_hh; a frozen row's dh passes through
        step_mm<T, false>(g, s, n, H, H, dgx + o * H, H, Whh, H, T(0), dh, H, true);
        g.unturn(dh, s, H);
    }
}

template <typename T>
static void elman_forward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    g.v[0] ? elman_forward_impl<T, true>(g, p) : elman_forward_impl<T, false>(g, p);
}

template <typename T>
static void elman_backward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    g.v[0] ? elman_backward_impl<T, true>(g, p) : elman_backward_impl<T, false>(g, p);
}

// ---------------------------------------------------------------------------------------------
// LSTM, gates i, f, g, o; v0 = 1 with peepholes (w_ci, w_cf on c_prev, w_co on c).
// forward  p: gx (N,4H), W_hh (4H,H), b_hh (4H), w_ci, w_cf, w_co (H), h0, c0 (B,H),
//             y (N,H), act (N,4H: i f g o after their nonlinearity; may be gx), cs (N,H: c),
//             z (B,4H)
// backward p: W_hh, w_ci, w_cf, w_co, h0, c0, y, act, cs, dy, dh, dc, dgx (N,4H; may be act),
//             acc (threads, 3H: per-thread sums for the peephole gradients)
// ---------------------------------------------------------------------------------------------
template <typename T, bool PEEP>
static void lstm_fwd_row(i64 H, const T* x, const T* __restrict z, const T* __restrict b,
                         const T* __restrict wci, const T* __restrict wcf,
                         const T* __restrict wco, const T* __restrict cp, T* a,
                         T* __restrict c, T* __restrict h) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        T pi = x[j] + z[j] + b[j];
        T pf = x[H + j] + z[H + j] + b[H + j];
        const T pg = x[2 * H + j] + z[2 * H + j] + b[2 * H + j];
        T po = x[3 * H + j] + z[3 * H + j] + b[3 * H + j];
        if (PEEP) {
            pi += wci[j] * cp[j];
            pf += wcf[j] * cp[j];
        }
        const T i = sigm(pi), f = sigm(pf), gg = std::tanh(pg);
        const T cn = f * cp[j] + i * gg;
        if (PEEP) po += wco[j] * cn;
        const T oo = sigm(po);
        h[j] = oo * std::tanh(cn);
        c[j] = cn;
        a[j] = i;
        a[H + j] = f;
        a[2 * H + j] = gg;
        a[3 * H + j] = oo;
    }
}

template <typename T, bool PEEP>
static void lstm_bwd_row(i64 H, const T* a, const T* __restrict c, const T* __restrict cp,
                         const T* __restrict wci, const T* __restrict wcf,
                         const T* __restrict wco, const T* __restrict dy,
                         const T* __restrict dh, T* __restrict dc, T* d, T* __restrict acc) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T i = a[j], f = a[H + j], gg = a[2 * H + j], oo = a[3 * H + j];
        const T dhj = dh[j] + dy[j];
        const T tc = std::tanh(c[j]);
        const T dpo = dhj * tc * oo * (T(1) - oo);
        // c_t feeds h_t (through tanh), c_{t+1} (dc) and, with peepholes, o_t
        T dct = dc[j] + dhj * oo * (T(1) - tc * tc);
        if (PEEP) dct += dpo * wco[j];
        const T dpi = dct * gg * i * (T(1) - i);
        const T dpf = dct * cp[j] * f * (T(1) - f);
        const T dpg = dct * i * (T(1) - gg * gg);
        T dcp = dct * f;
        if (PEEP) {
            dcp += dpi * wci[j] + dpf * wcf[j];
            acc[j] += dpi * cp[j];
            acc[H + j] += dpf * cp[j];
            acc[2 * H + j] += dpo * c[j];
        }
        dc[j] = dcp;
        d[j] = dpi;
        d[H + j] = dpf;
        d[2 * H + j] = dpg;
        d[3 * H + j] = dpo;
    }
}

template <typename T, bool PEEP>
static void lstm_forward_impl(const Geo& g, void* const* p) {
    const i64 H = g.H, G = 4 * H;
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *b = P<T>(p, 2);
    const T *wci = P<T>(p, 3), *wcf = P<T>(p, 4), *wco = P<T>(p, 5);
    const T *h0 = P<T>(p, 6), *c0 = P<T>(p, 7);
    T *y = W<T>(p, 8), *act = W<T>(p, 9), *cs = W<T>(p, 10), *z = W<T>(p, 11);
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        const T* cp = g.prior(s ? cs + g.save(s - 1) * H : c0, s, H, 1, c0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) {  // zero output, c carried
                std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
                std::memcpy(cs + (so + r) * H, cp + r * H, size_t(H) * sizeof(T));
                return;
            }
            lstm_fwd_row<T, PEEP>(H, gx + (o + r) * G, z + r * G, b, wci, wcf, wco, cp + r * H,
                                  act + (so + r) * G, cs + (so + r) * H, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        });
    }
}

template <typename T, bool PEEP>
static void lstm_backward_impl(const Geo& g, void* const* p) {
    const i64 H = g.H, G = 4 * H;
    const T *Whh = P<T>(p, 0), *wci = P<T>(p, 1), *wcf = P<T>(p, 2), *wco = P<T>(p, 3);
    const T *c0 = P<T>(p, 5), *act = P<T>(p, 7), *cs = P<T>(p, 8), *dy = P<T>(p, 9);
    T *dh = W<T>(p, 10), *dc = W<T>(p, 11), *dgx = W<T>(p, 12), *acc = W<T>(p, 13);
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* cp = g.prior(s ? cs + g.off[s - 1] * H : c0, s, H, 1, c0);
        for_rows(g, n, G, [&](i64 r, int t) {
            if (g.frozen(s, r)) return (void)std::memset(dgx + (o + r) * G, 0, size_t(G) * sizeof(T));
            lstm_bwd_row<T, PEEP>(H, act + (o + r) * G, cs + (o + r) * H, cp + r * H, wci, wcf,
                                  wco, g.grad(dy, o + r), dh + r * H, dc + r * H,
                                  dgx + (o + r) * G, acc + t * 3 * H);
        });
        step_mm<T, false>(g, s, n, H, G, dgx + o * G, G, Whh, H, T(0), dh, H, true);
        g.unturn(dh, s, H);
        g.unturn(dc, s, H);
    }
}

template <typename T>
static void lstm_forward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    g.v[0] ? lstm_forward_impl<T, true>(g, p) : lstm_forward_impl<T, false>(g, p);
}

template <typename T>
static void lstm_backward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    g.v[0] ? lstm_backward_impl<T, true>(g, p) : lstm_backward_impl<T, false>(g, p);
}

// ---------------------------------------------------------------------------------------------
// GRU with the reset gate after the product (torch's form), gates r, u (torch's z), n:
//   r = σ(x_r + z_r + b_r), u = σ(x_u + z_u + b_u), n = tanh(x_n + r·(z_n + b_n)),
//   h = (1 - u)·n + u·h_prev, with z = h_prev·W_hhᵀ.
// forward  p: gx (N,3H), W_hh (3H,H), b_hh (3H), h0, y, act (N,3H: r u n; may be gx),
//             hn (N,H: z_n+b_n), z (B,3H)
// backward p: W_hh, h0, y, act, hn, dy, dh, dgx (N,3H; may be act), dzn (N,H: gradient of z_n;
//             may be hn), dz (B,3H: scratch)
// ---------------------------------------------------------------------------------------------
template <typename T>
static void gru_fwd_row(i64 H, const T* x, const T* __restrict z, const T* __restrict b,
                        const T* __restrict hp, T* a, T* __restrict hn, T* __restrict h) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T r = sigm(x[j] + z[j] + b[j]);
        const T u = sigm(x[H + j] + z[H + j] + b[H + j]);
        const T m = z[2 * H + j] + b[2 * H + j];
        const T n = std::tanh(x[2 * H + j] + r * m);
        h[j] = (T(1) - u) * n + u * hp[j];
        a[j] = r;
        a[H + j] = u;
        a[2 * H + j] = n;
        hn[j] = m;
    }
}

template <typename T>
static void gru_bwd_row(i64 H, const T* a, const T* hn, const T* __restrict hp,
                        const T* __restrict dy, T* __restrict dh, T* d, T* __restrict dz,
                        T* dzn) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T r = a[j], u = a[H + j], n = a[2 * H + j];
        const T dhj = dh[j] + dy[j];
        const T dpn = dhj * (T(1) - u) * (T(1) - n * n);
        const T dpr = dpn * hn[j] * r * (T(1) - r);
        const T dpu = dhj * (hp[j] - n) * u * (T(1) - u);
        d[j] = dpr;
        d[H + j] = dpu;
        d[2 * H + j] = dpn;
        dz[j] = dpr;
        dz[H + j] = dpu;
        dz[2 * H + j] = dpn * r;
        dzn[j] = dpn * r;
        dh[j] = dhj * u;
    }
}

template <typename T>
static void gru_forward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const i64 H = g.H, G = 3 * H;
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *b = P<T>(p, 2), *h0 = P<T>(p, 3);
    T *y = W<T>(p, 4), *act = W<T>(p, 5), *hn = W<T>(p, 6), *z = W<T>(p, 7);
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
            gru_fwd_row<T>(H, gx + (o + r) * G, z + r * G, b, hp + r * H, act + (so + r) * G,
                           hn + (so + r) * H, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        });
    }
}

template <typename T>
static void gru_backward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const i64 H = g.H, G = 3 * H;
    const T *Whh = P<T>(p, 0), *h0 = P<T>(p, 1), *y = P<T>(p, 2), *act = P<T>(p, 3);
    const T *hn = P<T>(p, 4), *dy = P<T>(p, 5);
    T *dh = W<T>(p, 6), *dgx = W<T>(p, 7), *dzn = W<T>(p, 8), *dz = W<T>(p, 9);
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) {  // no gradient from this step; dh passes (the product adds 0)
                std::memset(dgx + (o + r) * G, 0, size_t(G) * sizeof(T));
                std::memset(dz + r * G, 0, size_t(G) * sizeof(T));
                std::memset(dzn + (o + r) * H, 0, size_t(H) * sizeof(T));
                return;
            }
            gru_bwd_row<T>(H, act + (o + r) * G, hn + (o + r) * H, hp + r * H, g.grad(dy, o + r),
                           dh + r * H, dgx + (o + r) * G, dz + r * G, dzn + (o + r) * H);
        });
        step_mm<T, false>(g, s, n, H, G, dz, G, Whh, H, T(1), dh, H);
        g.unturn(dh, s, H);
    }
}

// ---------------------------------------------------------------------------------------------
// The "reset before the product" family: GRU (reset_after=False), MGU, MUT1, MUT2, MUT3.
//   u = σ(x_u + [src_u·W_uᵀ] + b_u)   src_u = h_prev, tanh(h_prev) (MUT3) or none (MUT1)
//   r = σ(x_r + h_prev·W_rᵀ + b_r)    (MGU: r is u)
//   n = tanh(x_n + (r·h_prev)·W_nᵀ + b_n)
//   h = u·n + (1-u)·h_prev  (fresh = 1: MGU, MUT*)   or   (1-u)·n + u·h_prev  (GRU)
// Columns of gx/act/b_hh (width G = 2H or 3H): u at cu, r at cr, n at cn = G - H; rows of
// W_hh: wu, wr, wn. v = [cu, cr, wu, wr, wn | src_u << 32 | fresh << 34], -1 for "none";
// r is u when cr == cu.
// forward  p: gx (N,G), W_hh, b_hh (G), h0, y, act (N,G; may be gx), rh (N,H: r·h_prev),
//             th (N,H: tanh(h_prev), MUT3 only), z (B,G)
// backward p: W_hh, h0, y, act, rh, th, dy, dh, dgx (N,G; may be act), dx (B,H: scratch),
//             du (B,H: scratch, MGU)
// ---------------------------------------------------------------------------------------------
struct RB {
    i64 cu, cr, cn, wu, wr, wn, src_u;
    bool fresh, shared_r, merged;
    RB(const Geo& g) {
        cu = g.v[0];
        cr = g.v[1];
        wu = g.v[2];
        wr = g.v[3];
        wn = g.v[4] & 0xFFFFFFFF;
        src_u = (g.v[4] >> 32) & 3;
        fresh = (g.v[4] >> 34) & 1;
        shared_r = cr == cu;
        cn = (shared_r ? 1 : 2) * g.H;
        // u and r from h_prev with adjacent rows in W_hh and columns in gx: one product
        merged = src_u == 1 && !shared_r && wu == cu && wr == cr && (cu - cr == g.H || cr - cu == g.H);
    }
};

template <typename T, bool FRESH, bool SHARED, bool UREC>
static void rb_fwd_row1(i64 H, i64 cu, i64 cr, const T* x, const T* __restrict z,
                        const T* __restrict b, const T* __restrict hp, T* a, T* __restrict rh) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T u = sigm(x[cu + j] + (UREC ? z[cu + j] : T(0)) + b[cu + j]);
        const T r = SHARED ? u : sigm(x[cr + j] + z[cr + j] + b[cr + j]);
        a[cu + j] = u;
        if (!SHARED) a[cr + j] = r;
        rh[j] = r * hp[j];
    }
}

template <typename T, bool FRESH>
static void rb_fwd_row2(i64 H, i64 cu, i64 cn, const T* x, const T* __restrict z,
                        const T* __restrict b, const T* __restrict hp, T* a, T* __restrict h) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T n = std::tanh(x[cn + j] + z[cn + j] + b[cn + j]);
        const T u = a[cu + j];
        a[cn + j] = n;
        h[j] = FRESH ? u * n + (T(1) - u) * hp[j] : (T(1) - u) * n + u * hp[j];
    }
}

template <typename T, bool FRESH, bool SHARED>
static void rb_bwd_row1(i64 H, i64 cu, i64 cn, const T* a, const T* __restrict hp,
                        const T* __restrict dy, T* __restrict dh, T* d, T* __restrict du_) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T u = a[cu + j], n = a[cn + j];
        const T dhj = dh[j] + dy[j];
        const T keep = FRESH ? T(1) - u : u;  // weight of h_prev in the mix
        const T du = FRESH ? dhj * (n - hp[j]) : dhj * (hp[j] - n);
        d[cn + j] = dhj * (T(1) - keep) * (T(1) - n * n);
        // MGU: du waits for dr in du_, and u (= r) stays in a[cu] for pass 2
        if (SHARED)
            du_[j] = du;
        else
            d[cu + j] = du * u * (T(1) - u);
        dh[j] = dhj * keep;
    }
}

template <typename T, bool SHARED>
static void rb_bwd_row2(i64 H, i64 cu, i64 cr, const T* a, const T* __restrict hp,
                        const T* __restrict drh, const T* __restrict du_, T* __restrict dh,
                        T* d) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T r = a[cr + j];
        const T dr = drh[j] * hp[j];
        dh[j] += drh[j] * r;
        if (SHARED)
            d[cu + j] = (du_[j] + dr) * r * (T(1) - r);
        else
            d[cr + j] = dr * r * (T(1) - r);
    }
}

template <typename T, bool FRESH, bool SHARED, bool UREC>
static void rb_forward_impl(const Geo& g, const RB& k, void* const* p) {
    const i64 H = g.H, G = k.cn + H;
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *b = P<T>(p, 2), *h0 = P<T>(p, 3);
    T *y = W<T>(p, 4), *act = W<T>(p, 5), *rh = W<T>(p, 6), *th = W<T>(p, 7), *z = W<T>(p, 8);
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        if (k.merged) {
            const i64 c = k.cu < k.cr ? k.cu : k.cr;
            step_mm<T, true>(g, s, n, 2 * H, H, hp, H, Whh + c * H, H, T(0), z + c, G);
        } else {
            if (!SHARED)
                step_mm<T, true>(g, s, n, H, H, hp, H, Whh + k.wr * H, H, T(0), z + k.cr, G);
            if (k.src_u == 1)
                step_mm<T, true>(g, s, n, H, H, hp, H, Whh + k.wu * H, H, T(0), z + k.cu, G);
            if (k.src_u == 2) {
                T* thb = th + so * H;
                for (i64 q = 0; q < n * H; ++q) thb[q] = std::tanh(hp[q]);
                step_mm<T, true>(g, s, n, H, H, thb, H, Whh + k.wu * H, H, T(0), z + k.cu, G);
            }
        }
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(rh + (so + r) * H, 0, size_t(H) * sizeof(T));
            rb_fwd_row1<T, FRESH, SHARED, UREC>(H, k.cu, k.cr, gx + (o + r) * G, z + r * G, b,
                                                hp + r * H, act + (so + r) * G,
                                                rh + (so + r) * H);
        });
        step_mm<T, true>(g, s, n, H, H, rh + so * H, H, Whh + k.wn * H, H, T(0), z + k.cn, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
            rb_fwd_row2<T, FRESH>(H, k.cu, k.cn, gx + (o + r) * G, z + r * G, b, hp + r * H,
                                  act + (so + r) * G, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        });
    }
}

template <typename T, bool FRESH, bool SHARED>
static void rb_backward_impl(const Geo& g, const RB& k, void* const* p) {
    const i64 H = g.H, G = k.cn + H;
    const T *Whh = P<T>(p, 0), *h0 = P<T>(p, 1), *y = P<T>(p, 2), *act = P<T>(p, 3);
    const T *th = P<T>(p, 5), *dy = P<T>(p, 6);
    T *dh = W<T>(p, 7), *dgx = W<T>(p, 8), *dx = W<T>(p, 9), *du = W<T>(p, 10);
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        const T* dgo = dgx + o * G;
        // 1. through the mix and the candidate's tanh
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) {  // zero gradient rows: every product below adds 0 to dh
                std::memset(dgx + (o + r) * G, 0, size_t(G) * sizeof(T));
                if (SHARED) std::memset(du + r * H, 0, size_t(H) * sizeof(T));
                return;
            }
            rb_bwd_row1<T, FRESH, SHARED>(H, k.cu, k.cn, act + (o + r) * G, hp + r * H,
                                          g.grad(dy, o + r), dh + r * H, dgx + (o + r) * G,
                                          du + r * H);
        });
        // 2. d(r·h_prev) = dpre_n · W_n, then through r
        step_mm<T, false>(g, s, n, H, H, dgo + k.cn, G, Whh + k.wn * H, H, T(0), dx, H);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return;
            rb_bwd_row2<T, SHARED>(H, k.cu, k.cr, act + (o + r) * G, hp + r * H, dx + r * H,
                                   du + r * H, dh + r * H, dgx + (o + r) * G);
        });
        // 3. the gates' recurrent products
        if (k.merged) {
            const i64 c = k.cu < k.cr ? k.cu : k.cr;
            step_mm<T, false>(g, s, n, H, 2 * H, dgo + c, G, Whh + c * H, H, T(1), dh, H);
        } else {
            if (!SHARED)
                step_mm<T, false>(g, s, n, H, H, dgo + k.cr, G, Whh + k.wr * H, H, T(1), dh, H);
            if (k.src_u == 1)
                step_mm<T, false>(g, s, n, H, H, dgo + k.cu, G, Whh + k.wu * H, H, T(1), dh, H);
            if (k.src_u == 2) {
                step_mm<T, false>(g, s, n, H, H, dgo + k.cu, G, Whh + k.wu * H, H, T(0), dx, H);
                const T* thb = th + o * H;
                for (i64 r = 0; r < n; ++r) {  // (a frozen row's dx is not formed)
                    if (g.frozen(s, r)) continue;
                    for (i64 q = r * H; q < (r + 1) * H; ++q)
                        dh[q] += dx[q] * (T(1) - thb[q] * thb[q]);
                }
            }
        }
        g.unturn(dh, s, H);
    }
}

template <typename T>
static void rb_forward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const RB k(g);
    if (k.shared_r)  // MGU
        rb_forward_impl<T, true, true, true>(g, k, p);
    else if (!k.fresh)  // GRU
        rb_forward_impl<T, false, false, true>(g, k, p);
    else if (k.src_u == 0)  // MUT1
        rb_forward_impl<T, true, false, false>(g, k, p);
    else  // MUT2, MUT3
        rb_forward_impl<T, true, false, true>(g, k, p);
}

template <typename T>
static void rb_backward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const RB k(g);
    if (k.shared_r)
        rb_backward_impl<T, true, true>(g, k, p);
    else if (!k.fresh)
        rb_backward_impl<T, false, false>(g, k, p);
    else
        rb_backward_impl<T, true, false>(g, k, p);
}

// ---------------------------------------------------------------------------------------------
// NAS (Zoph & Le 2017): branches k = 0..7 of x = gx and m = h_prev·W_hhᵀ + b_hh, see NASCell.
// The saved branches are l_k, except in slot 3, which keeps x_3: branch 3 multiplies x_3 by m_3,
// so its derivative needs both factors (m_3 is saved apart), and l_3 = relu(x_3·m_3) is cheap.
// forward  p: gx (N,8H), W_hh (8H,H), b_hh (8H), h0, c0, y, l (N,8H; may be gx), cs (N,H),
//             m3 (N,H), z (B,8H)
// backward p: W_hh, h0, c0, y, l, cs, m3, dy, dh, dc, dgx (N,8H; may be l),
//             dm3 (N,H: the gradient of m_3, which differs from dgx's slot 3; may be m3),
//             dz (B,8H)
// ---------------------------------------------------------------------------------------------
template <typename T>
static void nas_fwd_row(i64 H, const T* x, const T* __restrict z, const T* __restrict b,
                        const T* __restrict cp, T* l, T* __restrict c, T* __restrict m,
                        T* __restrict h) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T x3 = x[3 * H + j], m3 = z[3 * H + j] + b[3 * H + j];
        const T l0 = sigm(x[j] + z[j] + b[j]);
        const T l1 = relu(x[H + j] + z[H + j] + b[H + j]);
        const T l2 = sigm(x[2 * H + j] + z[2 * H + j] + b[2 * H + j]);
        const T l3 = relu(x3 * m3);
        const T l4 = std::tanh(x[4 * H + j] + z[4 * H + j] + b[4 * H + j]);
        const T l5 = sigm(x[5 * H + j] + z[5 * H + j] + b[5 * H + j]);
        const T l6 = std::tanh(x[6 * H + j] + z[6 * H + j] + b[6 * H + j]);
        const T l7 = sigm(x[7 * H + j] + z[7 * H + j] + b[7 * H + j]);
        const T p0 = std::tanh(l0 * l1), p1 = std::tanh(l2 + l3);
        const T p2 = std::tanh(l4 * l5), p3 = sigm(l6 + l7);
        const T cn = std::tanh(p0 + cp[j]) * p1;
        h[j] = std::tanh(cn * std::tanh(p2 + p3));
        c[j] = cn;
        l[j] = l0;
        l[H + j] = l1;
        l[2 * H + j] = l2;
        l[3 * H + j] = x3;
        l[4 * H + j] = l4;
        l[5 * H + j] = l5;
        l[6 * H + j] = l6;
        l[7 * H + j] = l7;
        m[j] = m3;
    }
}

template <typename T>
static void nas_bwd_row(i64 H, const T* l, const T* __restrict c, const T* __restrict cp,
                        const T* m, const T* __restrict h, const T* __restrict dy,
                        const T* __restrict dh, T* __restrict dc, T* d, T* __restrict dz,
                        T* dm3) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T l0 = l[j], l1 = l[H + j], l2 = l[2 * H + j], x3 = l[3 * H + j];
        const T l4 = l[4 * H + j], l5 = l[5 * H + j], l6 = l[6 * H + j], l7 = l[7 * H + j];
        const T m3 = m[j], l3 = relu(x3 * m3);
        const T p0 = std::tanh(l0 * l1), p1 = std::tanh(l2 + l3);
        const T p2 = std::tanh(l4 * l5), p3 = sigm(l6 + l7);
        const T t0 = std::tanh(p0 + cp[j]), q = std::tanh(p2 + p3);
        // h = tanh(c·q), q = tanh(p2 + p3)
        const T dhj = dh[j] + dy[j];
        const T dcq = dhj * (T(1) - h[j] * h[j]);
        const T dct = dc[j] + dcq * q;
        const T dpq = dcq * c[j] * (T(1) - q * q);  // d(p2 + p3)
        // c = tanh(p0 + c_prev)·p1
        const T dpre0 = dct * p1 * (T(1) - t0 * t0);  // d(p0 + c_prev)
        const T dp1 = dct * t0 * (T(1) - p1 * p1);    // d(l2 + l3)
        const T a0 = dpre0 * (T(1) - p0 * p0);        // d(l0·l1)
        const T a2 = dpq * (T(1) - p2 * p2);          // d(l4·l5)
        const T a3 = dpq * p3 * (T(1) - p3);          // d(l6 + l7)
        const T d3 = dp1 * T(l3 > T(0));              // d(x3·m3)
        const T e0 = a0 * l1 * l0 * (T(1) - l0), e1 = a0 * l0 * T(l1 > T(0));
        const T e2 = dp1 * l2 * (T(1) - l2), e4 = a2 * l5 * (T(1) - l4 * l4);
        const T e5 = a2 * l4 * l5 * (T(1) - l5), e6 = a3 * (T(1) - l6 * l6);
        const T e7 = a3 * l7 * (T(1) - l7);
        d[j] = dz[j] = e0;
        d[H + j] = dz[H + j] = e1;
        d[2 * H + j] = dz[2 * H + j] = e2;
        d[3 * H + j] = d3 * m3;
        dz[3 * H + j] = d3 * x3;
        d[4 * H + j] = dz[4 * H + j] = e4;
        d[5 * H + j] = dz[5 * H + j] = e5;
        d[6 * H + j] = dz[6 * H + j] = e6;
        d[7 * H + j] = dz[7 * H + j] = e7;
        dm3[j] = d3 * x3;
        dc[j] = dpre0;
    }
}

template <typename T>
static void nas_forward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const i64 H = g.H, G = 8 * H;
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *b = P<T>(p, 2), *h0 = P<T>(p, 3);
    const T* c0 = P<T>(p, 4);
    T *y = W<T>(p, 5), *L = W<T>(p, 6), *cs = W<T>(p, 7), *m3 = W<T>(p, 8), *z = W<T>(p, 9);
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        const T* cp = g.prior(s ? cs + g.save(s - 1) * H : c0, s, H, 1, c0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) {  // zero output, c carried
                std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
                std::memcpy(cs + (so + r) * H, cp + r * H, size_t(H) * sizeof(T));
                return;
            }
            nas_fwd_row<T>(H, gx + (o + r) * G, z + r * G, b, cp + r * H, L + (so + r) * G,
                           cs + (so + r) * H, m3 + (so + r) * H, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        });
    }
}

template <typename T>
static void nas_backward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const i64 H = g.H, G = 8 * H;
    const T *Whh = P<T>(p, 0), *c0 = P<T>(p, 2), *y = P<T>(p, 3), *L = P<T>(p, 4);
    const T *cs = P<T>(p, 5), *m3 = P<T>(p, 6), *dy = P<T>(p, 7);
    T *dh = W<T>(p, 8), *dc = W<T>(p, 9), *dgx = W<T>(p, 10), *dm3 = W<T>(p, 11);
    T* dz = W<T>(p, 12);
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* cp = g.prior(s ? cs + g.off[s - 1] * H : c0, s, H, 1, c0);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) {
                std::memset(dgx + (o + r) * G, 0, size_t(G) * sizeof(T));
                std::memset(dz + r * G, 0, size_t(G) * sizeof(T));
                std::memset(dm3 + (o + r) * H, 0, size_t(H) * sizeof(T));
                return;
            }
            nas_bwd_row<T>(H, L + (o + r) * G, cs + (o + r) * H, cp + r * H,
                           m3 + (o + r) * H, y + (o + r) * H, g.grad(dy, o + r), dh + r * H,
                           dc + r * H, dgx + (o + r) * G, dz + r * G, dm3 + (o + r) * H);
        });
        step_mm<T, false>(g, s, n, H, G, dz, G, Whh, H, T(0), dh, H, true);
        g.unturn(dh, s, H);
        g.unturn(dc, s, H);
    }
}

// ---------------------------------------------------------------------------------------------
// Layer-normalised LSTM (per-gate LN of x + h_prev·W_hhᵀ, LN of c), see LayerNormLSTMCell.
// scalars[0] = eps.
// forward  p: gx (N,4H), W_hh (4H,H), gamma (4H), beta (4H), gamma_c (H), beta_c (H), h0, c0,
//             y, act (2B,4H: scratch), xhat (N,4H: normalised gate inputs; may be gx),
//             rstd (N,5), cs (N,H), chat (N,H: normalised c), z (B,4H)
// backward p: W_hh, gamma, gamma_c, beta_c, c0, beta, xhat, rstd, cs, chat, dy, dh, dc,
//             dgx (N,4H; may be xhat), acc (threads, 10H: dgamma, dbeta, dgamma_c, dbeta_c),
//             work (threads, 10H: scratch: the gates, dx̂ before the gates' layer norm, and
//             pass 1's do and dĉ, so that a row's x̂ is read whole before dgx overwrites it)
// The gates are not saved: the backward recomputes them from xhat (4 fewer H per row).
// ---------------------------------------------------------------------------------------------
template <typename T>
static void layer_norm_row(i64 H, T eps, const T* __restrict v, T* __restrict xhat, T* rstd) {
    T mean = 0, var = 0;
    for (i64 j = 0; j < H; ++j) mean += v[j];
    mean /= T(H);
    for (i64 j = 0; j < H; ++j) var += (v[j] - mean) * (v[j] - mean);
    const T rs = T(1) / std::sqrt(var / T(H) + eps);
    for (i64 j = 0; j < H; ++j) xhat[j] = (v[j] - mean) * rs;
    *rstd = rs;
}

template <typename T>
static void add_row(i64 n, const T* __restrict x, T* __restrict z) {
    for (i64 j = 0; j < n; ++j) z[j] += x[j];
}

template <typename T>
static void lnlstm_cell_row(i64 H, const T* __restrict xh, const T* __restrict gam,
                            const T* __restrict bet, const T* __restrict cp, T* __restrict a,
                            T* __restrict c) {
    for (i64 j = 0; j < H; ++j) {
        const T i = sigm(gam[j] * xh[j] + bet[j]);
        const T f = sigm(gam[H + j] * xh[H + j] + bet[H + j]);
        const T gg = std::tanh(gam[2 * H + j] * xh[2 * H + j] + bet[2 * H + j]);
        const T o = sigm(gam[3 * H + j] * xh[3 * H + j] + bet[3 * H + j]);
        a[j] = i;
        a[H + j] = f;
        a[2 * H + j] = gg;
        a[3 * H + j] = o;
        c[j] = f * cp[j] + i * gg;
    }
}

template <typename T>
static void lnlstm_gates_row(i64 H, const T* __restrict xh, const T* __restrict gam,
                             const T* __restrict bet, T* __restrict a) {
    for (i64 j = 0; j < H; ++j) {
        a[j] = sigm(gam[j] * xh[j] + bet[j]);
        a[H + j] = sigm(gam[H + j] * xh[H + j] + bet[H + j]);
        a[2 * H + j] = std::tanh(gam[2 * H + j] * xh[2 * H + j] + bet[2 * H + j]);
        a[3 * H + j] = sigm(gam[3 * H + j] * xh[3 * H + j] + bet[3 * H + j]);
    }
}

template <typename T>
static void lnlstm_out_row(i64 H, const T* __restrict o, const T* __restrict chat,
                           const T* __restrict gamc, const T* __restrict betc, T* __restrict h) {
    for (i64 j = 0; j < H; ++j) h[j] = o[j] * std::tanh(gamc[j] * chat[j] + betc[j]);
}

// pass 1 of the backward: the output gate and the cell's layer norm. Returns Σ dĉ, Σ dĉ·ĉ
// in s[0], s[1]; leaves dĉ in t[0..H) and do in t[H..2H) for pass 2.
template <typename T>
static void lnlstm_bwd_row1(i64 H, const T* __restrict a, const T* __restrict chat,
                            const T* __restrict gamc, const T* __restrict betc,
                            const T* __restrict dy, const T* __restrict dh, T* __restrict t,
                            T* __restrict acc, T* s) {
    T s1 = 0, s2 = 0;
    for (i64 j = 0; j < H; ++j) {
        const T dhj = dh[j] + dy[j];
        const T tc = std::tanh(gamc[j] * chat[j] + betc[j]);
        const T dln = dhj * a[3 * H + j] * (T(1) - tc * tc);
        acc[8 * H + j] += dln * chat[j];
        acc[9 * H + j] += dln;
        const T dxc = dln * gamc[j];
        s1 += dxc;
        s2 += dxc * chat[j];
        t[H + j] = dhj * tc;
        t[j] = dxc;
    }
    s[0] = s1;
    s[1] = s2;
}

// pass 2: the memory cell and the gates' affine γ, β; leaves dx̂ in d, returns its sums in S.
template <typename T>
static void lnlstm_bwd_row2(i64 H, T rstd_c, T m1, T m2, const T* __restrict a,
                            const T* __restrict chat, const T* __restrict cp,
                            const T* __restrict xh, const T* __restrict gam,
                            const T* __restrict t, T* __restrict dc, T* __restrict d,
                            T* __restrict acc, T* S) {
    T S1[4] = {0, 0, 0, 0}, S2[4] = {0, 0, 0, 0};
    for (i64 j = 0; j < H; ++j) {
        const T i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j];
        const T dct = dc[j] + rstd_c * (t[j] - m1 - chat[j] * m2);
        const T dz[4] = {dct * gg * i * (T(1) - i), dct * cp[j] * f * (T(1) - f),
                         dct * i * (T(1) - gg * gg), t[H + j] * o * (T(1) - o)};
        dc[j] = dct * f;
        for (int k = 0; k < 4; ++k) {
            acc[k * H + j] += dz[k] * xh[k * H + j];
            acc[4 * H + k * H + j] += dz[k];
            const T dx = dz[k] * gam[k * H + j];
            S1[k] += dx;
            S2[k] += dx * xh[k * H + j];
            d[k * H + j] = dx;
        }
    }
    for (int k = 0; k < 4; ++k) {
        S[k] = S1[k];
        S[4 + k] = S2[k];
    }
}

// d = the gradient of the layer norm's input from dx̂ = dx; d may be xh itself
template <typename T>
static void ln_backward_row(i64 H, T rstd, T m1, T m2, const T* xh, const T* __restrict dx,
                            T* d) {
#pragma omp simd
    for (i64 j = 0; j < H; ++j) d[j] = rstd * (dx[j] - m1 - xh[j] * m2);
}

template <typename T>
static void lnlstm_forward(const i64* geo, void* const* p, const double* sc, void* const* rows) {
    const Geo g(geo, rows);
    const i64 H = g.H, G = 4 * H;
    const T eps = T(sc[0]);
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *gam = P<T>(p, 2), *bet = P<T>(p, 3);
    const T *gamc = P<T>(p, 4), *betc = P<T>(p, 5), *h0 = P<T>(p, 6), *c0 = P<T>(p, 7);
    T *y = W<T>(p, 8), *act = W<T>(p, 9), *xh = W<T>(p, 10), *rs = W<T>(p, 11);
    T *cs = W<T>(p, 12), *ch = W<T>(p, 13), *z = W<T>(p, 14);
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        const T* cp = g.prior(s ? cs + g.save(s - 1) * H : c0, s, H, 1, c0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) {  // zero output, c carried
                std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
                std::memcpy(cs + (so + r) * H, cp + r * H, size_t(H) * sizeof(T));
                return;
            }
            T* zr = z + r * G;
            T* xr = xh + (so + r) * G;
            T* rr = rs + (so + r) * 5;
            T* c = cs + (so + r) * H;
            T* a = act + ((s & 1) * g.B + r) * G;
            add_row<T>(G, gx + (o + r) * G, zr);
            for (i64 k = 0; k < 4; ++k) layer_norm_row<T>(H, eps, zr + k * H, xr + k * H, rr + k);
            lnlstm_cell_row<T>(H, xr, gam, bet, cp + r * H, a, c);
            layer_norm_row<T>(H, eps, c, ch + (so + r) * H, rr + 4);
            lnlstm_out_row<T>(H, a + 3 * H, ch + (so + r) * H, gamc, betc, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        });
    }
}

template <typename T>
static void lnlstm_backward(const i64* geo, void* const* p, const double*, void* const* rows) {
    const Geo g(geo, rows);
    const i64 H = g.H, G = 4 * H;
    const T *Whh = P<T>(p, 0), *gam = P<T>(p, 1), *gamc = P<T>(p, 2), *betc = P<T>(p, 3);
    const T *c0 = P<T>(p, 4), *bet = P<T>(p, 5), *xh = P<T>(p, 6), *rs = P<T>(p, 7);
    const T *cs = P<T>(p, 8), *ch = P<T>(p, 9), *dy = P<T>(p, 10);
    T *dh = W<T>(p, 11), *dc = W<T>(p, 12), *dgx = W<T>(p, 13), *acc = W<T>(p, 14);
    T* work = W<T>(p, 15);
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* cp = g.prior(s ? cs + g.off[s - 1] * H : c0, s, H, 1, c0);
        for_rows(g, n, G, [&](i64 r, int t) {
            if (g.frozen(s, r)) return (void)std::memset(dgx + (o + r) * G, 0, size_t(G) * sizeof(T));
            const T* xr = xh + (o + r) * G;
            T *a = work + t * 10 * H, *dx = a + G, *t12 = a + 2 * G;
            lnlstm_gates_row<T>(H, xr, gam, bet, a);
            const T* rr = rs + (o + r) * 5;
            const T* cr = ch + (o + r) * H;
            T* d = dgx + (o + r) * G;
            T* ac = acc + t * 10 * H;
            T s12[2], S[8];
            lnlstm_bwd_row1<T>(H, a, cr, gamc, betc, g.grad(dy, o + r), dh + r * H, t12, ac, s12);
            lnlstm_bwd_row2<T>(H, rr[4], s12[0] / T(H), s12[1] / T(H), a, cr, cp + r * H, xr, gam,
                               t12, dc + r * H, dx, ac, S);
            for (int k = 0; k < 4; ++k)
                ln_backward_row<T>(H, rr[k], S[k] / T(H), S[4 + k] / T(H), xr + k * H,
                                   dx + k * H, d + k * H);
        });
        step_mm<T, false>(g, s, n, H, G, dgx + o * G, G, Whh, H, T(0), dh, H, true);
        g.unturn(dh, s, H);
        g.unturn(dc, s, H);
    }
}

// ---------------------------------------------------------------------------------------------
// Moving rows between the padded (T·B) layout and the packed rows (engine/packing.py)
// ---------------------------------------------------------------------------------------------
// torch's way, index_select and then index_fill_, passes over the padding twice when it scatters
// packed rows; these do one pass, rows of `bytes` bytes, split over `threads` threads when there
// is enough to move (see row_moves.NATIVE_ROWS for what it gains).
template <typename F>
static void over_rows(i64 count, i64 bytes, int threads, F&& f) {
    if (threads <= 1 || count < 2 || count * bytes < (i64(1) << 16)) {
        f(i64(0), count);
        return;
    }
    const int nt = int(threads < count ? threads : count);
#pragma omp parallel num_threads(nt)
    {
        const i64 t = omp_get_thread_num(), k = omp_get_num_threads();
        f(count * t / k, count * (t + 1) / k);
    }
}

// dst[p] = src[from[p]] for p < count.
extern "C" void rnnkit_take_rows(const void* src, const i64* from, void* dst, i64 count, i64 bytes,
                                 int threads) {
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    over_rows(count, bytes, threads, [&](i64 lo, i64 hi) {
        for (i64 p = lo; p < hi; ++p) std::memcpy(d + p * bytes, s + from[p] * bytes, size_t(bytes));
    });
}

// dst[p] = 0 for the npad positions p in pad (ascending), dst[p] = src[from[p]] for the others,
// p < count: a scatter of packed rows to the padded layout, zero in the padding, in one pass.
extern "C" void rnnkit_place_rows(const void* src, const i64* from, const i64* pad, i64 npad,
                                  void* dst, i64 count, i64 bytes, int threads) {
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    over_rows(count, bytes, threads, [&](i64 lo, i64 hi) {
        i64 j = std::lower_bound(pad, pad + npad, lo) - pad;  // the first padding at or after lo
        for (i64 p = lo; p < hi; ++p) {
            if (j < npad && pad[j] == p) {
                std::memset(d + p * bytes, 0, size_t(bytes));
                ++j;
            } else {
                std::memcpy(d + p * bytes, s + from[p] * bytes, size_t(bytes));
            }
        }
    });
}

// dst[at[p]] = 0 for p < count.
extern "C" void rnnkit_zero_rows(void* dst, const i64* at, i64 count, i64 bytes, int threads) {
    char* d = static_cast<char*>(dst);
    over_rows(count, bytes, threads, [&](i64 lo, i64 hi) {
        for (i64 p = lo; p < hi; ++p) std::memset(d + at[p] * bytes, 0, size_t(bytes));
    });
}

// dst[at[p]] += src[p] for p < count, rows of `width` elements; the rows at[p] are distinct, so
// the threads never add into the same row (the second direction's input gradient of a
// bidirectional layer, added into the padded gradient the first one's scatter made).
template <typename T>
static void add_rows(const T* src, const i64* at, T* dst, i64 count, i64 width, int threads) {
    over_rows(count, width * i64(sizeof(T)), threads, [&](i64 lo, i64 hi) {
        for (i64 p = lo; p < hi; ++p) {
            const T* __restrict s = src + p * width;
            T* __restrict d = dst + at[p] * width;
            for (i64 j = 0; j < width; ++j) d[j] += s[j];
        }
    });
}

// Whether rows at[0..count) of src (rows of `width` values) hold finite values only: a masked
// loop's input projection may then read the padding as it is (its weight's gradient meets the
// padding only multiplied by zero).
template <typename T>
static int rows_finite(const T* src, const i64* at, i64 count, i64 width) {
    for (i64 p = 0; p < count; ++p) {
        const T* r = src + at[p] * width;
        T sum = 0;  // 0·x is NaN for x infinite or NaN: one pass, no branch per value
#pragma omp simd reduction(+ : sum)
        for (i64 j = 0; j < width; ++j) sum += T(0) * r[j];
        if (sum != sum) return 0;
    }
    return 1;
}

extern "C" int rnnkit_rows_finite_f32(const float* src, const i64* at, i64 count, i64 width) {
    return rows_finite(src, at, count, width);
}

extern "C" int rnnkit_rows_finite_f64(const double* src, const i64* at, i64 count, i64 width) {
    return rows_finite(src, at, count, width);
}

extern "C" void rnnkit_add_rows_f32(const float* src, const i64* at, float* dst, i64 count,
                                    i64 width, int threads) {
    add_rows(src, at, dst, count, width, threads);
}

extern "C" void rnnkit_add_rows_f64(const double* src, const i64* at, double* dst, i64 count,
                                    i64 width, int threads) {
    add_rows(src, at, dst, count, width, threads);
}

// ---------------------------------------------------------------------------------------------
// Column blocks of an input projection (cells/mut.py): an elementwise block written straight into
// its columns of the (N, G) projection, and its gradient read from there, so that a cell whose
// projection mixes products and elementwise blocks needs no concatenation
// ---------------------------------------------------------------------------------------------
// dst[r·ldd + j] = act(src[r·lds + j]) + bias[j], r < rows, j < width; act: 0 identity, 1 tanh.
template <typename T>
static void block_fill(int act, const T* src, i64 lds, const T* bias, T* dst, i64 ldd, i64 rows,
                       i64 width, int threads) {
    over_rows(rows, width * i64(sizeof(T)), threads, [&](i64 lo, i64 hi) {
        for (i64 r = lo; r < hi; ++r) {
            const T* __restrict s = src + r * lds;
            T* __restrict d = dst + r * ldd;
            if (act == 1) {
                for (i64 j = 0; j < width; ++j) d[j] = std::tanh(s[j]) + bias[j];
            } else {
                for (i64 j = 0; j < width; ++j) d[j] = s[j] + bias[j];
            }
        }
    });
}

// dst[r·width + j] = g[r·ldg + j] · act'(x[r·ldx + j]): act' = 1 - tanh(x)² (act 1) or 1 (act 0).
template <typename T>
static void block_grad(int act, const T* g, i64 ldg, const T* x, i64 ldx, T* dst, i64 rows,
                       i64 width, int threads) {
    over_rows(rows, width * i64(sizeof(T)), threads, [&](i64 lo, i64 hi) {
        for (i64 r = lo; r < hi; ++r) {
            const T* __restrict gr = g + r * ldg;
            const T* __restrict xr = x + r * ldx;
            T* __restrict d = dst + r * width;
            if (act == 1) {
                for (i64 j = 0; j < width; ++j) {
                    const T u = std::tanh(xr[j]);
                    d[j] = gr[j] * (T(1) - u * u);
                }
            } else {
                for (i64 j = 0; j < width; ++j) d[j] = gr[j];
            }
        }
    });
}

#define RNNKIT_BLOCKS(T, suffix)                                                                  \
    extern "C" void rnnkit_block_fill_##suffix(int act, const T* src, i64 lds, const T* bias,    \
                                               T* dst, i64 ldd, i64 rows, i64 width,           \
                                               int threads) {                                  \
        block_fill<T>(act, src, lds, bias, dst, ldd, rows, width, threads);                     \
    }                                                                                            \
    extern "C" void rnnkit_block_grad_##suffix(int act, const T* g, i64 ldg, const T* x, i64 ldx, \
                                               T* dst, i64 rows, i64 width, int threads) {     \
        block_grad<T>(act, g, ldg, x, ldx, dst, rows, width, threads);                          \
    }
RNNKIT_BLOCKS(float, f32)
RNNKIT_BLOCKS(double, f64)

// ---------------------------------------------------------------------------------------------
// C entry points
// ---------------------------------------------------------------------------------------------
#define RNNKIT_ENTRY(cell, direction, T, suffix)                                              \
    extern "C" void rnnkit_##cell##_##direction##_##suffix(const i64* g, void* const* p,         \
                                                          const double* s, void* const* rows) { \
        cell##_##direction<T>(g, p, s, rows);                                                    \
    }
#define RNNKIT_EXPORT(cell)                 \
    RNNKIT_ENTRY(cell, forward, float, f32)  \
    RNNKIT_ENTRY(cell, forward, double, f64) \
    RNNKIT_ENTRY(cell, backward, float, f32) \
    RNNKIT_ENTRY(cell, backward, double, f64)

RNNKIT_EXPORT(elman)
RNNKIT_EXPORT(lstm)
RNNKIT_EXPORT(gru)
RNNKIT_EXPORT(rb)
RNNKIT_EXPORT(nas)
RNNKIT_EXPORT(lnlstm)
