// reduce_check.cpp: runs reduce.cu's row sums and row maxima under emu.h,
// one block per row as launch::rows plans it, against a long double sum and
// an exact maximum. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + reduce.cu, rewritten by run.sh
#include "check.h"

// (rows, cols): empty rows, one element, around a warp, around the 512
// block, rows longer than the block.
static const std::pair<int, int> SHAPES[] = {{1, 0},  {3, 1},   {2, 31},  {2, 32},  {2, 33},  {5, 100},
                                             {2, 500}, {2, 512}, {2, 513}, {2, 2000}, {7, 64}, {1, 1025}};

static void check_sum(std::mt19937& rng) {
    for (auto [rows, cols] : SHAPES) {
        const std::vector<float> x = normals<float>(rng, (size_t)rows * cols, 1.0, 0.5);
        std::vector<float> y(rows);
        std::vector<double> want(rows), mag(rows);
        for (int r = 0; r < rows; ++r) {
            long double s = 0, a = 0;
            for (int c = 0; c < cols; ++c) {
                s += x[(size_t)r * cols + c];
                a += std::fabs(x[(size_t)r * cols + c]);
            }
            want[r] = (double)s;
            mag[r] = (double)a;
        }
        run(launch::rows(rows, cols), [&] { sum_rows_f32(rows, cols, x.data(), y.data()); });
        // An f32 sum of n terms in any order is within ~log2(n) * 6e-8 of the
        // sum of |x| (a tree here): 1e-5 of sum |x| covers it with room.
        expect_close("sum_rows_f32 " + std::to_string(rows) + "x" + std::to_string(cols), "y", want, widen(y), 1e-5,
                     0, &mag);
    }
}

// The CPU's max (cpu::reduce::max_dim): a NaN anywhere in the row is the
// maximum; an empty row gives -inf (the kernel's documented value; the CPU
// has no empty max).
static void check_max(std::mt19937& rng) {
    for (auto [rows, cols] : SHAPES) {
        std::vector<float> x = normals<float>(rng, (size_t)rows * cols, 3.0);
        std::vector<float> y(rows);
        std::vector<double> want(rows);
        for (int r = 0; r < rows; ++r) {
            double m = -INFINITY;
            for (int c = 0; c < cols; ++c) m = std::max(m, (double)x[(size_t)r * cols + c]);
            want[r] = m;
        }
        run(launch::rows(rows, cols), [&] { max_rows_f32(rows, cols, x.data(), y.data()); });
        expect_same("max_rows_f32 " + std::to_string(rows) + "x" + std::to_string(cols), "y", want, widen(y));
    }
    // Rows of 40 with infinities, and NaN in one lane's elements, in another
    // lane's, or everywhere.
    const float inf = INFINITY, nan = NAN;
    std::vector<float> x(6 * 40, 1.0f);
    x[0 * 40 + 7] = -inf;                       // -inf among numbers: 1
    x[1 * 40 + 39] = inf;                       // +inf: inf
    x[2 * 40 + 0] = nan;                        // NaN first: NaN
    x[3 * 40 + 33] = nan, x[3 * 40 + 5] = 9.0f;  // NaN after the max: NaN
    for (int c = 0; c < 40; ++c) x[4 * 40 + c] = nan;  // NaN only: NaN
    for (int c = 0; c < 40; ++c) x[5 * 40 + c] = -inf;  // -inf only: -inf
    std::vector<float> y(6);
    run(launch::rows(6, 40), [&] { max_rows_f32(6, 40, x.data(), y.data()); });
    expect_same("max_rows_f32 6x40 with inf and NaN (a NaN is the max, as on the CPU)", "y",
                {1.0, INFINITY, NAN, NAN, NAN, -INFINITY}, widen(y));
}

int main() {
    std::mt19937 rng(3);
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        check_sum(rng);
        check_max(rng);
    });
    return finish("reduce");
}
