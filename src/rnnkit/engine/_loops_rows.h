// Part of _loops.cpp, one translation unit: row copies between the padded and packed layouts, the finite check, column blocks.
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

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
