// softmax_check.cpp: runs softmax.cu's softmax / log-softmax forward and
// backward under emu.h, one block per row (launch::rows), against long
// double references written from the CPU's definitions (moe-kernels'
// cpu::softmax): log_softmax = (x - max) - ln(sum exp(x - max)), exact for
// the max entry as in torch. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + softmax.cu, rewritten by run.sh
#include "check.h"

using R = long double;

static const std::pair<int, int> SHAPES[] = {{1, 1},  {3, 7},   {2, 31},  {2, 32},   {2, 33}, {4, 100},
                                             {2, 512}, {2, 513}, {1, 1500}, {3, 0},  {9, 40}};

struct Rows {
    int rows, cols;
    std::vector<float> x;
    std::string what;
};

// Random rows, and rows with the edges the CPU defines: a NaN (row all NaN),
// all -inf (NaN, as torch), +inf (NaN), and logits near 1000 whose max
// entry's log-probability is tiny (the order of the subtractions shows).
static std::vector<Rows> inputs(std::mt19937& rng) {
    std::vector<Rows> out;
    for (auto [rows, cols] : SHAPES)
        out.push_back({rows, cols, normals<float>(rng, (size_t)rows * cols, 3.0), "N(0,3)"});
    Rows edge{4, 5, {}, "edges"};
    edge.x = {1, 2, NAN, 0, -1,                                            // NaN
              -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,       // all -inf
              0, INFINITY, 1, 2, 3,                                        // +inf
              -INFINITY, 0.5f, -INFINITY, -1, -INFINITY};                  // some -inf: probability 0
    out.push_back(edge);
    Rows big{3, 9, normals<float>(rng, 27, 0.1, 990.0), "near 1000"};
    big.x[0] = 1000.0f, big.x[9 + 4] = 1000.0f, big.x[18 + 8] = 1001.5f;  // one clear max per row
    out.push_back(big);
    return out;
}

// Forward reference of one row: softmax or log-softmax.
static std::vector<R> forward_row(const float* x, int cols, bool log) {
    R m = -INFINITY;
    for (int c = 0; c < cols; ++c) m = (x[c] > m || std::isnan(x[c])) ? x[c] : m;  // NaN wins: the row is NaN anyway
    R s = 0;
    for (int c = 0; c < cols; ++c) s += std::exp((R)x[c] - m);
    std::vector<R> y(cols);
    for (int c = 0; c < cols; ++c) y[c] = log ? ((R)x[c] - m) - std::log(s) : std::exp((R)x[c] - m) / s;
    return y;
}

static void check(const Rows& in, bool log, std::mt19937& rng) {
    const int rows = in.rows, cols = in.cols;
    const size_t n = (size_t)rows * cols;
    std::vector<float> y(n), dx(n);
    std::vector<double> want(n);
    for (int r = 0; r < rows; ++r) {
        const std::vector<R> w = forward_row(in.x.data() + (size_t)r * cols, cols, log);
        for (int c = 0; c < cols; ++c) want[(size_t)r * cols + c] = (double)w[c];
    }
    run(launch::rows(rows, cols), [&] { softmax_fwd_f32(rows, cols, log ? 1 : 0, in.x.data(), y.data()); });
    const std::string name = std::string(log ? "log_softmax " : "softmax ") + std::to_string(rows) + "x" +
                             std::to_string(cols) + " " + in.what;
    // f32 against long double: the rounding of x - max, amplified by its
    // size through exp (|x - max| < 25 here: < 2e-6), of exp, log and the
    // sum. Relative 1e-5; absolute only below f32's normal range for
    // softmax. log_softmax adds ln(s) of the f32 sum s, whose relative
    // rounding (~log2(cols) * 6e-8 < 1e-6) ln turns into an absolute error:
    // 1e-6 absolute, the CPU's own precision. An error of a few ulp of the
    // logits (x - (max + ln s)) is more than that once logits are large.
    expect_close(name, "y fwd", want, widen(y), 1e-5, log ? 1e-6 : 1e-38);

    // Backward from the kernel's own saved y, as the host runs it.
    const std::vector<float> dy = normals<float>(rng, n);
    std::vector<double> dwant(n), mag(n);
    for (int r = 0; r < rows; ++r) {
        const size_t b = (size_t)r * cols;
        R acc = 0, acc_abs = 0;
        for (int c = 0; c < cols; ++c) {
            const R t = log ? (R)dy[b + c] : (R)dy[b + c] * y[b + c];
            acc += t;
            acc_abs += std::fabs(t);
        }
        for (int c = 0; c < cols; ++c) {
            const R yy = y[b + c], g = dy[b + c];
            // softmax: y (dy - sum dy y); log_softmax: dy - exp(y) sum dy. The
            // tolerance scales with the terms, as the subtraction cancels.
            dwant[b + c] = (double)(log ? g - std::exp(yy) * acc : yy * (g - acc));
            mag[b + c] = (double)(log ? std::fabs(g) + std::exp(yy) * acc_abs : std::fabs(yy) * (std::fabs(g) + acc_abs));
        }
    }
    run(launch::rows(rows, cols),
        [&] { softmax_bwd_f32(rows, cols, log ? 1 : 0, y.data(), dy.data(), dx.data()); });
    expect_close(name, "dx bwd", dwant, widen(dx), 1e-5, 0, &mag);
}

int main() {
    std::mt19937 rng(17);
    const std::vector<Rows> cases = inputs(rng);
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (const Rows& c : cases) {
            check(c, false, rng);
            check(c, true, rng);
        }
    });
    return finish("softmax");
}
