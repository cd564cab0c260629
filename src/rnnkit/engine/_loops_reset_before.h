// Part of _loops.cpp, one translation unit: the loops of the reset-before family: GRU (reset before), MGU, MUT1-3.
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

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
static void rb_fwd_row1(i64 H, i64 j0, i64 j1, i64 cu, i64 cr, const T* x, const T* __restrict z,
                        const T* __restrict b, const T* __restrict hp, T* a, T* __restrict rh) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
        const T u = sigm(x[cu + j] + (UREC ? z[cu + j] : T(0)) + b[cu + j]);
        const T r = SHARED ? u : sigm(x[cr + j] + z[cr + j] + b[cr + j]);
        a[cu + j] = u;
        if (!SHARED) a[cr + j] = r;
        rh[j] = r * hp[j];
    }
}

template <typename T, bool FRESH>
static void rb_fwd_row2(i64 H, i64 j0, i64 j1, i64 cu, i64 cn, const T* x, const T* __restrict z,
                        const T* __restrict b, const T* __restrict hp, T* a, T* __restrict h) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
        const T n = std::tanh(x[cn + j] + z[cn + j] + b[cn + j]);
        const T u = a[cu + j];
        a[cn + j] = n;
        h[j] = FRESH ? u * n + (T(1) - u) * hp[j] : (T(1) - u) * n + u * hp[j];
    }
}

