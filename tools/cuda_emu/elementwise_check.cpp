// elementwise_check.cpp: runs elementwise.cu's kernels under emu.h, in f32
// and f64: every unary op forward (on strided views) and backward, the
// binary ops and comparisons on broadcast strided views, and the gated
// activations (two views, and the packed [rows, 2F] form) forward and
// backward. References follow the CPU's formulas (moe-tensor's UnaryOp::f / df,
// BinaryOp::f, Cmp::test) in long double. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>

#include "kernels.inc"  // common.cuh + elementwise.cu, rewritten by run.sh
#include "check.h"

using R = long double;

// A reference value and the magnitude its rounding scales with: the sum of
// the absolute values of the terms the formula adds (1 + tanh(u) for a very
// negative x has an absolute error of ~1 ulp of 1, whatever its size).
struct Val {
    R v, mag;
};

static const R SQRT_2_OVER_PI_R = 0.797884560802865355879892119868763737L;
static const R GELU_C_R = 0.044715L;

static R sigmoid_r(R x) { return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)); }

// x^p as the CPU's powf: the common exponents by multiplication, 0.5 as a
// square root (so (-inf)^0.5 is NaN there, not pow's +inf).
static R pow_cpu(R x, R p) {
    if (p == 2) return x * x;
    if (p == 1) return x;
    if (p == 3) return x * x * x;
    if (p == 0.5L) return std::sqrt(x);
    if (p == -1) return 1 / x;
    return std::pow(x, p);
}

static Val ref_f(int op, R x, R p0, R p1) {
    switch (op) {
        case UOP_NEG: return {-x, std::fabs(x)};
        case UOP_EXP: return {std::exp(x), std::exp(x)};
        case UOP_LOG: return {std::log(x), std::fabs(std::log(x))};
        case UOP_SQRT: return {std::sqrt(x), std::sqrt(x)};
        case UOP_RECIP: return {1 / x, std::fabs(1 / x)};
        case UOP_ABS: return {std::fabs(x), std::fabs(x)};
        case UOP_SIGMOID: return {sigmoid_r(x), sigmoid_r(x)};
        case UOP_SILU: return {x * sigmoid_r(x), std::fabs(x * sigmoid_r(x))};
        case UOP_GELU_TANH: {
            const R t = std::tanh(SQRT_2_OVER_PI_R * (x + GELU_C_R * x * x * x));
            return {0.5L * x * (1 + t), 0.5L * std::fabs(x) * (1 + std::fabs(t))};
        }
        case UOP_GELU_ERF: {
            const R e = std::erf(x / std::sqrt(2.0L));
            return {0.5L * x * (1 + e), 0.5L * std::fabs(x) * (1 + std::fabs(e))};
        }
        case UOP_RELU: return {std::isnan(x) ? 0 : std::max(x, R(0)), std::isnan(x) ? 0 : std::max(x, R(0))};  // NaN -> 0, as fmax
        case UOP_TANH: return {std::tanh(x), std::fabs(std::tanh(x))};
        case UOP_POWF: return {pow_cpu(x, p0), std::fabs(pow_cpu(x, p0))};
        case UOP_AFFINE: return {x * p0 + p1, std::fabs(x * p0) + std::fabs(p1)};
    }
    return {NAN, 0};
}

