// strided_check.cpp: runs strided.cu's kernels under emu.h: copies of
// strided views, scatters into views, where over broadcast views (each for
// every element size), the casts (f32 -> bf16 against an independent
// round-to-nearest-even on the real line, NaN quieted as the CPU's `half`
// does) and fill. All exact. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + strided.cu, rewritten by run.sh
#include "check.h"

// Views of up to 8 dims of size > 1: contiguous, transposed, narrowed with an
// offset, broadcast (stride 0), size-1 dims, a scalar, an empty one.
static std::vector<View> views() {
    std::vector<View> v;
    v.push_back(contiguous({1}));
    v.push_back(contiguous({}));  // rank 0: one element
    v.push_back(contiguous({257}));
    v.push_back(contiguous({0, 5}));
    v.push_back(permute(contiguous({7, 37}), {1, 0}));
    v.push_back(narrow(narrow(contiguous({9, 40}), 1, 3, 33), 0, 2, 5));
    v.push_back(broadcast_as(contiguous({3, 1}), {4, 3, 70}));
    v.push_back(permute(contiguous({1, 4, 1, 6, 5}, 11), {3, 0, 4, 2, 1}));
    v.push_back(permute(contiguous({2, 3, 2, 2, 3, 2, 2, 2}, 3), {7, 1, 0, 6, 2, 5, 4, 3}));
    v.push_back(contiguous({1, 2, 1, 2, 2, 3, 1, 2, 2, 2, 2, 1}));  // 8 dims > 1 among 12
    return v;
}

// Deterministic element values that differ in every byte.
template <typename T>
static std::vector<T> pattern(size_t n, unsigned seed) {
    std::vector<T> x(n);
    std::mt19937_64 rng(seed);
    for (auto& e : x) e = (T)rng();
    return x;
}

template <typename T>
static void check_copies(const char* bytes, void (*copy)(long long, Strided, const T*, T*),
                         void (*scatter)(long long, Strided, const T*, T*)) {
    unsigned seed = 1;
    for (const View& v : views()) {
        const std::string name = std::string("copy_strided_") + bytes + " " + describe(v);
        const size_t n = v.numel();
        const std::vector<T> x = pattern<T>(v.span(), seed++);
        std::vector<T> y(n), want(n);
        const std::vector<long long> off = v.offsets();
        for (size_t i = 0; i < n; ++i) want[i] = x[off[i]];
        const Strided s = strided_arg(v);
        run(launch::elementwise(n), [&] { copy((long long)n, s, x.data(), y.data()); });
        expect_equal(name, "y", want, y);
    }
    // Scatter targets: narrowed regions of contiguous buffers (narrow's
    // backward, cat's parts); everything outside the region stays.
    const std::vector<std::pair<std::vector<long long>, std::vector<long long>>> regions = {
        {{300}, {0, 300, 0}}, {{5, 40}, {1, 7, 33}}, {{6, 3, 34}, {0, 2, 3}}, {{4, 5, 6}, {2, 4, 2}},
        {{2, 3, 2, 2, 3, 2, 2, 4}, {7, 1, 2}}, {{1}, {0, 0, 1}},
    };
    for (const auto& [shape, nar] : regions) {
        const View full = contiguous(shape);
        const View region = narrow(full, (int)nar[0], nar[1], nar[2]);
        const std::string name = std::string("scatter_strided_") + bytes + " " + describe(region);
        const size_t n = region.numel();
        const std::vector<T> x = pattern<T>(n, seed++);
        std::vector<T> y = pattern<T>(full.numel(), seed++);
        std::vector<T> want = y;
        const std::vector<long long> off = region.offsets();
        for (size_t i = 0; i < n; ++i) want[off[i]] = x[i];
        const Strided s = strided_arg(region);
        run(launch::elementwise(n), [&] { scatter((long long)n, s, x.data(), y.data()); });
        expect_equal(name, "y", want, y);
    }
}

