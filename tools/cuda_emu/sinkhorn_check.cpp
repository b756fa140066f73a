// sinkhorn_check.cpp: runs sinkhorn.cu under emu.h as moe-tensor's CUDA
// backend launches it (one block of 1024 threads) against a reference
// written here from the contract in sinkhorn.cu's header (the arithmetic
// of moe_kernels::cpu::sinkhorn: the same roundings, the column sums in
// G = 1024 / E interleaved groups and a pairwise tree). The balanced
// matrix and the iteration count must match bit for bit, in f32 and f64,
// for E = 1 (1024 groups), E not dividing 1024, E = 1024 (one group), more
// rows than threads, a row with huge logits, and max_iters 0 and 1; and,
// as a check of the algorithm itself, rows and columns of a converged
// result must sum to 1/N and 1/E. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + sinkhorn.cu, rewritten by run.sh
#include "check.h"

constexpr int THREADS = 1024;
constexpr double EPS = 1e-8;

template <typename T>
long long reference(const std::vector<T>& x, long long n, int e, double tol, long long max_iters, std::vector<T>& out) {
    out.assign(x.size(), T(0));
    for (long long r = 0; r < n; ++r) {
        T m = x[r * e];
        for (int k = 1; k < e; ++k) m = x[r * e + k] > m ? x[r * e + k] : m;
        for (int k = 0; k < e; ++k) out[r * e + k] = (T)std::exp((double)(x[r * e + k] - m));
    }
    const int groups = THREADS / e;
    std::vector<T> d0(n, T(1)), d1(e, T(1));
    long long iters = 0;
    while (iters < max_iters) {
        ++iters;
        for (long long r = 0; r < n; ++r) {
            double s = 0;
            for (int k = 0; k < e; ++k) s += (double)out[r * e + k] * (double)d1[k];
            d0[r] = (T)((1.0 / (double)n) / (s + EPS));
        }
        std::vector<double> part((size_t)groups * e, 0.0);
        for (int g = 0; g < groups; ++g)
            for (int k = 0; k < e; ++k)
                for (long long r = g; r < n; r += groups) part[g * e + k] += (double)out[r * e + k] * (double)d0[r];
        int top = 1;
        while (top < groups) top *= 2;
        for (int stride = top / 2; stride > 0; stride /= 2)
            for (int g = 0; g < stride && g + stride < groups; ++g)
                for (int k = 0; k < e; ++k) part[g * e + k] += part[(g + stride) * e + k];
        double err = 0;
        for (int k = 0; k < e; ++k) {
            const T fresh = (T)((1.0 / (double)e) / (part[k] + EPS));
            err += std::fabs((double)fresh - (double)d1[k]);
            d1[k] = fresh;
        }
        if (err / e <= tol) break;
    }
    for (long long r = 0; r < n; ++r)
        for (int k = 0; k < e; ++k) out[r * e + k] = (T)(out[r * e + k] * d1[k]) * d0[r];
    return iters;
}

template <typename T>
long long on_device(const std::vector<T>& x, long long n, int e, double tol, long long max_iters, std::vector<T>& out) {
    out.assign(x.size(), T(-7));
    std::vector<T> d0(n, T(-7));
    long long iters = -7;
    emu_launch(EmuDim{1, 1, 1}, EmuDim{THREADS, 1, 1}, 0, [&] {
        if constexpr (sizeof(T) == 4)
            sinkhorn_f32(n, e, tol, max_iters, x.data(), out.data(), d0.data(), &iters);
        else
            sinkhorn_f64(n, e, tol, max_iters, x.data(), out.data(), d0.data(), &iters);
    });
    return iters;
}

template <typename T>
void check_case(const char* dtype, long long n, int e, double tol, long long max_iters, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.5);
    std::vector<T> x((size_t)(n * e));
    for (auto& v : x) v = (T)normal(rng);
    if (n > 2) x[e] = (T)900.0;  // a huge logit: the row shift keeps exp finite
    std::vector<T> want, got;
    const long long want_iters = reference(x, n, e, tol, max_iters, want);
    const long long got_iters = on_device(x, n, e, tol, max_iters, got);
    const std::string tag = std::string(dtype) + " n " + std::to_string(n) + " e " + std::to_string(e) + " tol " +
                            std::to_string(tol) + " max_iters " + std::to_string(max_iters);
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); ++i) bad += std::memcmp(&want[i], &got[i], sizeof(T)) != 0;
    if (bad || got_iters != want_iters) {
        std::printf("FAIL %s: %zu of %zu values differ in bits, iterations %lld vs %lld\n", tag.c_str(), bad,
                    want.size(), got_iters, want_iters);
        ++failures;
        return;
    }
    // A converged result has the marginals Sinkhorn aims at.
    if (max_iters > 100 && got_iters < max_iters) {
        double worst = 0;
        for (long long r = 0; r < n; ++r) {
            double s = 0;
            for (int k = 0; k < e; ++k) s += (double)got[r * e + k];
            worst = std::max(worst, std::fabs(s * n - 1));
        }
        for (int k = 0; k < e; ++k) {
            double s = 0;
            for (long long r = 0; r < n; ++r) s += (double)got[r * e + k];
            worst = std::max(worst, std::fabs(s * e - 1));
        }
        if (worst > 1e-2) {
            std::printf("FAIL %s: marginals off by %g after %lld iterations\n", tag.c_str(), worst, got_iters);
            ++failures;
            return;
        }
    }
    std::printf("ok   %s (%lld iterations)\n", tag.c_str(), got_iters);
}

int main() {
    std::mt19937 rng(11);
    struct Case {
        long long n;
        int e;
        double tol;
        long long max_iters;
    };
    const Case cases[] = {
        {1, 1, 1e-4, 1000},  {5, 3, 1e-4, 1000},   {300, 8, 1e-4, 1000}, {2500, 7, 1e-4, 1000},
        {64, 1024, 1e-4, 1000}, {40, 5, 0.0, 25}, {17, 4, 1e-4, 0},     {17, 4, 1e-4, 1},
    };
    for (const Case& c : cases) {
        check_case<float>("f32", c.n, c.e, c.tol, c.max_iters, rng);
        check_case<double>("f64", c.n, c.e, c.tol, c.max_iters, rng);
    }
    return failures ? 1 : 0;
}
