// select_check.cpp: runs select.cu under emu.h as the host launches it
// (launch::elementwise for every kernel): index_select and gather from
// strided views of [outer, dim, inner] for every element size (exact), and
// their backward index_add (positions grouped per index on the host, as
// cpu::index::group_by_index) and scatter_add, which must equal the CPU's
// serial loops (ascending source position from zero) bit for bit.
// Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + select.cu, rewritten by run.sh
#include "check.h"

struct Dims3 {
    long long outer, dim, inner;
};

// x's views of logical shape [outer, dim, inner]: contiguous, from a
// transposed buffer, narrowed with an offset.
static std::vector<View> views_of(const Dims3& d) {
    return {contiguous({d.outer, d.dim, d.inner}), permute(contiguous({d.inner, d.dim, d.outer}), {2, 1, 0}),
            narrow(narrow(contiguous({d.outer + 1, d.dim, d.inner + 3}), 2, 2, d.inner), 0, 1, d.outer)};
}

struct Case {
    Dims3 d;
    long long k;
};
static const Case CASES[] = {
    {{1, 1, 1}, 1}, {{3, 5, 4}, 7}, {{2, 40, 1}, 33}, {{1, 9, 70}, 3}, {{4, 6, 5}, 0}, {{2, 1, 3}, 4}, {{5, 3, 2}, 300},
};

template <typename T>
static std::vector<T> pattern(size_t n, std::mt19937_64& rng) {
    std::vector<T> x(n);
    for (auto& e : x) e = (T)rng();
    return x;
}

template <typename T>
static void check_pick(const char* bytes, void (*select)(long long, long long, long long, long long, Strided, const T*,
                                                         const long long*, T*),
                       void (*gather)(long long, long long, long long, long long, Strided, const T*, const long long*,
                                      T*)) {
    std::mt19937_64 rng(7);
    for (const Case& c : CASES) {
        const Dims3 d = c.d;
        for (const View& v : views_of(d)) {
            const std::vector<T> x = pattern<T>(v.span(), rng);
            const auto off = v.offsets();  // row-major over [outer, dim, inner]
            const long long n = d.outer * c.k * d.inner;
            const Strided sx = strided_arg(v);
            // index_select: idx [k] with repeats.
            std::vector<long long> idx(c.k);
            for (auto& i : idx) i = (long long)(rng() % d.dim);
            std::vector<T> y(n), want(n);
            for (long long o = 0; o < d.outer; ++o)
                for (long long j = 0; j < c.k; ++j)
                    for (long long i = 0; i < d.inner; ++i)
                        want[(o * c.k + j) * d.inner + i] = x[off[(o * d.dim + idx[j]) * d.inner + i]];
            run(launch::elementwise(n), [&] { select(n, c.k, d.dim, d.inner, sx, x.data(), idx.data(), y.data()); });
            char buf[200];
            std::snprintf(buf, sizeof buf, "_b%s [%lld,%lld,%lld] k%lld x %s", bytes, d.outer, d.dim, d.inner, c.k,
                          describe(v).c_str());
            expect_equal(std::string("index_select") + buf, "y", want, y);
            // gather: idx [outer, k, inner].
            std::vector<long long> gidx(n);
            for (auto& i : gidx) i = (long long)(rng() % d.dim);
            for (long long o = 0; o < d.outer; ++o)
                for (long long j = 0; j < c.k; ++j)
                    for (long long i = 0; i < d.inner; ++i) {
                        const long long e = (o * c.k + j) * d.inner + i;
                        want[e] = x[off[(o * d.dim + gidx[e]) * d.inner + i]];
                    }
            run(launch::elementwise(n), [&] { gather(n, c.k, d.dim, d.inner, sx, x.data(), gidx.data(), y.data()); });
            expect_equal(std::string("gather") + buf, "y", want, y);
        }
    }
}

