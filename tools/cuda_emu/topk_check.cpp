// topk_check.cpp: runs topk.cu under emu.h as the host launches it (one
// thread per row, launch::elementwise(rows); the backward one per pick)
// against a stable sort of each row by the CPU's order (cpu::index::topk):
// larger first, NaN above every number, ties (and NaNs) by lower index.
// Values (bits) and indices exact. Exit status 1 on any mismatch.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + topk.cu, rewritten by run.sh
#include "check.h"

// Rows drawn from a small set of values so that ties are common, with NaN,
// infinities and both zeros among them.
static std::vector<float> draw(std::mt19937& rng, size_t n, bool specials) {
    const float pool[] = {1.0f, 2.0f, -1.0f, 0.5f, 0.0f, -0.0f, 3.0f, NAN, INFINITY, -INFINITY, -2.5f, 1.0f};
    std::vector<float> x = normals<float>(rng, n);
    for (size_t i = 0; i < n; ++i)
        if (specials || i % 2 == 0) x[i] = pool[rng() % (specials ? 12 : 7)];
    return x;
}

static void check(long long rows, int n, int k, bool specials, std::mt19937& rng) {
    const std::vector<float> x = draw(rng, (size_t)rows * n, specials);
    std::vector<float> vals((size_t)rows * k), wvals(vals.size());
    std::vector<long long> idx((size_t)rows * k), widx(idx.size());
    for (long long r = 0; r < rows; ++r) {
        const float* xr = x.data() + r * n;
        std::vector<int> order(n);
        std::iota(order.begin(), order.end(), 0);
        // stable_sort keeps equal keys (and NaNs) in index order.
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            const bool na = std::isnan(xr[a]), nb = std::isnan(xr[b]);
            if (na || nb) return na && !nb;
            return xr[a] > xr[b];
        });
        for (int j = 0; j < k; ++j) {
            wvals[r * k + j] = xr[order[j]];
            widx[r * k + j] = order[j];
        }
    }
    if (k > 0)  // the host launches nothing for k = 0
        run(launch::elementwise(rows), [&] { topk_rows_f32(rows, n, k, x.data(), vals.data(), idx.data()); });
    char buf[120];
    std::snprintf(buf, sizeof buf, "topk rows%lld n%d k%d%s", rows, n, k, specials ? " NaN/inf/zeros" : "");
    const std::string name = buf;
    expect_equal(name, "values", wvals, vals);
    expect_equal(name, "indices", widx, idx);

    // Backward: g [rows, k] written at the picked indices of a zeroed dx;
    // an index outside [0, n) is skipped (the kernel's guard).
    std::vector<float> g = normals<float>(rng, (size_t)rows * k), dx((size_t)rows * n, 0.0f), wdx(dx.size(), 0.0f);
    std::vector<long long> picks = idx;
    if (rows > 1 && k > 1) picks[k] = -1, picks[k + 1] = n;  // row 1: two out-of-range picks
    for (long long r = 0; r < rows; ++r)
        for (int j = 0; j < k; ++j) {
            const long long c = picks[r * k + j];
            if (c >= 0 && c < n) wdx[r * n + c] = g[r * k + j];
        }
    run(launch::elementwise((size_t)rows * k), [&] { topk_bwd_f32(rows, n, k, g.data(), picks.data(), dx.data()); });
    expect_equal(name, "dx bwd", wdx, dx);
}

int main() {
    std::mt19937 rng(41);
    // k = 1, k = n, in between; one element; router-sized rows; more rows
    // than a block's threads.
    const struct {
        long long rows;
        int n, k;
    } cases[] = {{1, 1, 1}, {5, 8, 2}, {3, 8, 8}, {300, 64, 6}, {40, 33, 0}, {7, 128, 17}, {2, 5, 5}};
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (const auto& c : cases) {
            check(c.rows, c.n, c.k, false, rng);
            check(c.rows, c.n, c.k, true, rng);
        }
    });
    return finish("topk");
}