template <typename T>
static void check_where(const char* bytes,
                        void (*where)(long long, Strided, const unsigned char*, Strided, const T*, Strided,
                                      const T*, T*)) {
    struct Case {
        std::vector<long long> out;
        View m, a, b;
    };
    const std::vector<Case> cases = {
        {{1}, contiguous({1}), contiguous({1}), contiguous({1})},
        {{300}, contiguous({300}), contiguous({300}, 5), contiguous({300}, 2)},
        {{4, 3, 37}, contiguous({4, 3, 37}), broadcast_as(contiguous({3, 1}), {4, 3, 37}),
         broadcast_as(permute(contiguous({37, 3}), {1, 0}), {4, 3, 37})},
        {{6, 33}, broadcast_as(contiguous({33}), {6, 33}), permute(contiguous({33, 6}), {1, 0}),
         broadcast_as(contiguous({}), {6, 33})},
        {{0, 4}, contiguous({0, 4}), contiguous({0, 4}), contiguous({0, 4})},
    };
    unsigned seed = 100;
    for (const Case& c : cases) {
        const View m = broadcast_as(c.m, c.out), a = broadcast_as(c.a, c.out), b = broadcast_as(c.b, c.out);
        const std::string name = std::string("where_") + bytes + " " + describe(m) + " " + describe(a) + " " +
                                 describe(b);
        std::vector<unsigned char> mask = pattern<unsigned char>(m.span(), seed++);
        for (size_t i = 0; i < mask.size(); ++i) mask[i] = i % 3 == 0 ? 0 : mask[i];  // any nonzero is true
        const std::vector<T> av = pattern<T>(a.span(), seed++), bv = pattern<T>(b.span(), seed++);
        const size_t n = m.numel();
        std::vector<T> y(n), want(n);
        const auto om = m.offsets(), oa = a.offsets(), ob = b.offsets();
        for (size_t i = 0; i < n; ++i) want[i] = mask[om[i]] != 0 ? av[oa[i]] : bv[ob[i]];
        const Strided sm = strided_arg(m), sa = strided_arg(a), sb = strided_arg(b);
        run(launch::elementwise(n), [&] { where((long long)n, sm, mask.data(), sa, av.data(), sb, bv.data(), y.data()); });
        expect_equal(name, "y", want, y);
    }
}