// scatter_add into a zeroed dx, one thread per (outer, inner) column, for
// float and integer element types (u8 wraps, as the CPU's u8 does).
template <typename T>
static void check_scatter(const char* type, const Case& c, std::mt19937& rng, const std::vector<T>& g,
                          void (*scatter_add)(long long, long long, long long, long long, const long long*, const T*,
                                              T*)) {
    const Dims3 d = c.d;
    const long long nx = d.outer * d.dim * d.inner, ng = d.outer * c.k * d.inner;
    char buf[120];
    std::snprintf(buf, sizeof buf, "_%s [%lld,%lld,%lld] k%lld", type, d.outer, d.dim, d.inner, c.k);
    std::vector<long long> gidx(ng);
    for (auto& i : gidx) i = (long long)(rng() % d.dim);
    std::vector<T> want(nx, T(0)), dx(nx, T(0));
    for (long long o = 0; o < d.outer; ++o)
        for (long long j = 0; j < c.k; ++j)
            for (long long i = 0; i < d.inner; ++i) {
                const long long s = (o * c.k + j) * d.inner + i;
                want[(o * d.dim + gidx[s]) * d.inner + i] += g[s];
            }
    if (c.k > 0)  // the host launches nothing for k = 0
        run(launch::elementwise(d.outer * d.inner),
            [&] { scatter_add(d.outer * d.inner, c.k, d.dim, d.inner, gidx.data(), g.data(), dx.data()); });
    expect_equal(std::string("scatter_add") + buf, "dx (bit for bit)", want, dx);
}

template <typename T>
static void check_add(const char* type,
                      void (*index_add)(long long, long long, long long, long long, const long long*, const long long*,
                                        const T*, T*),
                      void (*scatter_add)(long long, long long, long long, long long, const long long*, const T*, T*)) {
    std::mt19937 rng(9);
    for (const Case& c : CASES) {
        const Dims3 d = c.d;
        const long long nx = d.outer * d.dim * d.inner, ng = d.outer * c.k * d.inner;
        const std::vector<T> g = normals<T>(rng, ng);
        char buf[120];
        std::snprintf(buf, sizeof buf, "_%s [%lld,%lld,%lld] k%lld", type, d.outer, d.dim, d.inner, c.k);

        // index_add: the host's grouping (a stable counting sort by index).
        std::vector<long long> idx(c.k);
        for (auto& i : idx) i = (long long)(rng() % d.dim);
        std::vector<long long> starts(d.dim + 1, 0), order(c.k);
        for (long long i : idx) ++starts[i + 1];
        for (long long e = 0; e < d.dim; ++e) starts[e + 1] += starts[e];
        std::vector<long long> next(starts.begin(), starts.end() - 1);
        for (long long j = 0; j < c.k; ++j) order[next[idx[j]]++] = j;
        // The CPU's index_add: dx from zero, one add per (o, j, i), j ascending.
        std::vector<T> want(nx, T(0)), dx(nx, (T)NAN);  // every element of dx is written
        for (long long o = 0; o < d.outer; ++o)
            for (long long j = 0; j < c.k; ++j)
                for (long long i = 0; i < d.inner; ++i)
                    want[(o * d.dim + idx[j]) * d.inner + i] += g[(o * c.k + j) * d.inner + i];
        run(launch::elementwise(nx), [&] {
            index_add(nx, c.k, d.dim, d.inner, starts.data(), order.data(), g.data(), dx.data());
        });
        expect_equal(std::string("index_add") + buf, "dx (bit for bit)", want, dx);

        check_scatter<T>(type, c, rng, g, scatter_add);
    }
}

template <typename T>
static void check_scatter_ints(const char* type,
                               void (*scatter_add)(long long, long long, long long, long long, const long long*,
                                                   const T*, T*)) {
    std::mt19937 rng(10);
    for (const Case& c : CASES) {
        std::vector<T> g(c.d.outer * c.k * c.d.inner);
        for (auto& v : g) v = (T)(rng() % 200);  // u8 sums overflow and wrap
        check_scatter<T>(type, c, rng, g, scatter_add);
    }
}

int main() {
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        check_pick<unsigned char>("1", index_select_b1, gather_b1);
        check_pick<unsigned short>("2", index_select_b2, gather_b2);
        check_pick<unsigned int>("4", index_select_b4, gather_b4);
        check_pick<unsigned long long>("8", index_select_b8, gather_b8);
        check_add<float>("f32", index_add_f32, scatter_add_f32);
        check_add<double>("f64", index_add_f64, scatter_add_f64);
        check_scatter_ints<long long>("i64", scatter_add_i64);
        check_scatter_ints<unsigned char>("u8", scatter_add_u8);
    });
    return finish("select");
}
