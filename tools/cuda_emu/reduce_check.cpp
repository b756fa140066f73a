// reduce_check.cpp: runs reduce.cu under emu.h as moe-tensor's CUDA backend
// launches it: row sums (one block per row, launch::rows) against a long
// double sum, and max with its position over one dim of any view (one warp
// per output, launch::warps) against the CPU's max_dim loop (first maximum,
// first NaN if there is one), value bits and index exact. Exit status 1 on
// any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + reduce.cu, rewritten by run.sh
#include "check.h"

// (rows, cols): empty rows, one element, around a warp, around the 512
// block, rows longer than the block.
static const std::pair<int, int> SHAPES[] = {{1, 0},  {3, 1},   {2, 31},  {2, 32},  {2, 33},  {5, 100},
                                             {2, 500}, {2, 512}, {2, 513}, {2, 2000}, {7, 64}, {1, 1025}};

template <typename T>
static void check_sum(std::mt19937& rng, const char* name, void (*kernel)(int, int, const T*, T*), double rtol) {
    for (auto [rows, cols] : SHAPES) {
        const std::vector<T> x = normals<T>(rng, (size_t)rows * cols, 1.0, 0.5);
        std::vector<T> y(rows);
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
        run(launch::rows(rows, cols), [&] { kernel(rows, cols, x.data(), y.data()); });
        // A sum of n terms in any order is within ~log2(n) ulp of the sum of
        // |x| (a tree here): rtol of sum |x| covers it with room.
        expect_close(std::string(name) + " " + std::to_string(rows) + "x" + std::to_string(cols), "y", want, widen(y),
                     rtol, 0, &mag);
    }
}

// ---- max over one dim (max_dim_f32 / max_dim_f64) ----

// The bits of a quiet NaN, its sign and its payload.
template <typename T>
struct Bits;
template <>
struct Bits<float> {
    using U = uint32_t;
    static constexpr U QUIET_NAN = 0x7fc00000u, SIGN = 0x80000000u, PAYLOAD = 0x003fffffu;
};
template <>
struct Bits<double> {
    using U = uint64_t;
    static constexpr U QUIET_NAN = 0x7ff8000000000000ull, SIGN = 0x8000000000000000ull,
                       PAYLOAD = 0x0007ffffffffffffull;
};

