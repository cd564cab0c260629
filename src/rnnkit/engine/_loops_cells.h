// Part of _loops.cpp, one translation unit: the Elman, LSTM (with or without peepholes) and GRU (reset after) loops.
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

// ---------------------------------------------------------------------------------------------
// Elman: h = act(gx + h_prev·W_hhᵀ + b_hh); v0 = 1 for relu.
// forward  p: gx (N,H), W_hh (H,H), b_hh (H), h0 (B,H), y (N,H), z (B,H)
// backward p: W_hh, h0, y, dy (N,H), dh (B,H), dgx (N,H)
// ---------------------------------------------------------------------------------------------
template <typename T, bool RELU>
static void elman_fwd_row(i64 H, i64 j0, i64 j1, const T* __restrict x, const T* __restrict z,
                          const T* __restrict b, T* __restrict h) {
    for (i64 j = j0; j < j1; ++j) h[j] = RELU ? relu(x[j] + z[j] + b[j]) : std::tanh(x[j] + z[j] + b[j]);
}

template <typename T, bool RELU>
static void elman_bwd_row(i64 H, i64 j0, i64 j1, const T* __restrict h, const T* __restrict dy,
                          const T* __restrict dh, T* __restrict d) {
    for (i64 j = j0; j < j1; ++j) {
        const T dhj = dh[j] + dy[j];
        d[j] = RELU ? (h[j] > T(0) ? dhj : T(0)) : dhj * (T(1) - h[j] * h[j]);
    }
}

template <typename T, bool RELU>
static void elman_forward_impl(const Geo& g, void* const* p) {
    const i64 H = g.H;
    const T *gx = P<T>(p, 0), *Whh = P<T>(p, 1), *b = P<T>(p, 2), *h0 = P<T>(p, 3);
    T *y = W<T>(p, 4), *z = W<T>(p, 5);
    const auto row = [&](i64 s, i64 r, i64 lo, i64 hi, const T*, const T*) {
        const i64 o = g.off[s];
        elman_fwd_row<T, RELU>(H, lo, hi, gx + (o + r) * H, z + r * H, b, y + (o + r) * H);
    };
    if (units_forward<T>(g, 1, Whh, h0, y, nullptr, nullptr, z, row)) return;
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        step_mm<T, true>(g, s, n, H, H, hp, H, Whh, H, T(0), z, H);
        for_rows(g, n, H, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
            elman_fwd_row<T, RELU>(H, 0, H, gx + (o + r) * H, z + r * H, b, y + (o + r) * H);
            g.emit(y + (o + r) * H, o + r);
        }, g_elman_rows_split);
    }
}