// dy/dx from x and the saved output y (the CPU's UnaryOp::df).
static Val ref_df(int op, R x, R y, R p0) {
    switch (op) {
        case UOP_NEG: return {-1, 1};
        case UOP_EXP: return {y, std::fabs(y)};
        case UOP_LOG: return {1 / x, std::fabs(1 / x)};
        case UOP_SQRT: return {0.5L / y, std::fabs(0.5L / y)};
        case UOP_RECIP: return {-y * y, y * y};
        case UOP_ABS: return {R(x > 0 ? 1 : x < 0 ? -1 : 0), 1};
        case UOP_SIGMOID: return {y * (1 - y), std::fabs(y) * (1 + std::fabs(y))};
        case UOP_SILU: {
            const R s = sigmoid_r(x);
            return {s * (1 + x * (1 - s)), s * (1 + std::fabs(x) * (1 + s))};
        }
        case UOP_GELU_TANH: {
            const R t = std::tanh(SQRT_2_OVER_PI_R * (x + GELU_C_R * x * x * x));
            const R du = SQRT_2_OVER_PI_R * (1 + 3 * GELU_C_R * x * x);
            return {0.5L * (1 + t) + 0.5L * x * (1 - t * t) * du,
                    0.5L * (1 + std::fabs(t)) + 0.5L * std::fabs(x) * (1 + t * t) * du};
        }
        case UOP_GELU_ERF: {
            const R e = std::erf(x / std::sqrt(2.0L));
            const R pdf = std::exp(-x * x / 2) / std::sqrt(2 * 3.14159265358979323846264338327950288L);
            return {0.5L * (1 + e) + x * pdf, 0.5L * (1 + std::fabs(e)) + std::fabs(x) * pdf};
        }
        case UOP_RELU: return {R(x > 0 ? 1 : 0), 1};
        case UOP_TANH: return {1 - y * y, 1 + y * y};
        case UOP_POWF: return {p0 * pow_cpu(x, p0 - 1), std::fabs(p0 * pow_cpu(x, p0 - 1))};
        case UOP_AFFINE: return {p0, std::fabs(p0)};
    }
    return {NAN, 0};
}

struct UnaryCase {
    int op;
    const char* name;
    double p0, p1;
    bool positive;  // random inputs drawn from the op's domain
};
static const UnaryCase UNARY[] = {
    {UOP_NEG, "neg", 0, 0, false},        {UOP_EXP, "exp", 0, 0, false},
    {UOP_LOG, "log", 0, 0, true},         {UOP_SQRT, "sqrt", 0, 0, true},
    {UOP_RECIP, "recip", 0, 0, false},    {UOP_ABS, "abs", 0, 0, false},
    {UOP_SIGMOID, "sigmoid", 0, 0, false}, {UOP_SILU, "silu", 0, 0, false},
    {UOP_GELU_TANH, "gelu_tanh", 0, 0, false}, {UOP_GELU_ERF, "gelu_erf", 0, 0, false},
    {UOP_RELU, "relu", 0, 0, false},      {UOP_TANH, "tanh", 0, 0, false},
    {UOP_POWF, "powf2", 2, 0, false},     {UOP_POWF, "powf1", 1, 0, false},
    {UOP_POWF, "powf3", 3, 0, false},     {UOP_POWF, "powf0.5", 0.5, 0, true},
    {UOP_POWF, "powf-1", -1, 0, false},   {UOP_POWF, "powf1.7", 1.7, 0, true},
    {UOP_AFFINE, "affine", 1.5, -0.25, false},
};

// Inputs that exercise the ops' edges: zeros, overflow of exp, NaN, infinities.
static const float SPECIALS[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-30f, 0.5f, 20.0f, -20.0f, 88.0f, -88.0f, 100.0f, -100.0f,
                                 INFINITY, -INFINITY, NAN};

static std::vector<View> unary_views() {
    return {contiguous({300}), permute(contiguous({33, 9}), {1, 0}), broadcast_as(contiguous({4, 1, 40}), {4, 3, 40}),
            narrow(contiguous({5, 70}), 1, 3, 64), contiguous({0}),
            contiguous({(long long)(sizeof SPECIALS / sizeof SPECIALS[0])})};
}

// The unary kernels of one element type, and its tolerances against long
// double (atol only for subnormal results).
template <typename T>
struct Unary;
template <>
struct Unary<float> {
    static constexpr const char* name = "f32";
    static constexpr double rtol = 1e-5, atol = 1e-37;
    static constexpr auto fwd = unary_fwd_f32;
    static constexpr auto bwd = unary_bwd_f32;
};
template <>
struct Unary<double> {
    static constexpr const char* name = "f64";
    static constexpr double rtol = 1e-13, atol = 1e-300;
    static constexpr auto fwd = unary_fwd_f64;
    static constexpr auto bwd = unary_bwd_f64;
};

