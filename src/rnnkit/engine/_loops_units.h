// Part of _loops.cpp, one translation unit: the split by hidden units, one parallel region a call.
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

// ---------------------------------------------------------------------------------------------
// The split by hidden units
// ---------------------------------------------------------------------------------------------
// On the column split (by_panels, for_rows) every step opens two parallel regions: the product
// splits W_hh's output columns over the threads, then the pointwise pass splits the rows. Each
// region's start and end costs a fork and a join (about 0.75 µs together with libgomp on the
// Intel Xeon), and the pass reads the half of z that the other core's product wrote. Here
// thread t owns the hidden units lo..hi-1 instead: its product computes z's columns of those
// units in every gate block (q·H + lo .. q·H + hi, packed once per call as before), its
// pointwise pass the same units of every row, so the pass reads only what its own core wrote,
// and the whole call is one parallel region with one barrier a step (before the next product,
// which reads every unit of h; the reset-before family meets at two or three, before each
// product that reads what a pass wrote). The sums are the same, in the same order, as on the
// column split: each output column is Σ over kk in order whichever thread computes it. The
// layer-normalised LSTM keeps the column split: its pass sums over every unit of a row, and
// adding the threads' sums up took five barriers a step (1.03-1.29 of the column split).

static int g_units = 1;
extern "C" void rnnkit_set_units(int on) { g_units = on; }
extern "C" int rnnkit_units() { return g_units; }
// Calls that ran split by units in this process (for tests).
static std::atomic<unsigned long long> g_units_count{0};
extern "C" unsigned long long rnnkit_units_count() {
    return g_units_count.load(std::memory_order_relaxed);
}

// How many threads a call splits its hidden units over: its threads when its recurrent products
// take the own kernel and split their columns (own_threads, on the call's batch, for its
// product (B, n) over k) and its step is small: at most UNITS_MAX_ROWS rows and UNITS_MAX_MACS
// multiply-adds in its `products` such products; else 1 (the call keeps the column split).
// Never for a masked call, whose steps hold and gather rows of every unit around the products,
// nor when a thread would get less than a panel of units. Measured on the Intel Xeon, 2
// threads, T = 100, time split by units over the column split, paired (python
// benchmarks/units.py; docs/benchmarks.md, "The split by hidden units"): B = 1, H = 256,
// training 0.85-0.96, forward 0.83-0.93, every cell here; B = 4 to 16 0.92-1.02 up to an
// LSTM's 2^21 multiply-adds a step (B = 8, H = 256), NAS's 2^22 1.02-1.03; LSTM B = 12
// (3·2^20) 1.01, GRU B = 24 and 32 at H = 256 1.00-1.04. With more work a step is the
// product's arithmetic, and a pass over a thread's units of every row costs more than one over
// every unit of half the rows. The BLAS's products stay on the column split: there three calls
// a step on a third of the columns each cost more than one (GRU, B = 128: 1.04), and the
// reset-before family's single blocks read 1.02-1.07 at B = 64-128.
static constexpr i64 UNITS_MAX_ROWS = 16;
static constexpr i64 UNITS_MAX_MACS = i64(1) << 21;

template <typename T>
static int unit_threads(const Geo& g, i64 n, i64 k, i64 products = 1) {
#ifdef RNNKIT_OWN_PRODUCTS
    constexpr i64 PW = 2 * Simd<T>::L;
    if (!g_units || g.threads <= 1 || g.lens || !t_own) return 1;
    if (g.B > UNITS_MAX_ROWS || g.B > g_own_max_rows || g.B > g_split_rows) return 1;
    if (g.B * n * k * products > UNITS_MAX_MACS || g.H < g.threads * PW) return 1;
    return own_threads(g.B, n, k, PW) > 1 ? int(g.threads) : 1;
#else
    (void)g, (void)n, (void)k, (void)products;
    return 1;
#endif
}

