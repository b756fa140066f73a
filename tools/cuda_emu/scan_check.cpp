// scan_check.cpp: runs scan.cu under emu.h as moe-tensor's CUDA backend
// launches it (one thread per column, launch::elementwise(outer * inner),
// nothing for an empty tensor): prefix sums (cumsum) and suffix sums (its
// backward) along one dim of any view, f32, f64, i64 and u8 into i64,
// against the CPU's scan (cpu::index::cumsum: the output starts as a copy of
// x, then each row adds the finished row before it) compared exactly: the
// same additions in the same order give the same bits, and a leading -0.0
// stays -0.0. Exit status 1 on any mismatch.
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <type_traits>

#include "kernels.inc"  // common.cuh + scan.cu, rewritten by run.sh
#include "check.h"

template <typename S, typename D>
using ScanKernel = void (*)(long long, long long, long long, long long, int, Strided, const S*, D*);

// The CPU's order (moe-tensor's cumsum widens u8 to i64 first): y = x row
// major, then y[o, d, i] = y[o, d, i] + y[o, d -/+ 1, i] for d ascending
// (descending when reverse) from the second row.
template <typename S, typename D>
std::vector<D> cpu_cumsum(const std::vector<S>& x, const View& v, const OuterDimInner& s, bool reverse) {
    const auto off = v.offsets();
    std::vector<D> y(off.size());
    for (size_t e = 0; e < off.size(); ++e) y[e] = (D)x[off[e]];
    const auto at = [&](long long o, long long d, long long i) -> D& { return y[(o * s.dim + d) * s.inner + i]; };
    for (long long o = 0; o < s.outer; ++o) {
        if (reverse) {
            for (long long d = s.dim - 2; d >= 0; --d)
                for (long long i = 0; i < s.inner; ++i) at(o, d, i) = at(o, d, i) + at(o, d + 1, i);
        } else {
            for (long long d = 1; d < s.dim; ++d)
                for (long long i = 0; i < s.inner; ++i) at(o, d, i) = at(o, d, i) + at(o, d - 1, i);
        }
    }
    return y;
}

// Runs the kernel along dim k of view v, as cuda_backend::scan::cumsum does.
template <typename S, typename D>
std::vector<D> launch_cumsum(ScanKernel<S, D> kernel, const std::vector<S>& x, const View& v, size_t k, bool reverse,
                             D unwritten) {
    const OuterDimInner s = outer_dim_inner(v.dims, k);
    std::vector<D> y(v.numel(), unwritten);  // every output must be written
    if (y.empty()) return y;                 // the host launches nothing
    const long long n = s.outer * s.inner, sd = v.strides[k];
    const Strided sx = strided_arg(v);
    run(launch::elementwise(n), [&] { kernel(n, s.dim, s.inner, sd, reverse ? 1 : 0, sx, x.data(), y.data()); });
    return y;
}

// (logical shape, scanned dim): short and warp-sized columns, columns
// longer than a block of threads (300, 450, 600; innermost and outermost),
// more columns than the capped grid has threads (900 > 3 * 256), a size-1
// dim (the kernel argument drops it) scanned and kept, four dims, one
// element, and empty tensors (no launch).
struct ScanCase {
    std::vector<long long> dims;
    size_t k;
};
static const ScanCase CASES[] = {
    {{2, 33, 3}, 1}, {{2, 33, 3}, 0},    {{2, 33, 3}, 2},    {{3, 300, 2}, 1}, {{600, 2}, 0},
    {{2, 600}, 1},   {{2, 5, 450}, 1},   {{2, 5, 450}, 2},   {{4, 1, 40}, 1},  {{4, 1, 40}, 2},
    {{2, 3, 33, 2}, 2}, {{2, 3, 33, 2}, 0}, {{1}, 0},        {{0, 3, 5}, 1},   {{3, 0, 2}, 1},
};

// Floats of spread magnitudes (so the order of the additions shows in the
// last bits), a few infinities, and zeros, mostly -0.0: a column that starts
// with -0.0 must start its sums with -0.0 (copied, not added to +0.0), and
// stay -0.0 while -0.0 follows.
template <typename T>
std::vector<T> float_inputs(std::mt19937& rng, size_t n) {
    std::normal_distribution<double> normal;
    std::vector<T> x(n);
    for (auto& e : x) {
        const unsigned u = rng() % 1000;
        if (u < 3) e = u % 2 ? (T)INFINITY : (T)-INFINITY;
        else if (u < 200) e = T(-0.0);
        else if (u < 220) e = T(0);
        else e = (T)std::ldexp(normal(rng), (int)(rng() % 25) - 12);
    }
    return x;
}

template <typename S, typename D>
void check_cases(const char* name, ScanKernel<S, D> kernel, const std::function<std::vector<S>(size_t)>& inputs,
                 D unwritten) {
    for (const auto& [dims, k] : CASES) {
        const OuterDimInner s = outer_dim_inner(dims, k);
        if (unchanged_by_cap(launch::elementwise(s.outer * s.inner))) continue;
        for (const View& v : views_along(dims, k))
            for (bool reverse : {false, true}) {
                const std::vector<S> x = inputs(v.span());
                const std::vector<D> want = cpu_cumsum<S, D>(x, v, s, reverse);
                const std::vector<D> got = launch_cumsum(kernel, x, v, k, reverse, unwritten);
                const std::string what = std::string(name) + (reverse ? " reverse" : "") + " dim " +
                                         std::to_string(k) + " of " + describe(v);
                if constexpr (std::is_floating_point_v<D>) expect_same(what, "y", widen(want), widen(got));
                else expect_equal(what, "y", want, got);
            }
    }
}

int main() {
    std::mt19937 rng(11);
    std::uniform_int_distribution<long long> i64s(-(1ll << 40), 1ll << 40);  // sums of <= 600 never overflow
    with_host_and_capped_grids([&](const std::string& pass) {
        const std::string what = pass.empty() ? " as the host plans them" : pass + ", where that differs";
        std::printf("-- launches%s\n", what.c_str());
        check_cases<float, float>("cumsum_f32", cumsum_f32, [&](size_t n) { return float_inputs<float>(rng, n); }, NAN);
        check_cases<double, double>("cumsum_f64", cumsum_f64, [&](size_t n) { return float_inputs<double>(rng, n); },
                                    NAN);
        check_cases<long long, long long>(
            "cumsum_i64", cumsum_i64,
            [&](size_t n) {
                std::vector<long long> x(n);
                for (auto& e : x) e = i64s(rng);
                return x;
            },
            -7777);
        check_cases<unsigned char, long long>(
            "cumsum_u8_i64", cumsum_u8_i64,
            [&](size_t n) {
                std::vector<unsigned char> x(n);
                for (auto& e : x) e = (unsigned char)(rng() % 256);
                return x;
            },
            -7777);
    });
    return finish("scan");
}