template <typename T>
static void check_unary(std::mt19937& rng) {
    const double RTOL = Unary<T>::rtol, ATOL = Unary<T>::atol;
    const std::string tname = Unary<T>::name;
    for (const UnaryCase& c : UNARY) {
        for (const View& v : unary_views()) {
            const bool specials = v.dims.size() == 1 && v.dims[0] == (long long)(sizeof SPECIALS / sizeof SPECIALS[0]);
            std::vector<T> x = normals<T>(rng, v.span(), 2.0);
            if (specials) x.assign(std::begin(SPECIALS), std::end(SPECIALS));
            else if (c.positive) for (auto& e : x) e = (T)(std::fabs(e) + 1e-3);
            const size_t n = v.numel();
            const T p0 = (T)c.p0, p1 = (T)c.p1;  // the host passes the constants in the element type
            std::vector<T> y(n), xs(n);
            std::vector<double> want(n), mag(n);
            const auto off = v.offsets();
            for (size_t i = 0; i < n; ++i) {
                xs[i] = x[off[i]];
                const Val r = ref_f(c.op, xs[i], p0, p1);
                want[i] = (double)(T)r.v;  // in the element type (exp overflows in f32)
                mag[i] = (double)r.mag;
            }
            const Strided sx = strided_arg(v);
            run(launch::elementwise(n), [&] { Unary<T>::fwd((long long)n, c.op, p0, p1, sx, x.data(), y.data()); });
            const std::string name = "unary_fwd_" + tname + " " + c.name + " " + (specials ? "specials" : describe(v));
            expect_close(name, "y", want, widen(y), RTOL, ATOL, &mag);

            // Backward on contiguous buffers: g, x, and the saved y.
            const std::vector<T> g = normals<T>(rng, n);
            std::vector<T> dx(n);
            std::vector<double> dwant(n), dmag(n);
            for (size_t i = 0; i < n; ++i) {
                const Val d = ref_df(c.op, xs[i], y[i], p0);
                dwant[i] = (double)(T)((R)g[i] * d.v);
                dmag[i] = std::fabs((double)g[i]) * (double)d.mag;
            }
            run(launch::elementwise(n),
                [&] { Unary<T>::bwd((long long)n, c.op, p0, g.data(), xs.data(), y.data(), dx.data()); });
            expect_close("unary_bwd_" + tname + " " + c.name + (specials ? " specials" : " n" + std::to_string(n)),
                         "dx", dwant, widen(dx), RTOL, ATOL, &dmag);
        }
    }
}

// Broadcast operand pairs: out shape, a's view, b's view (before broadcasting).
struct BinaryCase {
    std::vector<long long> out;
    View a, b;
};
static std::vector<BinaryCase> binary_cases() {
    return {
        {{1}, contiguous({1}), contiguous({1})},
        {{300}, contiguous({300}), contiguous({300}, 4)},
        {{4, 3, 37}, contiguous({3, 1}), permute(contiguous({37, 3, 4}), {2, 1, 0})},
        {{6, 33}, contiguous({}), narrow(contiguous({6, 40}), 1, 5, 33)},
        {{2, 1, 5, 7}, contiguous({2, 1, 1, 7}), contiguous({5, 1})},
        {{0, 3}, contiguous({0, 3}), contiguous({3})},
    };
}

// Values with ties between a and b, signed zeros, NaN and infinities.
template <typename T>
static std::vector<T> binary_inputs(std::mt19937& rng, size_t n) {
    std::vector<T> x = normals<T>(rng, n, 3.0);
    const T edge[] = {0.0, -0.0, 1.0, INFINITY, -INFINITY, NAN, 2.0};
    for (size_t i = 0; i < n; ++i)
        if (i % 5 == 0) x[i] = edge[(i / 5) % 7];
    return x;
}

