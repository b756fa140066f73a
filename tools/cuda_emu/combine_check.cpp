// combine_check.cpp: runs combine.cu (the MoE weighted combine) under emu.h
// as the host launches it: forward one thread per output element, the dy
// backward per element of dy with the copies grouped by row on the host
// (kept copies only, in copy order, as cuda_backend::combine does), and the
// weight gradient one warp per copy (launch::warps). References in long
// double from the CPU's definition (cpu::grouped_gemm::combine_rows); f32
// and f64. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + combine.cu, rewritten by run.sh
#include "check.h"

using R = long double;

template <typename T>
struct Entry;
template <>
struct Entry<float> {
    static constexpr const char* name = "f32";
    static constexpr double rtol = 1e-5;
    static constexpr auto fwd = combine_fwd_f32;
    static constexpr auto bwd_rows = combine_bwd_rows_f32;
    static constexpr auto bwd_rows_planned = combine_bwd_rows_planned_f32;
    static constexpr auto bwd_weights = combine_bwd_weights_f32;
};
template <>
struct Entry<double> {
    static constexpr const char* name = "f64";
    static constexpr double rtol = 1e-12;
    static constexpr auto fwd = combine_fwd_f64;
    static constexpr auto bwd_rows = combine_bwd_rows_f64;
    static constexpr auto bwd_rows_planned = combine_bwd_rows_planned_f64;
    static constexpr auto bwd_weights = combine_bwd_weights_f64;
};

struct Case {
    long long m, d, n, k;
};

template <typename T>
static void check(const Case& c, std::mt19937& rng) {
    const long long copies = c.n * c.k;
    // Row ids: some dropped (-1), some rows read twice, some never read.
    std::vector<long long> rows(copies);
    for (long long j = 0; j < copies; ++j) rows[j] = (rng() % 5 == 0) ? -1 : (long long)(rng() % c.m);
    if (copies > 3) rows[1] = rows[0] >= 0 ? rows[0] : 0;
    if (c.n > 1)  // a token whose copies were all dropped
        for (long long j = 0; j < c.k; ++j) rows[c.k + j] = -1;
    const std::vector<T> y = normals<T>(rng, c.m * c.d), w = normals<T>(rng, copies, 0.5),
                         g = normals<T>(rng, c.n * c.d);

    // The host's grouping of the kept copies by row.
    std::vector<long long> starts(c.m + 1, 0), order;
    for (long long r : rows)
        if (r >= 0) ++starts[r + 1];
    for (long long r = 0; r < c.m; ++r) starts[r + 1] += starts[r];
    order.resize(starts[c.m]);
    std::vector<long long> next(starts.begin(), starts.end() - 1);
    for (long long j = 0; j < copies; ++j)
        if (rows[j] >= 0) order[next[rows[j]]++] = j;

    std::vector<T> out(c.n * c.d, (T)NAN), dy(c.m * c.d, (T)NAN), dw(copies, (T)NAN);  // all must be written
    run(launch::elementwise(c.n * c.d),
        [&] { Entry<T>::fwd(c.n * c.d, c.d, c.k, rows.data(), w.data(), y.data(), out.data()); });
    run(launch::elementwise(c.m * c.d), [&] {
        Entry<T>::bwd_rows(c.m * c.d, c.d, c.k, starts.data(), order.data(), w.data(), g.data(), dy.data());
    });
    run(launch::warps(copies),
        [&] { Entry<T>::bwd_weights(copies, c.d, c.k, rows.data(), g.data(), y.data(), dw.data()); });

    // References straight from the definitions; tolerances scale with the sum
    // of the |terms| (the sums cancel).
    std::vector<double> wout(out.size(), 0), mout(out.size(), 0), wdy(dy.size(), 0), mdy(dy.size(), 0),
        wdw(copies, 0), mdw(copies, 0);
    for (long long j = 0; j < copies; ++j) {
        if (rows[j] < 0) continue;
        const long long t = j / c.k, r = rows[j];
        R dot = 0, dot_abs = 0;
        for (long long col = 0; col < c.d; ++col) {
            const R yv = y[r * c.d + col], gv = g[t * c.d + col], wv = w[j];
            wout[t * c.d + col] += (double)(wv * yv), mout[t * c.d + col] += (double)std::fabs(wv * yv);
            wdy[r * c.d + col] += (double)(wv * gv), mdy[r * c.d + col] += (double)std::fabs(wv * gv);
            dot += gv * yv, dot_abs += std::fabs(gv * yv);
        }
        wdw[j] = (double)dot, mdw[j] = (double)dot_abs;
    }
    char buf[120];
    std::snprintf(buf, sizeof buf, "combine_%s m%lld d%lld n%lld k%lld", Entry<T>::name, c.m, c.d, c.n, c.k);
    const std::string name = buf;
    const double rtol = Entry<T>::rtol;
    expect_close(name, "out fwd", wout, widen(out), rtol, 0, &mout);
    expect_close(name, "dy bwd", wdy, widen(dy), rtol, 0, &mdy);
    expect_close(name, "dw bwd", wdw, widen(dw), rtol, 0, &mdw);
}

// The planned dy (one copy per row, as a dispatch plan places them): the
// copies permuted into rows 0..n·k, plus two rows no copy fills (zero).
template <typename T>
static void check_planned(const Case& c, std::mt19937& rng) {
    const long long copies = c.n * c.k, m = copies + 2;
    std::vector<long long> copy_of_row(m, -1);
    for (long long j = 0; j < copies; ++j) copy_of_row[j] = j;
    std::shuffle(copy_of_row.begin(), copy_of_row.begin() + copies, rng);
    const std::vector<T> w = normals<T>(rng, copies, 0.5), g = normals<T>(rng, c.n * c.d);
    std::vector<T> dy(m * c.d, (T)NAN);
    run(launch::elementwise(m * c.d), [&] {
        Entry<T>::bwd_rows_planned(m * c.d, c.d, c.k, copy_of_row.data(), w.data(), g.data(), dy.data());
    });
    std::vector<double> want(m * c.d, 0);
    for (long long r = 0; r < m; ++r)
        if (copy_of_row[r] >= 0)
            for (long long col = 0; col < c.d; ++col)
                want[r * c.d + col] = (double)((R)w[copy_of_row[r]] * (R)g[(copy_of_row[r] / c.k) * c.d + col]);
    char buf[120];
    std::snprintf(buf, sizeof buf, "combine_%s planned n%lld d%lld k%lld", Entry<T>::name, c.n, c.d, c.k);
    expect_close(buf, "dy bwd", want, widen(dy), Entry<T>::rtol, 0);
}

int main() {
    std::mt19937 rng(43);
    // Widths around a warp (the weight gradient's lanes stride over d), copy
    // counts that fill no block of 8 warps evenly, k = 1, a zero width.
    const Case cases[] = {{1, 1, 1, 1}, {6, 31, 5, 2}, {9, 32, 7, 3}, {12, 33, 11, 2},
                          {20, 100, 9, 3}, {4, 8, 50, 1}, {5, 0, 3, 2}};
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (const Case& c : cases) {
            check<float>(c, rng);
            check<double>(c, rng);
            check_planned<float>(c, rng);
            check_planned<double>(c, rng);
        }
    });
    return finish("combine");
}