// Thread t's hidden units of nt: a multiple of the panel width apart (the last takes the rest).
template <typename T>
static void unit_range(i64 width, int t, int nt, i64& lo, i64& hi) {
#ifdef RNNKIT_OWN_PRODUCTS
    constexpr i64 PW = 2 * Simd<T>::L;
#else
    constexpr i64 PW = 16;
#endif
    lo = t ? (width * t / nt) / PW * PW : 0;
    hi = t + 1 < nt ? (width * (t + 1) / nt) / PW * PW : width;
}

#ifdef RNNKIT_OWN_PRODUCTS
// One thread's products on the split by units: C[:, q·width + lo .. q·width + hi] (=, or +=
// with acc) A · op(W) for q < gates (NT: W (gates·width, k), its rows the output columns; else
// W (k, gates·width)), on the own kernel, W's columns packed once per call.
template <typename T, bool NT>
struct UnitProduct {
    i64 k, gates, width, lo, hi;
    const T* packed[8] = {};

    // (used: false for a product the call never runs, whose W may not exist: nothing packed)
    UnitProduct(const T* W, i64 ldw, i64 k_, i64 gates_, i64 width_, i64 lo_, i64 hi_,
                bool used = true)
        : k(k_), gates(gates_), width(width_), lo(lo_), hi(hi_) {
        if (used && hi > lo)
            for (i64 q = 0; q < gates; ++q)
                packed[q] = packed_columns<T, NT>(W, ldw, q * width + lo, q * width + hi, k);
    }

    // m rows of A (lda apart) into C (ldc apart); back: the gate blocks and their panels from
    // the far end (every other step, as own_mm does; see "Sweeps that turn back").
    void run(i64 m, const T* A, i64 lda, T* C, i64 ldc, bool acc, bool back) const {
        if (hi <= lo || m == 0) return;
        if (lo == 0) g_own_count.fetch_add(1, std::memory_order_relaxed);
        constexpr i64 PW = 2 * Simd<T>::L;
        back = back && g_turn_back;
        for (i64 g = 0; g < gates; ++g) {
            const i64 q = back ? gates - 1 - g : g;
            own_product<T>(m, q * width + lo, q * width + hi, k, A, lda, packed[q], k * PW, PW,
                           C, ldc, acc, back);
        }
    }
};
#else
template <typename T, bool NT>
struct UnitProduct {  // (never used: unit_threads is 1 without the own kernel)
    UnitProduct(const T*, i64, i64, i64, i64, i64, i64, bool = true) {}
    void run(i64, const T*, i64, T*, i64, bool, bool) const {}
};
#endif

// body(lo, hi) for each thread's hidden units lo..hi-1 of width, in one parallel region of
// `threads` threads; the body runs every step and meets the others at `#pragma omp barrier`.
template <typename T, typename F>
static void by_units(int threads, i64 width, F&& body) {
    g_units_count.fetch_add(1, std::memory_order_relaxed);
#pragma omp parallel num_threads(threads)
    {
        i64 lo, hi;
        unit_range<T>(width, omp_get_thread_num(), omp_get_num_threads(), lo, hi);
        body(lo, hi);
    }
}

// The previous step's block as step s reads it on the split by units (Geo::prior): at the turn
// one thread gathers its rows into the sorted order while the others wait at the end of the
// single construct; `gathered` is shared by the threads (declared outside the region).
template <typename T>
static const T* unit_prior(const Geo& g, const T* block, i64 s, i64 width, int slot,
                           const T* init, const T*& gathered) {
    if (!g.turn || s != g.turn) return block;
#pragma omp single
    gathered = g.prior(block, s, width, slot, init);
    return gathered;
}

// Backward, after step s's products: at the turn the running state gradients d (and d2), every
// unit of them, go back to the batch's order (Geo::unturn), by one thread once every thread
// has written its units.
template <typename T>
static void unit_unturn(const Geo& g, i64 s, i64 width, T* d, T* d2 = nullptr) {
    if (!g.turn || s != g.turn) return;
#pragma omp barrier
#pragma omp single
    {
        g.unturn(d, s, width);
        if (d2) g.unturn(d2, s, width);
    }
}