// Each op rounded once to T from a wider result: for f32 from double,
// exact for + - * / (double carries 2 * 24 + 2 bits); for f64 from long
// double, within an ulp (compared with that tolerance).
template <typename T>
static double ref_binary(int op, double a, double b) {
    using W = std::conditional_t<std::is_same_v<T, float>, double, R>;
    const W x = a, y = b;
    switch (op) {
        case BOP_ADD: return (T)(x + y);
        case BOP_SUB: return (T)(x - y);
        case BOP_MUL: return (T)(x * y);
        case BOP_DIV: return (T)(x / y);
        case BOP_MAXIMUM: return (a >= b || std::isnan(a)) ? a : b;  // ties and a NaN in a pick a
        case BOP_MINIMUM: return (a <= b || std::isnan(a)) ? a : b;
    }
    return NAN;
}

static bool ref_compare(int op, double a, double b) {
    switch (op) {
        case CMP_EQ: return a == b;
        case CMP_NE: return a != b;
        case CMP_LT: return a < b;
        case CMP_LE: return a <= b;
        case CMP_GT: return a > b;
        case CMP_GE: return a >= b;
    }
    return false;
}

template <typename T>
struct Pairwise;
template <>
struct Pairwise<float> {
    static constexpr const char* name = "f32";
    static constexpr auto binary = binary_f32;
    static constexpr auto compare = compare_f32;
};
template <>
struct Pairwise<double> {
    static constexpr const char* name = "f64";
    static constexpr auto binary = binary_f64;
    static constexpr auto compare = compare_f64;
};