template <typename T, bool FRESH, bool SHARED>
static void rb_bwd_row1(i64 H, i64 j0, i64 j1, i64 cu, i64 cn, const T* a, const T* __restrict hp,
                        const T* __restrict dy, T* __restrict dh, T* d, T* __restrict du_) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
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
static void rb_bwd_row2(i64 H, i64 j0, i64 j1, i64 cu, i64 cr, const T* a, const T* __restrict hp,
                        const T* __restrict drh, const T* __restrict du_, T* __restrict dh,
                        T* d) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
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
    const T* turned = nullptr;  // (shared by the threads of the split by units)
    // (H x H products a step: n's, r's unless r is u, u's unless MUT1's u has none)
    if (const int nt = unit_threads<T>(g, H, H, 1 + !SHARED + (k.src_u != 0)); nt > 1)
        return by_units<T>(nt, H, [&](i64 lo, i64 hi) {
            // the gates' products from h_prev (u and r as one block when merged), then n's
            // (only the products the cell has are packed: MUT1's u has no W_hh block)
            const i64 c = k.cu < k.cr ? k.cu : k.cr;
            const bool separate_r = !k.merged && !SHARED, separate_u = !k.merged && k.src_u != 0;
            const UnitProduct<T, true> mm_ur(Whh + c * H, H, H, 2, H, lo, hi, k.merged);
            const UnitProduct<T, true> mm_r(Whh + k.wr * H, H, H, 1, H, lo, hi, separate_r);
            const UnitProduct<T, true> mm_u(Whh + k.wu * H, H, H, 1, H, lo, hi, separate_u);
            const UnitProduct<T, true> mm_n(Whh + k.wn * H, H, H, 1, H, lo, hi);
            for (i64 s = 0; s < g.steps; ++s) {
                const i64 n = g.n[s], o = g.off[s], so = g.save(s);
                const T* hp = unit_prior(g, s ? y + g.off[s - 1] * H : h0, s, H, 0, h0, turned);
                const bool back = s & 1;
                if (k.merged) {
                    mm_ur.run(n, hp, H, z + c, G, false, back);
                } else {
                    if (!SHARED) mm_r.run(n, hp, H, z + k.cr, G, false, back);
                    if (k.src_u == 1) mm_u.run(n, hp, H, z + k.cu, G, false, back);
                    if (k.src_u == 2) {
                        T* thb = th + so * H;
                        for (i64 r = 0; r < n; ++r)
                            for (i64 j = lo; j < hi; ++j) thb[r * H + j] = std::tanh(hp[r * H + j]);
#pragma omp barrier  // u's product reads every unit of tanh(h_prev)
                        mm_u.run(n, thb, H, z + k.cu, G, false, back);
                    }
                }
                for (i64 r = 0; r < n; ++r)
                    rb_fwd_row1<T, FRESH, SHARED, UREC>(H, lo, hi, k.cu, k.cr, gx + (o + r) * G,
                                                        z + r * G, b, hp + r * H,
                                                        act + (so + r) * G, rh + (so + r) * H);
#pragma omp barrier  // n's product reads every unit of r·h_prev
                mm_n.run(n, rh + so * H, H, z + k.cn, G, false, back);
                for (i64 r = 0; r < n; ++r) {
                    rb_fwd_row2<T, FRESH>(H, lo, hi, k.cu, k.cn, gx + (o + r) * G, z + r * G, b,
                                          hp + r * H, act + (so + r) * G, y + (o + r) * H);
                    g.emit(y + (o + r) * H, o + r, lo, hi);
                }
#pragma omp barrier  // the next products read every unit of h
            }
        });
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
            rb_fwd_row1<T, FRESH, SHARED, UREC>(H, 0, H, k.cu, k.cr, gx + (o + r) * G, z + r * G, b,
                                                hp + r * H, act + (so + r) * G,
                                                rh + (so + r) * H);
        });
        step_mm<T, true>(g, s, n, H, H, rh + so * H, H, Whh + k.wn * H, H, T(0), z + k.cn, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
            rb_fwd_row2<T, FRESH>(H, 0, H, k.cu, k.cn, gx + (o + r) * G, z + r * G, b, hp + r * H,
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
    const T* turned = nullptr;  // (shared by the threads of the split by units)
    // (H x H products a step: n's, r's unless r is u, u's unless MUT1's u has none)
    if (const int nt = unit_threads<T>(g, H, H, 1 + !SHARED + (k.src_u != 0)); nt > 1)
        return by_units<T>(nt, H, [&](i64 lo, i64 hi) {
            const i64 c = k.cu < k.cr ? k.cu : k.cr;
            const bool separate_r = !k.merged && !SHARED, separate_u = !k.merged && k.src_u != 0;
            const UnitProduct<T, false> mm_n(Whh + k.wn * H, H, H, 1, H, lo, hi);
            const UnitProduct<T, false> mm_ur(Whh + c * H, H, 2 * H, 1, H, lo, hi, k.merged);
            const UnitProduct<T, false> mm_r(Whh + k.wr * H, H, H, 1, H, lo, hi, separate_r);
            const UnitProduct<T, false> mm_u(Whh + k.wu * H, H, H, 1, H, lo, hi, separate_u);
            for (i64 s = g.steps - 1; s >= 0; --s) {
                const i64 n = g.n[s], o = g.off[s];
                const T* hp = unit_prior(g, s ? y + g.off[s - 1] * H : h0, s, H, 0, h0, turned);
                const T* dgo = dgx + o * G;
                const bool back = s & 1;
                for (i64 r = 0; r < n; ++r)
                    rb_bwd_row1<T, FRESH, SHARED>(H, lo, hi, k.cu, k.cn, act + (o + r) * G,
                                                  hp + r * H, g.grad(dy, o + r), dh + r * H,
                                                  dgx + (o + r) * G, du + r * H);
#pragma omp barrier  // d(r·h_prev)'s product reads every unit of the candidate's gradient
                mm_n.run(n, dgo + k.cn, G, dx, H, false, back);
                for (i64 r = 0; r < n; ++r)
                    rb_bwd_row2<T, SHARED>(H, lo, hi, k.cu, k.cr, act + (o + r) * G, hp + r * H,
                                           dx + r * H, du + r * H, dh + r * H,
                                           dgx + (o + r) * G);
#pragma omp barrier  // the gates' products read every unit of their gradients
                if (k.merged) {
                    mm_ur.run(n, dgo + c, G, dh, H, true, back);
                } else {
                    if (!SHARED) mm_r.run(n, dgo + k.cr, G, dh, H, true, back);
                    if (k.src_u == 1) mm_u.run(n, dgo + k.cu, G, dh, H, true, back);
                    if (k.src_u == 2) {
                        mm_u.run(n, dgo + k.cu, G, dx, H, false, back);
                        const T* thb = th + o * H;
                        for (i64 r = 0; r < n; ++r)
                            for (i64 q = r * H + lo; q < r * H + hi; ++q)
                                dh[q] += dx[q] * (T(1) - thb[q] * thb[q]);
                    }
                }
                unit_unturn(g, s, H, dh);
            }
        });
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
            rb_bwd_row1<T, FRESH, SHARED>(H, 0, H, k.cu, k.cn, act + (o + r) * G, hp + r * H,
                                          g.grad(dy, o + r), dh + r * H, dgx + (o + r) * G,
                                          du + r * H);
        });
        // 2. d(r·h_prev) = dpre_n · W_n, then through r
        step_mm<T, false>(g, s, n, H, H, dgo + k.cn, G, Whh + k.wn * H, H, T(0), dx, H);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return;
            rb_bwd_row2<T, SHARED>(H, 0, H, k.cu, k.cr, act + (o + r) * G, hp + r * H, dx + r * H,
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