template <typename T, bool RELU>
static void elman_backward_impl(const Geo& g, void* const* p) {
    const i64 H = g.H;
    const T *Whh = P<T>(p, 0), *y = P<T>(p, 2), *dy = P<T>(p, 3);
    T *dh = W<T>(p, 4), *dgx = W<T>(p, 5);
    const auto pass = [&](i64 s, i64 r, i64 lo, i64 hi, const T*, T*) {
        const i64 o = g.off[s];
        elman_bwd_row<T, RELU>(H, lo, hi, y + (o + r) * H, g.grad(dy, o + r), dh + r * H,
                               dgx + (o + r) * H);
    };
    if (units_backward<T>(g, H, Whh, dgx, nullptr, false, nullptr, 0, nullptr, dh, nullptr, pass))
        return;
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        for_rows(g, n, H, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(dgx + (o + r) * H, 0, size_t(H) * sizeof(T));
            elman_bwd_row<T, RELU>(H, 0, H, y + (o + r) * H, g.grad(dy, o + r), dh + r * H,
                                   dgx + (o + r) * H);
        }, g_elman_rows_split);
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
static void lstm_fwd_row(i64 H, i64 j0, i64 j1, const T* x, const T* __restrict z, const T* __restrict b,
                         const T* __restrict wci, const T* __restrict wcf,
                         const T* __restrict wco, const T* __restrict cp, T* a,
                         T* __restrict c, T* __restrict h) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
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
static void lstm_bwd_row(i64 H, i64 j0, i64 j1, const T* a, const T* __restrict c, const T* __restrict cp,
                         const T* __restrict wci, const T* __restrict wcf,
                         const T* __restrict wco, const T* __restrict dy,
                         const T* __restrict dh, T* __restrict dc, T* d, T* __restrict acc) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
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
    const auto row = [&](i64 s, i64 r, i64 lo, i64 hi, const T*, const T* cp) {
        const i64 o = g.off[s], so = g.save(s);
        lstm_fwd_row<T, PEEP>(H, lo, hi, gx + (o + r) * G, z + r * G, b, wci, wcf, wco,
                              cp + r * H, act + (so + r) * G, cs + (so + r) * H, y + (o + r) * H);
    };
    if (units_forward<T>(g, 4, Whh, h0, y, cs, c0, z, row)) return;
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        const T* cp = g.prior(s ? cs + g.save(s - 1) * H : c0, s, H, 1, c0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return g.carry(y + (o + r) * H, cs + (so + r) * H, cp + r * H);
            lstm_fwd_row<T, PEEP>(H, 0, H, gx + (o + r) * G, z + r * G, b, wci, wcf, wco, cp + r * H,
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
    // (split by units, the peepholes' sums: each thread's units in row 0 of acc, which the
    // caller sums over the threads)
    const auto pass = [&](i64 s, i64 r, i64 lo, i64 hi, const T* cp, T*) {
        const i64 o = g.off[s];
        lstm_bwd_row<T, PEEP>(H, lo, hi, act + (o + r) * G, cs + (o + r) * H, cp + r * H, wci,
                              wcf, wco, g.grad(dy, o + r), dh + r * H, dc + r * H,
                              dgx + (o + r) * G, acc);
    };
    if (units_backward<T>(g, G, Whh, dgx, nullptr, false, cs, 1, c0, dh, dc, pass)) return;
    for (i64 s = g.steps - 1; s >= 0; --s) {
        const i64 n = g.n[s], o = g.off[s];
        const T* cp = g.prior(s ? cs + g.off[s - 1] * H : c0, s, H, 1, c0);
        for_rows(g, n, G, [&](i64 r, int t) {
            if (g.frozen(s, r)) return (void)std::memset(dgx + (o + r) * G, 0, size_t(G) * sizeof(T));
            lstm_bwd_row<T, PEEP>(H, 0, H, act + (o + r) * G, cs + (o + r) * H, cp + r * H, wci, wcf,
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
//   r = σ(x_r + c_r + z_r + b_r), u = σ(x_u + c_u + z_u + b_u), n = tanh(x_n + c_n + r·(z_n + b_n)),
//   h = (1 - u)·n + u·h_prev, with z = h_prev·W_hhᵀ and c the input projection's bias b_ih
//   when the loops add it (gx then x·W_ihᵀ alone), else zeros.
// forward  p: gx (N,3H), W_hh (3H,H), b_hh (3H), h0, y, act (N,3H: r u n; may be gx),
//             hn (N,H: z_n+b_n), z (B,3H), c (3H)
// backward p: W_hh, h0, y, act, hn, dy, dh, dgx (N,3H; may be act), dzn (N,H: gradient of z_n;
//             may be hn), dz (B,3H: scratch)
// ---------------------------------------------------------------------------------------------
// (hidden units j0..j1-1 of the row: all of them, or a thread's on the split by units)
template <typename T>
static void gru_fwd_row(i64 H, i64 j0, i64 j1, const T* x, const T* __restrict z,
                        const T* __restrict b, const T* __restrict c, const T* __restrict hp,
                        T* a, T* __restrict hn, T* __restrict h) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
        const T r = sigm(x[j] + c[j] + z[j] + b[j]);
        const T u = sigm(x[H + j] + c[H + j] + z[H + j] + b[H + j]);
        const T m = z[2 * H + j] + b[2 * H + j];
        const T n = std::tanh(x[2 * H + j] + c[2 * H + j] + r * m);
        h[j] = (T(1) - u) * n + u * hp[j];
        a[j] = r;
        a[H + j] = u;
        a[2 * H + j] = n;
        hn[j] = m;
    }
}

template <typename T>
static void gru_bwd_row(i64 H, i64 j0, i64 j1, const T* a, const T* hn, const T* __restrict hp,
                        const T* __restrict dy, T* __restrict dh, T* d, T* __restrict dz,
                        T* dzn) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
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
    const T* c = P<T>(p, 8);
    const auto row = [&](i64 s, i64 r, i64 lo, i64 hi, const T* hp, const T*) {
        const i64 o = g.off[s], so = g.save(s);
        gru_fwd_row<T>(H, lo, hi, gx + (o + r) * G, z + r * G, b, c, hp + r * H,
                       act + (so + r) * G, hn + (so + r) * H, y + (o + r) * H);
    };
    if (units_forward<T>(g, 3, Whh, h0, y, nullptr, nullptr, z, row)) return;
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return (void)std::memset(y + (o + r) * H, 0, size_t(H) * sizeof(T));
            gru_fwd_row<T>(H, 0, H, gx + (o + r) * G, z + r * G, b, c, hp + r * H,
                           act + (so + r) * G, hn + (so + r) * H, y + (o + r) * H);
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
    const auto pass = [&](i64 s, i64 r, i64 lo, i64 hi, const T* hp, T* d) {
        const i64 o = g.off[s];
        gru_bwd_row<T>(H, lo, hi, act + (o + r) * G, hn + (o + r) * H, hp + r * H,
                       g.grad(dy, o + r), dh + r * H, dgx + (o + r) * G, d + r * G,
                       dzn + (o + r) * H);
    };
    if (units_backward<T>(g, G, Whh, dgx, dz, true, y, 0, h0, dh, nullptr, pass)) return;
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
            gru_bwd_row<T>(H, 0, H, act + (o + r) * G, hn + (o + r) * H, hp + r * H, g.grad(dy, o + r),
                           dh + r * H, dgx + (o + r) * G, dz + r * G, dzn + (o + r) * H);
        });
        step_mm<T, false>(g, s, n, H, G, dz, G, Whh, H, T(1), dh, H);
        g.unturn(dh, s, H);
    }
}
