// Part of _loops.cpp, one translation unit: the NAS and LayerNorm LSTM loops.
// Included there, in order, after the parts before it (it uses their definitions); not a
// header of its own.
#pragma once

// ---------------------------------------------------------------------------------------------
// NAS (Zoph & Le 2017): branches k = 0..7 of x = gx and m = h_prev·W_hhᵀ + b_hh, see NASCell.
// The saved branches are l_k, except in slot 3, which keeps x_3: branch 3 multiplies x_3 by m_3,
// so its derivative needs both factors (m_3 is saved apart), and l_3 = relu(x_3·m_3) is cheap.
// x_k is gx's branch k plus c_k, the input projection's bias b_ih when the loops add it (gx then
// x·W_ihᵀ alone), else zeros.
// forward  p: gx (N,8H), W_hh (8H,H), b_hh (8H), h0, c0, y, l (N,8H; may be gx), cs (N,H),
//             m3 (N,H), z (B,8H), c (8H)
// backward p: W_hh, h0, c0, y, l, cs, m3, dy, dh, dc, dgx (N,8H; may be l),
//             dm3 (N,H: the gradient of m_3, which differs from dgx's slot 3; may be m3),
//             dz (B,8H)
// ---------------------------------------------------------------------------------------------
template <typename T>
static void nas_fwd_row(i64 H, i64 j0, i64 j1, const T* x, const T* __restrict z, const T* __restrict b,
                        const T* __restrict xb, const T* __restrict cp, T* l, T* __restrict c,
                        T* __restrict m, T* __restrict h) {
    // branch k's pre-activation x_k + m_k, x_k = gx_k + xb_k (xb: the folded input bias)
    const auto pre = [&](int k, i64 j) {
        return x[k * H + j] + xb[k * H + j] + z[k * H + j] + b[k * H + j];
    };
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
        const T x3 = x[3 * H + j] + xb[3 * H + j], m3 = z[3 * H + j] + b[3 * H + j];
        const T l0 = sigm(pre(0, j));
        const T l1 = relu(pre(1, j));
        const T l2 = sigm(pre(2, j));
        const T l3 = relu(x3 * m3);
        const T l4 = std::tanh(pre(4, j));
        const T l5 = sigm(pre(5, j));
        const T l6 = std::tanh(pre(6, j));
        const T l7 = sigm(pre(7, j));
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
static void nas_bwd_row(i64 H, i64 j0, i64 j1, const T* l, const T* __restrict c, const T* __restrict cp,
                        const T* m, const T* __restrict h, const T* __restrict dy,
                        const T* __restrict dh, T* __restrict dc, T* d, T* __restrict dz,
                        T* dm3) {
#pragma omp simd
    for (i64 j = j0; j < j1; ++j) {
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
    const T* xb = P<T>(p, 10);
    const auto row = [&](i64 s, i64 r, i64 lo, i64 hi, const T*, const T* cp) {
        const i64 o = g.off[s], so = g.save(s);
        nas_fwd_row<T>(H, lo, hi, gx + (o + r) * G, z + r * G, b, xb, cp + r * H,
                       L + (so + r) * G, cs + (so + r) * H, m3 + (so + r) * H, y + (o + r) * H);
    };
    if (units_forward<T>(g, 8, Whh, h0, y, cs, c0, z, row)) return;
    for (i64 s = 0; s < g.steps; ++s) {
        const i64 n = g.n[s], o = g.off[s], so = g.save(s);
        const T* hp = g.prior(s ? y + g.off[s - 1] * H : h0, s, H, 0, h0);
        const T* cp = g.prior(s ? cs + g.save(s - 1) * H : c0, s, H, 1, c0);
        step_mm<T, true>(g, s, n, G, H, hp, H, Whh, H, T(0), z, G);
        for_rows(g, n, G, [&](i64 r, int) {
            if (g.frozen(s, r)) return g.carry(y + (o + r) * H, cs + (so + r) * H, cp + r * H);
            nas_fwd_row<T>(H, 0, H, gx + (o + r) * G, z + r * G, b, xb, cp + r * H,
                           L + (so + r) * G, cs + (so + r) * H, m3 + (so + r) * H, y + (o + r) * H);
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
    const auto pass = [&](i64 s, i64 r, i64 lo, i64 hi, const T* cp, T* d) {
        const i64 o = g.off[s];
        nas_bwd_row<T>(H, lo, hi, L + (o + r) * G, cs + (o + r) * H, cp + r * H, m3 + (o + r) * H,
                       y + (o + r) * H, g.grad(dy, o + r), dh + r * H, dc + r * H,
                       dgx + (o + r) * G, d + r * G, dm3 + (o + r) * H);
    };
    if (units_backward<T>(g, G, Whh, dgx, dz, false, cs, 1, c0, dh, dc, pass)) return;
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
            nas_bwd_row<T>(H, 0, H, L + (o + r) * G, cs + (o + r) * H, cp + r * H,
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
// The rows' sums (the layer norms' mean and variance, the backward pass's Σ dx̂ and Σ dx̂·x̂)
// are `omp simd` reductions: the compiler may add their terms in any order, which lets it
// vectorise the loops that hold them. Without that the backward rows ran scalar, tanh and
// sigmoids included; with it (and the gates' backward sums in loops of their own) the training
// step took 0.90-0.97 of its time and the forward pass 0.80-0.94 (B = 1-128, H = 64-512, paired,
// both builds in one process: python benchmarks/loops_against.py --against 915db2d), and with
// the sums vectorised 512-bit vectors beat 256-bit ones here too (training 0.97-1.00).
// ---------------------------------------------------------------------------------------------
template <typename T>
static void layer_norm_row(i64 H, T eps, const T* __restrict v, T* __restrict xhat, T* rstd) {
    T mean = 0, var = 0;
#pragma omp simd reduction(+ : mean)
    for (i64 j = 0; j < H; ++j) mean += v[j];
    mean /= T(H);
#pragma omp simd reduction(+ : var)
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
#pragma omp simd reduction(+ : s1, s2)
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
#pragma omp simd
    for (i64 j = 0; j < H; ++j) {
        const T i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j];
        const T dct = dc[j] + rstd_c * (t[j] - m1 - chat[j] * m2);
        const T dz[4] = {dct * gg * i * (T(1) - i), dct * cp[j] * f * (T(1) - f),
                         dct * i * (T(1) - gg * gg), t[H + j] * o * (T(1) - o)};
        dc[j] = dct * f;
        for (int k = 0; k < 4; ++k) {
            acc[k * H + j] += dz[k] * xh[k * H + j];
            acc[4 * H + k * H + j] += dz[k];
            d[k * H + j] = dz[k] * gam[k * H + j];
        }
    }
    // each gate's Σ dx̂ and Σ dx̂·x̂, over the row just written (in the L1 cache)
    for (int k = 0; k < 4; ++k) {
        const T *dk = d + k * H, *xk = xh + k * H;
        T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (i64 j = 0; j < H; ++j) {
            s1 += dk[j];
            s2 += dk[j] * xk[j];
        }
        S[k] = s1;
        S[4 + k] = s2;
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
            if (g.frozen(s, r)) return g.carry(y + (o + r) * H, cs + (so + r) * H, cp + r * H);
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