// f32 -> bf16, worked out on the real line: the two bf16 neighbours of x
// (x's bits truncated, and one bf16 step further from zero), the nearer one,
// a tie to the even one; NaN keeps its sign and top payload bits with the
// quiet bit set (the CPU's `half::bf16`).
static unsigned short bf16_reference(float x) {
    const unsigned u = f32_bits(x);
    if (std::isnan(x)) return (unsigned short)((u >> 16) | 0x40);
    const unsigned short lo = (unsigned short)(u >> 16), hi = (unsigned short)(lo + 1);
    const double vx = std::fabs((double)x), vlo = std::fabs((double)bits_f32((unsigned)lo << 16));
    // One step past the largest finite bf16 is infinity; measure the step as if
    // the exponent went on, so the halfway point is where IEEE puts it.
    const double vhi = (hi & 0x7fff) == 0x7f80 ? std::ldexp(1.0, 128) : std::fabs((double)bits_f32((unsigned)hi << 16));
    if (std::isinf(x)) return lo;
    const double dlo = vx - vlo, dhi = vhi - vx;
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

static void check_casts() {
    // f32 -> bf16: hand-picked edges, then random bit patterns.
    std::vector<unsigned> bits = {
        0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000,  // zeros, ones, infinities
        0x7fc00000, 0xffc00000, 0x7f800001, 0xff812345, 0x7fbfffff,              // NaNs, signalling ones too
        0x3f808000, 0x3f818000, 0xbf808000, 0xbf818000,                          // exact ties: to even
        0x3f808001, 0x3f807fff, 0x3f80ffff, 0x3f817fff,                          // just above / below a tie
        0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0xff7fffff,                          // near the largest finite
        0x00000001, 0x00008000, 0x00018000, 0x007fffff, 0x80008001, 0x00800000,  // subnormals, smallest normal
    };
    std::mt19937 rng(5);
    for (int i = 0; i < 4000; ++i) bits.push_back(rng());
    for (int i = 0; i < 1000; ++i) bits.push_back((rng() & 0xffff0000u) | 0x8000u);  // ties everywhere
    {
        const size_t n = bits.size();
        std::vector<float> x(n);
        std::vector<unsigned short> y(n), want(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = bits_f32(bits[i]);
            want[i] = bf16_reference(x[i]);
        }
        run(launch::elementwise(n), [&] { cast_f32_bf16((long long)n, x.data(), y.data()); });
        expect_equal("cast_f32_bf16 edges+random", "y", want, y);
    }
    {  // bf16 -> f32: every pattern; exact widening (a NaN keeps its bits).
        const size_t n = 65536;
        std::vector<unsigned short> x(n);
        std::vector<float> y(n), want(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = (unsigned short)i;
            want[i] = bits_f32((unsigned)i << 16);
        }
        run(launch::elementwise(n), [&] { cast_bf16_f32((long long)n, x.data(), y.data()); });
        expect_equal("cast_bf16_f32 all 65536", "y", want, y);
    }
    {  // f64 -> f32 (round to nearest even; overflow to inf, underflow to subnormal/0), f32 -> f64.
        std::vector<double> x = {0.0, -0.0, 1.0, 1.0 + std::ldexp(1.0, -24), 1.0 + 3 * std::ldexp(1.0, -24),
                                 3.4028235677973366e38, 3.5e38, -1e300, 1e-40, 1e-46, 1e-300, NAN, -INFINITY};
        std::normal_distribution<double> nd(0.0, 1e3);
        for (int i = 0; i < 700; ++i) x.push_back(nd(rng));
        const size_t n = x.size();
        std::vector<float> y(n), want(n);
        for (size_t i = 0; i < n; ++i) want[i] = (float)x[i];
        run(launch::elementwise(n), [&] { cast_f64_f32((long long)n, x.data(), y.data()); });
        expect_equal("cast_f64_f32", "y", want, y);
        std::vector<double> back(n), wantd(n);
        for (size_t i = 0; i < n; ++i) wantd[i] = (double)want[i];
        run(launch::elementwise(n), [&] { cast_f32_f64((long long)n, y.data(), back.data()); });
        expect_equal("cast_f32_f64", "y", wantd, back);
    }
    {  // i64 -> f32: the CPU goes through f64, which is the same rounding up to 2^53.
        std::vector<long long> x = {0, 1, -1, 16777216, 16777217, 16777219, -16777217, (1LL << 53) - 1, -(1LL << 53)};
        for (int i = 0; i < 300; ++i) x.push_back((long long)(rng() % 2000001) - 1000000);
        const size_t n = x.size();
        std::vector<float> y(n), want(n);
        for (size_t i = 0; i < n; ++i) want[i] = (float)(double)x[i];
        run(launch::elementwise(n), [&] { cast_i64_f32((long long)n, x.data(), y.data()); });
        expect_equal("cast_i64_f32", "y", want, y);
        std::vector<double> yd(n), wantd(n);
        for (size_t i = 0; i < n; ++i) wantd[i] = (double)x[i];
        run(launch::elementwise(n), [&] { cast_i64_f64((long long)n, x.data(), yd.data()); });
        expect_equal("cast_i64_f64", "y", wantd, yd);
    }
    {  // u8 -> f32: every value.
        const size_t n = 256 + 33;
        std::vector<unsigned char> x(n);
        std::vector<float> y(n), want(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = (unsigned char)(i * 7);
            want[i] = (float)x[i];
        }
        run(launch::elementwise(n), [&] { cast_u8_f32((long long)n, x.data(), y.data()); });
        expect_equal("cast_u8_f32", "y", want, y);
        std::vector<double> yd(n), wantd(n);
        for (size_t i = 0; i < n; ++i) wantd[i] = (double)x[i];
        run(launch::elementwise(n), [&] { cast_u8_f64((long long)n, x.data(), yd.data()); });
        expect_equal("cast_u8_f64", "y", wantd, yd);
    }
}

static void check_fill() {
    for (size_t n : {1, 31, 256, 257, 1000}) {
        const float v = -1.25f;
        std::vector<float> y(n + 7, 3.0f), want(n + 7, 3.0f);
        for (size_t i = 0; i < n; ++i) want[i] = v;
        run(launch::elementwise(n), [&] { fill_f32((long long)n, v, y.data()); });
        expect_equal("fill_f32 n" + std::to_string(n), "y (and the 7 after it untouched)", want, y);
    }
}

int main() {
    with_host_and_capped_grids([](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        check_copies<unsigned char>("b1", copy_strided_b1, scatter_strided_b1);
        check_copies<unsigned short>("b2", copy_strided_b2, scatter_strided_b2);
        check_copies<unsigned int>("b4", copy_strided_b4, scatter_strided_b4);
        check_copies<unsigned long long>("b8", copy_strided_b8, scatter_strided_b8);
        check_where<unsigned char>("b1", where_b1);
        check_where<unsigned short>("b2", where_b2);
        check_where<unsigned int>("b4", where_b4);
        check_where<unsigned long long>("b8", where_b8);
        check_casts();
        check_fill();
    });
    return finish("strided");
}