// A NaN whose payload (and sign) tells which element the kernel returned.
template <typename T>
T tagged_nan(uint64_t tag, bool negative = false) {
    typename Bits<T>::U u = Bits<T>::QUIET_NAN | (typename Bits<T>::U)(tag & Bits<T>::PAYLOAD);
    if (negative) u |= Bits<T>::SIGN;
    T v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

template <typename T>
using MaxDimKernel = void (*)(long long, long long, long long, long long, Strided, const T*, T*, long long*);

// The CPU's max over dim (cpu::reduce::max_dim, also argmax's ranking):
// start from d = 0, move to d when no NaN is held yet and x[d] is larger
// or a NaN. Reads x through the view's own offsets.
template <typename T>
void cpu_max_dim(const std::vector<T>& x, const View& v, const OuterDimInner& s, std::vector<T>& vals,
                 std::vector<long long>& idx) {
    const auto off = v.offsets();
    vals.assign(s.outer * s.inner, T(0));
    idx.assign(s.outer * s.inner, 0);
    for (long long o = 0; o < s.outer; ++o)
        for (long long i = 0; i < s.inner; ++i) {
            const auto at = [&](long long d) { return x[off[(o * s.dim + d) * s.inner + i]]; };
            T best = at(0);
            long long arg = 0;
            for (long long d = 1; d < s.dim; ++d) {
                const T e = at(d);
                if (!std::isnan(best) && (e > best || std::isnan(e))) best = e, arg = d;
            }
            vals[o * s.inner + i] = best;
            idx[o * s.inner + i] = arg;
        }
}

// Runs the kernel over dim k of view v, as cuda_backend::reduce::max_dim does.
template <typename T>
void launch_max_dim(MaxDimKernel<T> kernel, const std::vector<T>& x, const View& v, size_t k, std::vector<T>& vals,
                    std::vector<long long>& idx) {
    const OuterDimInner s = outer_dim_inner(v.dims, k);
    const long long n = s.outer * s.inner, sd = v.strides[k];
    const Strided sx = strided_arg(v);
    vals.assign(n, tagged_nan<T>(~0ull));  // every output must be written (no input NaN has this tag)
    idx.assign(n, -7);
    run(launch::warps(n), [&] { kernel(n, s.dim, s.inner, sd, sx, x.data(), vals.data(), idx.data()); });
}

// Values with frequent ties (small integers, both zeros) and, in scattered
// lanes, infinities and NaNs that each carry their own payload.
template <typename T>
std::vector<T> max_inputs(std::mt19937& rng, size_t n, uint64_t& tag) {
    std::normal_distribution<double> normal(0.0, 3.0);
    std::vector<T> x(n);
    for (auto& e : x) {
        const unsigned u = rng() % 1000;
        if (u < 8) e = tagged_nan<T>(++tag, u % 2);
        else if (u < 16) e = (T)INFINITY;
        else if (u < 30) e = (T)-INFINITY;
        else if (u < 80) e = (T)-0.0;
        else if (u < 130) e = (T)0.0;
        else if (u < 600) e = (T)(int)(rng() % 7) - 3;
        else e = (T)normal(rng);
    }
    return x;
}

// (logical shape, reduced dim): dims around a warp (31, 32, 33), longer
// (70: three rounds of the lanes; 300 along the innermost and the outermost
// dim), short dims with many outputs (more warps than the capped grid has),
// a size-1 dim (the kernel argument drops it) reduced and kept, four dims,
// and an empty dim next to the reduced one (no launch). Outputs are few:
// every one is a warp of 32 threads here. The capped pass runs only the
// cases whose launch the cap changes.
struct MaxCase {
    std::vector<long long> dims;
    size_t k;
};
static const MaxCase MAX_CASES[] = {
    {{3, 33, 2}, 1}, {{2, 32, 3}, 1},   {{31, 3}, 0},       {{2, 70, 2}, 1},       {{2, 300}, 1},
    {{300, 2}, 0},   {{40, 3, 2}, 1},   {{3, 1, 40}, 2},    {{3, 1, 5}, 1},        {{2, 3, 33, 2}, 2},
    {{2, 3, 33, 2}, 0}, {{0, 5, 3}, 1},
};

template <typename T>
void check_max_views(const char* type, MaxDimKernel<T> kernel, std::mt19937& rng) {
    uint64_t tag = 0;
    for (const auto& [dims, k] : MAX_CASES) {
        const OuterDimInner s = outer_dim_inner(dims, k);
        if (unchanged_by_cap(launch::warps(s.outer * s.inner))) continue;
        for (const View& v : views_along(dims, k)) {
            const std::vector<T> x = max_inputs<T>(rng, v.span(), tag);
            std::vector<T> vals, wvals;
            std::vector<long long> idx, widx;
            cpu_max_dim(x, v, s, wvals, widx);
            launch_max_dim(kernel, x, v, k, vals, idx);
            const std::string name =
                std::string("max_dim_") + type + " dim " + std::to_string(k) + " of " + describe(v);
            expect_equal(name, "values (bits)", wvals, vals);
            expect_equal(name, "indices", widx, idx);
        }
    }
}

// Rows of 70 (lane = d % 32; d, d + 32 and d + 64 share a lane) built to
// put ties, NaNs and infinities where the lanes' order and the elements'
// order disagree, with the answer worked out by hand.
struct MaxScenario {
    const char* what;
    double fill;
    std::vector<std::pair<int, double>> set;  // (d, value); NAN entries get a tagged NaN
    long long want;                           // the position that must win
};
constexpr int SCENARIO_LEN = 70;
static const double NEG0 = -0.0;
static const std::vector<MaxScenario> SCENARIOS = {
    {"tie in lanes 8, 2, 2", 1, {{40, 5}, {2, 5}, {66, 5}}, 2},
    {"tie in round 2, lanes 1 and 2, and round 3, lane 1", 1, {{33, 5}, {34, 5}, {65, 5}}, 33},
    {"max at the last element", 1, {{69, 5}}, 69},
    {"max in lane 0's third round", 1, {{64, 5}}, 64},
    {"first NaN in lane 8, second in lane 2, +inf first", 1, {{40, NAN}, {66, NAN}, {0, INFINITY}}, 40},
    {"first NaN in lane 8, second in lane 3", 1, {{35, NAN}, {8, NAN}}, 8},
    {"NaN after the max", 1, {{5, 9}, {33, NAN}}, 33},
    {"+inf in lanes 18 and 31", 1, {{50, INFINITY}, {31, INFINITY}}, 31},
    {"all -inf", -INFINITY, {}, 0},
    {"all -inf, then one NaN last", -INFINITY, {{69, NAN}}, 69},
    {"-inf among numbers", 1, {{7, -INFINITY}}, 0},
    {"+0 before -0", -INFINITY, {{45, NEG0}, {13, 0.0}}, 13},
    {"-0 before +0", -INFINITY, {{45, 0.0}, {13, NEG0}}, 13},
    {"all equal", 1, {}, 0},
    {"all NaN", NAN, {}, 0},
    {"negative NaN beats +inf", 1, {{1, INFINITY}, {60, -NAN}}, 60},
};

template <typename T>
void check_max_scenarios(const char* type, MaxDimKernel<T> kernel) {
    const long long S = (long long)SCENARIOS.size();
    if (unchanged_by_cap(launch::warps(S))) return;
    uint64_t tag = 1000;
    const auto value = [&](double v) { return std::isnan(v) ? tagged_nan<T>(++tag, std::signbit(v)) : (T)v; };
    for (const View& v : {contiguous({S, SCENARIO_LEN}), permute(contiguous({SCENARIO_LEN, S}), {1, 0})}) {
        std::vector<T> x(v.span());
        const auto off = v.offsets();
        std::vector<long long> want(S);
        std::vector<T> wvals(S);
        for (long long r = 0; r < S; ++r) {
            const MaxScenario& c = SCENARIOS[r];
            for (int d = 0; d < SCENARIO_LEN; ++d) x[off[r * SCENARIO_LEN + d]] = value(c.fill);
            for (auto [d, e] : c.set) x[off[r * SCENARIO_LEN + d]] = value(e);
            want[r] = c.want;
            wvals[r] = x[off[r * SCENARIO_LEN + c.want]];
        }
        std::vector<T> vals, rvals;
        std::vector<long long> idx, ridx;
        cpu_max_dim(x, v, outer_dim_inner(v.dims, 1), rvals, ridx);
        launch_max_dim(kernel, x, v, 1, vals, idx);
        const std::string name = std::string("max_dim_") + type + " hand-made rows of 70 " + describe(v);
        expect_equal(name, "reference indices = hand-worked ones", want, ridx);
        for (long long r = 0; r < S; ++r)  // which rows, before the count below
            if (idx[r] != want[r])
                std::printf("     row \"%s\": kernel index %lld, want %lld\n", SCENARIOS[r].what, idx[r], want[r]);
        expect_equal(name, "indices", want, idx);
        expect_equal(name, "values (bits)", wvals, vals);
    }
}

int main() {
    std::mt19937 rng(3);
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        check_sum<float>(rng, "sum_rows_f32", sum_rows_f32, 1e-5);
        check_sum<double>(rng, "sum_rows_f64", sum_rows_f64, 1e-13);
        check_max_views<float>("f32", max_dim_f32, rng);
        check_max_views<double>("f64", max_dim_f64, rng);
        check_max_scenarios<float>("f32", max_dim_f32);
        check_max_scenarios<double>("f64", max_dim_f64);
    });
    return finish("reduce");
}