// The forward loop of a cell whose step is one product from h_{t-1}, z = h_{t-1}·W_hhᵀ (gates
// blocks of H columns), and a pointwise pass, split by units; false (nothing done) when the
// call keeps the column split. row(s, r, lo, hi, hp, cp) is the pass of row r of step s on units
// lo..hi-1, from the previous step's h (hp) and, for a cell with a memory (cs), c (cp); it writes
// the row of y, which emit puts in the padded layout.
template <typename T, typename Row>
static bool units_forward(const Geo& g, i64 gates, const T* Whh, const T* h0, const T* y,
                          const T* cs, const T* c0, T* z, Row&& row) {
    const i64 H = g.H, G = gates * H;
    const int nt = unit_threads<T>(g, G, H);
    if (nt <= 1) return false;
    const T* turned[2] = {};  // (shared by the threads)
    by_units<T>(nt, H, [&](i64 lo, i64 hi) {
        const UnitProduct<T, true> mm(Whh, H, H, gates, H, lo, hi);
        for (i64 s = 0; s < g.steps; ++s) {
            const i64 n = g.n[s], o = g.off[s];
            const T* hp = unit_prior(g, s ? y + g.off[s - 1] * H : h0, s, H, 0, h0, turned[0]);
            const T* cp = nullptr;
            if (cs) cp = unit_prior(g, s ? cs + g.save(s - 1) * H : c0, s, H, 1, c0, turned[1]);
            mm.run(n, hp, H, z, G, false, s & 1);
            for (i64 r = 0; r < n; ++r) {
                row(s, r, lo, hi, hp, cp);
                g.emit(y + (o + r) * H, o + r, lo, hi);
            }
#pragma omp barrier  // the next product reads every unit of h
        }
    });
    return true;
}

// The backward loop of such a cell, split by units: dh = dz·W_hh (+ dh with acc) after each
// step's pass; false (nothing done) when the call keeps the column split. pass(s, r, lo, hi,
// prev, d) is the pass of row r of step s on units lo..hi-1: from the previous step's block of
// `before` (h or c, Geo::prior's slot; none when null) it writes the row's units of dgx and,
// for a cell whose dz is not dgx, of d: dz, the step's (B, G) scratch, which alternates with a
// second block by the step's parity (a thread's pass of the step before may write its units of
// it while another thread's product still reads every unit of this step's); without dz the
// product reads the step's rows of dgx. At the turn, dh and dc (if any) go back to the batch's
// order.
template <typename T, typename Pass>
static bool units_backward(const Geo& g, i64 G, const T* Whh, const T* dgx, T* dz, bool acc,
                           const T* before, int slot, const T* init, T* dh, T* dc,
                           Pass&& pass) {
    const i64 H = g.H;
    const int nt = unit_threads<T>(g, H, G);
    if (nt <= 1) return false;
    std::vector<T> second(dz ? size_t(g.B * G) : 0);
    const T* turned = nullptr;  // (shared by the threads)
    by_units<T>(nt, H, [&](i64 lo, i64 hi) {
        const UnitProduct<T, false> mm(Whh, H, G, 1, H, lo, hi);
        for (i64 s = g.steps - 1; s >= 0; --s) {
            const i64 n = g.n[s], o = g.off[s];
            const T* prev = nullptr;
            if (before) prev = unit_prior(g, s ? before + g.off[s - 1] * H : init, s, H, slot, init, turned);
            T* d = dz ? (s & 1 ? second.data() : dz) : nullptr;
            for (i64 r = 0; r < n; ++r) pass(s, r, lo, hi, prev, d);
#pragma omp barrier  // the product reads every unit of the step's gradients
            mm.run(n, d ? d : dgx + o * G, G, dh, H, acc, s & 1);
            unit_unturn(g, s, H, dh, dc);
        }
    });
    return true;
}
