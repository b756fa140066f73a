// rms_norm_check.cpp: runs rms_norm.cu's forward, dx and dw kernels under
// emu.h as the host launches them (one block per row; one thread per column
// for dw) against long double references of the CPU's formulas
// (cpu::rms_norm): y = (x * rstd) * w, rstd = 1 / sqrt(mean(x^2) + eps),
// dx = rstd * w * dy - x * rstd^3 / D * sum(w * dy * x), dw = sum_r dy * x *
// rstd. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + rms_norm.cu, rewritten by run.sh
#include "check.h"

using R = long double;

static const std::pair<int, int> SHAPES[] = {{1, 1},  {3, 31},  {2, 32},   {2, 33},  {4, 100}, {2, 512},
                                             {2, 777}, {2, 1100}, {9, 64},  {2, 0},   {1, 4096}};

static void check(int rows, int cols, std::mt19937& rng) {
    const size_t n = (size_t)rows * cols;
    const double eps_host = 1e-5;
    const float eps = (float)eps_host;  // the host passes eps as f32
    std::vector<float> x = normals<float>(rng, n, 1.5), w = normals<float>(rng, cols, 0.5, 1.0),
                       dy = normals<float>(rng, n);
    if (rows > 1)  // a zero row: rstd = 1 / sqrt(eps)
        for (int c = 0; c < cols; ++c) x[(size_t)cols + c] = 0.0f;
    std::vector<float> y(n), rstd(rows), dx(n), dw(cols);
    std::vector<double> wy(n), my(n), wr(rows), wdx(n), mdx(n), wdw(cols), mdw(cols);

    for (int r = 0; r < rows; ++r) {
        const size_t b = (size_t)r * cols;
        R ss = 0;
        for (int c = 0; c < cols; ++c) ss += (R)x[b + c] * x[b + c];
        const R rs = 1 / std::sqrt(ss / cols + eps);  // NaN for cols = 0, as on the CPU
        wr[r] = (double)rs;
        for (int c = 0; c < cols; ++c) {
            wy[b + c] = (double)((x[b + c] * rs) * w[c]);
            my[b + c] = std::fabs(wy[b + c]);
        }
    }
    run(launch::rows(rows, cols), [&] { rms_norm_fwd_f32(rows, cols, eps, x.data(), w.data(), y.data(), rstd.data()); });
    const std::string name = "rms_norm " + std::to_string(rows) + "x" + std::to_string(cols);
    // f32 sum of squares (no cancellation), rsqrt, two products: 1e-5 relative.
    expect_close(name, "rstd fwd", wr, widen(rstd), 1e-5, 0);
    expect_close(name, "y fwd", wy, widen(y), 1e-5, 0, &my);

    // Backward from the kernel's saved rstd, as the host runs it.
    for (int r = 0; r < rows; ++r) {
        const size_t b = (size_t)r * cols;
        const R rs = rstd[r];
        R dot = 0, dot_abs = 0;
        for (int c = 0; c < cols; ++c) {
            dot += (R)w[c] * dy[b + c] * x[b + c];
            dot_abs += std::fabs((R)w[c] * dy[b + c] * x[b + c]);
        }
        const R k = rs * rs * rs * dot / cols, k_abs = rs * rs * rs * dot_abs / cols;
        for (int c = 0; c < cols; ++c) {
            // Two terms that cancel: the tolerance scales with their sizes.
            wdx[b + c] = (double)(rs * w[c] * dy[b + c] - x[b + c] * k);
            mdx[b + c] = (double)(std::fabs(rs * w[c] * dy[b + c]) + std::fabs(x[b + c] * k_abs));
        }
    }
    for (int c = 0; c < cols; ++c) {
        R acc = 0, acc_abs = 0;
        for (int r = 0; r < rows; ++r) {
            const size_t i = (size_t)r * cols + c;
            acc += (R)dy[i] * x[i] * rstd[r];
            acc_abs += std::fabs((R)dy[i] * x[i] * rstd[r]);
        }
        wdw[c] = (double)acc;
        mdw[c] = (double)acc_abs;
    }
    run(launch::rows(rows, cols),
        [&] { rms_norm_bwd_dx_f32(rows, cols, dy.data(), x.data(), w.data(), rstd.data(), dx.data()); });
    run(launch::elementwise(cols),
        [&] { rms_norm_bwd_dw_f32(rows, cols, dy.data(), x.data(), rstd.data(), dw.data()); });
    expect_close(name, "dx bwd", wdx, widen(dx), 1e-5, 0, &mdx);
    expect_close(name, "dw bwd", wdw, widen(dw), 1e-5, 0, &mdw);
}

int main() {
    std::mt19937 rng(23);
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (auto [rows, cols] : SHAPES) check(rows, cols, rng);
    });
    return finish("rms_norm");
}
