// Part of _loops.cpp, one translation unit: the geometry block (Geo), the row-parallel pointwise loop, a step's product on its running rows (step_mm).
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

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
    // Forward, a frozen row of a cell with a memory c: its output row y zero, and its c carried
    // from the previous step's row cp into this step's saved block cs.
    template <typename T>
    void carry(T* y, T* cs, const T* cp) const {
        std::memset(y, 0, size_t(H) * sizeof(T));
        std::memcpy(cs, cp, size_t(H) * sizeof(T));
    }
    // Forward: output row h of packed row r is also written at its padded position.
    template <typename T>
    void emit(const T* h, i64 r) const {
        if (out) std::memcpy(static_cast<T*>(out) + map[r] * H, h, size_t(H) * sizeof(T));
    }
    // The same for hidden units lo..hi-1 of the row (the split by units).
    template <typename T>
    void emit(const T* h, i64 r, i64 lo, i64 hi) const {
        if (out) std::memcpy(static_cast<T*>(out) + map[r] * H + lo, h + lo, size_t(hi - lo) * sizeof(T));
    }
    // Backward: the output gradient of packed row r, read from the padded layout when mapped.
    template <typename T>
    const T* grad(const T* dy, i64 r) const {
        return dy + (map ? map[r] : r) * ldy;
    }
};

// The pointwise pass of a step, f(row, thread) for row < n, split over the threads from `least`
// values (rows times width): g_rows_split for the gated cells, g_elman_rows_split for Elman.
// Elman's pass is one add and one tanh a value and its product is split over the threads from
// 8 rows at H = 256 (own_threads), yet it ran on one thread below 8192 values, so a batch of 16
// to 31 rows at H = 256, or the steps of a batch of 32 with lengths after its first sequence
// ended, took a fifth longer a step than one of 32 rows. Training step per step, Intel Xeon,
// 2 threads, 8192 -> 4096 values (python benchmarks/rows_split.py): Elman B = 31, H = 256
// 120 -> 110 µs, B = 64 and 100 at H = 64 -11 % and -13 %; from 2048 values it cost 15-20 % at
// B = 32, H = 64 and B = 16, H = 128. On the 512-bit build (native_build.FLAGS) Elman's pass is
// faster and the line gains at H = 64 only (B = 100: 0.90; H = 128, 256: 0.99-1.01). The gated
// cells' passes lost 3-25 % below 8192 values (GRU and LSTM at H = 64, B = 16-32) and gained
// nothing above it (16384, 32768).
static i64 g_rows_split = 8192;
static i64 g_elman_rows_split = 4096;

// For measurements and tests: from how many values (rows times width) a step's pointwise pass
// splits over the threads, the gated cells' and Elman's.
extern "C" void rnnkit_set_rows_split(long long values, long long elman) {
    g_rows_split = values, g_elman_rows_split = elman;
}
extern "C" long long rnnkit_rows_split(int elman) { return elman ? g_elman_rows_split : g_rows_split; }

template <typename F>
static void for_rows(const Geo& g, i64 n, i64 width, F&& f, i64 least = g_rows_split) {
    if (g.threads <= 1 || n < 2 || n * width < least) {
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
    t_back = s & 1;  // every other step reads W from its far end (see "Sweeps that turn back")
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
