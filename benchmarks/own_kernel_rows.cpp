// The loops' own recurrent-product kernel alone, on one thread: microseconds per product of
// m rows (1..MAX_ROWS) against a packed W_hh of H x H, all H output columns, best of REPEATS.
//
// Build and run (the same flags as rnnkit/engine/native_build.py):
//
//   g++ -O3 -march=native -mprefer-vector-width=512 -std=c++17 -fno-math-errno \
//       -fno-trapping-math -D__FAST_MATH__ -fopenmp -o /tmp/own_kernel_rows \
//       benchmarks/own_kernel_rows.cpp && /tmp/own_kernel_rows
//
// To time another version of the kernel, point RNNKIT_LOOPS at its source:
//
//   mkdir /tmp/rev && for f in $(git ls-tree --name-only REV src/rnnkit/engine/ | grep _loops);
//       do git show REV:$f > /tmp/rev/$(basename $f); done
//   g++ ... -DRNNKIT_LOOPS='"/tmp/rev/_loops.cpp"' -o /tmp/own_kernel_rows_rev \
//       benchmarks/own_kernel_rows.cpp
// (REV from 060d431 on: the products take a sweep direction)
//
// Both builds print one line per row count; run them in turn a few times and compare the best
// times (the machine's noise moves a single run by 10-30 %).
#ifndef RNNKIT_LOOPS
#define RNNKIT_LOOPS "../src/rnnkit/engine/_loops.cpp"
#endif
#include RNNKIT_LOOPS

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
#ifndef RNNKIT_OWN_PRODUCTS
    std::printf("this build has no own kernel (it needs AVX2 and FMA)\n");
    return 0;
#else
    const i64 H = argc > 1 ? std::atol(argv[1]) : 256;
    const int max_rows = argc > 2 ? std::atoi(argv[2]) : 32;
    constexpr int REPEATS = 50, CALLS = 20;
    constexpr i64 PW = 2 * Simd<float>::L;
    std::vector<float> w(size_t(H * H)), a(size_t(max_rows * H)), c(size_t(max_rows * H));
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 7) * 0.01f;
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 5) * 0.02f;
    const float* panels = packed_columns<float, true>(w.data(), H, 0, H, H);
    std::printf("own kernel, one thread, H = %lld, %d-bit vectors: us per product\n",
                static_cast<long long>(H), Simd<float>::L * 32);
    for (int m = 1; m <= max_rows; ++m) {
        double best = 1e30;
        for (int rep = 0; rep < REPEATS; ++rep) {
            const auto start = std::chrono::steady_clock::now();
            for (int k = 0; k < CALLS; ++k)
                // every other product turned back, as the loops' steps are (t_back)
                own_product<float>(m, 0, H, H, a.data(), H, panels, H * PW, PW, c.data(), H,
                                   false, (k & 1) != 0);
            const std::chrono::duration<double, std::micro> spent =
                std::chrono::steady_clock::now() - start;
            if (spent.count() / CALLS < best) best = spent.count() / CALLS;
        }
        std::printf("rows %2d  %7.2f\n", m, best);
    }
    return 0;
#endif
}