template <typename T>
static void check_binary(std::mt19937& rng) {
    const char* bnames[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
    const char* cnames[] = {"eq", "ne", "lt", "le", "gt", "ge"};
    const std::string tname = Pairwise<T>::name;
    for (const BinaryCase& c : binary_cases()) {
        const View a = broadcast_as(c.a, c.out), b = broadcast_as(c.b, c.out);
        const std::vector<T> av = binary_inputs<T>(rng, a.span());
        std::vector<T> bv = binary_inputs<T>(rng, b.span());
        // Make some elements equal to a's, for ties.
        const auto oa = a.offsets(), ob = b.offsets();
        const size_t n = a.numel();
        for (size_t i = 0; i < n; i += 3) bv[ob[i]] = av[oa[i]];
        const Strided sa = strided_arg(a), sb = strided_arg(b);
        const std::string shapes = describe(a) + " " + describe(b);
        for (int op = 0; op < 6; ++op) {
            std::vector<T> out(n);
            std::vector<double> want(n);
            for (size_t i = 0; i < n; ++i) want[i] = ref_binary<T>(op, av[oa[i]], bv[ob[i]]);
            run(launch::elementwise(n),
                [&] { Pairwise<T>::binary((long long)n, op, sa, av.data(), sb, bv.data(), out.data()); });
            const std::string name = "binary_" + tname + " " + bnames[op] + " " + shapes;
            if constexpr (std::is_same_v<T, float>) expect_same(name, "out", want, widen(out));
            else expect_close(name, "out", want, widen(out), 0x1p-52, 0);
        }
        for (int op = 0; op < 6; ++op) {
            std::vector<unsigned char> mask(n, 7), want(n);
            for (size_t i = 0; i < n; ++i) want[i] = ref_compare(op, av[oa[i]], bv[ob[i]]);
            run(launch::elementwise(n),
                [&] { Pairwise<T>::compare((long long)n, op, sa, av.data(), sb, bv.data(), mask.data()); });
            expect_equal("compare_" + tname + " " + cnames[op] + " " + shapes, "mask", want, mask);
        }
    }
}

// Gated activations by element type.
template <typename T>
struct Gated;
template <>
struct Gated<float> {
    static constexpr const char* name = "f32";
    static constexpr double rtol = 1e-5;
    static void fwd(long long n, int op, double p0, double p1, Strided sg, const float* g, Strided su, const float* u,
                    float* y) {
        gated_fwd_f32(n, op, p0, p1, sg, g, su, u, y);
    }
    static void bwd(long long n, int op, double p0, double p1, Strided sd, const float* dy, Strided sg, const float* g,
                    Strided su, const float* u, float* dg, float* du) {
        gated_bwd_f32(n, op, p0, p1, sd, dy, sg, g, su, u, dg, du);
    }
    static void packed_fwd(long long n, int f, int op, double p0, double p1, const float* h, float* y) {
        gated_packed_fwd_f32(n, f, op, p0, p1, h, y);
    }
    static void packed_bwd(long long n, int f, int op, double p0, double p1, const float* dy, const float* h,
                           float* dh) {
        gated_packed_bwd_f32(n, f, op, p0, p1, dy, h, dh);
    }
};
template <>
struct Gated<double> {
    static constexpr const char* name = "f64";
    static constexpr double rtol = 1e-12;
    static void fwd(long long n, int op, double p0, double p1, Strided sg, const double* g, Strided su,
                    const double* u, double* y) {
        gated_fwd_f64(n, op, p0, p1, sg, g, su, u, y);
    }
    static void bwd(long long n, int op, double p0, double p1, Strided sd, const double* dy, Strided sg,
                    const double* g, Strided su, const double* u, double* dg, double* du) {
        gated_bwd_f64(n, op, p0, p1, sd, dy, sg, g, su, u, dg, du);
    }
    static void packed_fwd(long long n, int f, int op, double p0, double p1, const double* h, double* y) {
        gated_packed_fwd_f64(n, f, op, p0, p1, h, y);
    }
    static void packed_bwd(long long n, int f, int op, double p0, double p1, const double* dy, const double* h,
                           double* dh) {
        gated_packed_bwd_f64(n, f, op, p0, p1, dy, h, dh);
    }
};

static const UnaryCase GATED_ACTS[] = {
    {UOP_SILU, "silu", 0, 0, false},         {UOP_GELU_TANH, "gelu_tanh", 0, 0, false},
    {UOP_GELU_ERF, "gelu_erf", 0, 0, false}, {UOP_RELU, "relu", 0, 0, false},
    {UOP_SIGMOID, "sigmoid", 0, 0, false},   {UOP_TANH, "tanh", 0, 0, false},
    {UOP_POWF, "powf3", 3, 0, false},        {UOP_AFFINE, "affine", 1.5, -0.25, false},
};

// act(x) * u and the backward's (dgate, dup), with magnitudes.
struct GatedRef {
    double y, ymag, dg, dgmag, du, dumag;
};
template <typename T>
static GatedRef gated_ref(const UnaryCase& c, T x, T u, T dy) {
    const R p0 = (T)c.p0, p1 = (T)c.p1;  // the kernels use the constants in T
    const Val a = ref_f(c.op, x, p0, p1), d = ref_df(c.op, x, a.v, p0);
    const R ur = u, g = dy;
    return {(double)(a.v * ur), (double)(a.mag * std::fabs(ur)), (double)(g * ur * d.v),
            (double)(std::fabs(g * ur) * d.mag), (double)(g * a.v), (double)(std::fabs(g) * a.mag)};
}

template <typename T>
static void check_gated(std::mt19937& rng) {
    const double rtol = Gated<T>::rtol, atol = 1e-300;
    // gate / up: the halves of one [rows, 2F] buffer (chunk), a transposed
    // view with a broadcast up, contiguous; dy any view too.
    struct Case {
        View g, u, d;
    };
    const std::vector<Case> cases = {
        {narrow(contiguous({7, 66}), 1, 0, 33), narrow(contiguous({7, 66}), 1, 33, 33), contiguous({7, 33})},
        {permute(contiguous({40, 5}), {1, 0}), broadcast_as(contiguous({1, 40}), {5, 40}),
         permute(contiguous({40, 5}), {1, 0})},
        {contiguous({257}), contiguous({257}), broadcast_as(contiguous({1}), {257})},
        {contiguous({1}), contiguous({1}), contiguous({1})},
        {contiguous({0, 8}), contiguous({0, 8}), contiguous({0, 8})},
    };
    for (const UnaryCase& c : GATED_ACTS) {
        for (const Case& k : cases) {
            const size_t n = k.g.numel();
            const std::vector<T> gate = normals<T>(rng, k.g.span(), 2.0), up = normals<T>(rng, k.u.span()),
                                 dy = normals<T>(rng, k.d.span());
            const auto og = k.g.offsets(), ou = k.u.offsets(), od = k.d.offsets();
            std::vector<T> y(n), dg(n), du(n);
            std::vector<double> wy(n), my(n), wdg(n), mdg(n), wdu(n), mdu(n);
            for (size_t i = 0; i < n; ++i) {
                const GatedRef r = gated_ref<T>(c, gate[og[i]], up[ou[i]], dy[od[i]]);
                wy[i] = r.y, my[i] = r.ymag, wdg[i] = r.dg, mdg[i] = r.dgmag, wdu[i] = r.du, mdu[i] = r.dumag;
            }
            const Strided sg = strided_arg(k.g), su = strided_arg(k.u), sd = strided_arg(k.d);
            run(launch::elementwise(n),
                [&] { Gated<T>::fwd((long long)n, c.op, c.p0, c.p1, sg, gate.data(), su, up.data(), y.data()); });
            run(launch::elementwise(n), [&] {
                Gated<T>::bwd((long long)n, c.op, c.p0, c.p1, sd, dy.data(), sg, gate.data(), su, up.data(), dg.data(),
                              du.data());
            });
            const std::string name = std::string("gated_") + Gated<T>::name + " " + c.name + " " + describe(k.g) +
                                     " " + describe(k.u) + " " + describe(k.d);
            expect_close(name, "y", wy, widen(y), rtol, atol, &my);
            expect_close(name, "dgate", wdg, widen(dg), rtol, atol, &mdg);
            expect_close(name, "dup", wdu, widen(du), rtol, atol, &mdu);
        }
        // Packed: h [rows, 2f], each row's f gate values then its f up values.
        for (auto [rows, f] : {std::pair{1, 1}, {3, 5}, {7, 33}, {2, 300}, {0, 4}, {4, 0}}) {
            const size_t n = (size_t)rows * f;
            const std::vector<T> h = normals<T>(rng, 2 * n, 2.0), dy = normals<T>(rng, n);
            std::vector<T> y(n), dh(2 * n, (T)NAN);  // every element of dh must be written
            std::vector<double> wy(n), my(n), wdh(2 * n), mdh(2 * n);
            for (int r = 0; r < rows; ++r)
                for (int j = 0; j < f; ++j) {
                    const size_t i = (size_t)r * f + j, gi = (size_t)r * 2 * f + j, ui = gi + f;
                    const GatedRef k = gated_ref<T>(c, h[gi], h[ui], dy[i]);
                    wy[i] = k.y, my[i] = k.ymag, wdh[gi] = k.dg, mdh[gi] = k.dgmag, wdh[ui] = k.du, mdh[ui] = k.dumag;
                }
            run(launch::elementwise(n),
                [&] { Gated<T>::packed_fwd((long long)n, f, c.op, c.p0, c.p1, h.data(), y.data()); });
            run(launch::elementwise(n),
                [&] { Gated<T>::packed_bwd((long long)n, f, c.op, c.p0, c.p1, dy.data(), h.data(), dh.data()); });
            const std::string name = std::string("gated_packed_") + Gated<T>::name + " " + c.name + " rows" +
                                     std::to_string(rows) + " f" + std::to_string(f);
            expect_close(name, "y", wy, widen(y), rtol, atol, &my);
            expect_close(name, "dh", wdh, widen(dh), rtol, atol, &mdh);
        }
    }
}

int main() {
    std::mt19937 rng(11);
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        check_unary<float>(rng);
        check_unary<double>(rng);
        check_binary<float>(rng);
        check_binary<double>(rng);
        check_gated<float>(rng);
        check_gated<double>(rng);
    });
    return finish("elementwise");
}
