// attention_check.cpp: runs attention.cu's kernels under emu.h and compares
// them with a naive double-precision reference that materialises the
// softmax (an implementation independent of both the kernels and the CPU
// crate's tiled one). Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + attention.cu, rewritten by run.sh
#include "check.h"

struct Dims {
    int b, hq, hkv, tq, tk, dh;
};

// Naive reference: o, lse, and for the output gradient d_o: dq, dk, dv.
struct Reference {
    std::vector<double> o, lse, dq, dk, dv;
};

static Reference reference(const Dims& d, const std::vector<double>& q, const std::vector<double>& k,
                           const std::vector<double>& v, const std::vector<double>& d_o, double scale) {
    Reference r;
    r.o.assign(q.size(), 0.0);
    r.dq.assign(q.size(), 0.0);
    r.dk.assign(k.size(), 0.0);
    r.dv.assign(v.size(), 0.0);
    r.lse.assign((size_t)d.b * d.hq * d.tq, 0.0);
    const int group = d.hq / d.hkv, off = d.tk - d.tq;
    for (int b = 0; b < d.b; ++b)
        for (int h = 0; h < d.hq; ++h) {
            const size_t qh = ((size_t)b * d.hq + h) * d.tq * d.dh;
            const size_t kh = ((size_t)b * d.hkv + h / group) * d.tk * d.dh;
            for (int i = 0; i < d.tq; ++i) {
                const int n = i + off + 1;  // visible keys 0..n-1
                std::vector<double> s(n), p(n), dp(n);
                double mx = -1e300;
                for (int j = 0; j < n; ++j) {
                    double acc = 0;
                    for (int c = 0; c < d.dh; ++c) acc += q[qh + (size_t)i * d.dh + c] * k[kh + (size_t)j * d.dh + c];
                    s[j] = scale * acc;
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < n; ++j) sum += std::exp(s[j] - mx);
                r.lse[((size_t)b * d.hq + h) * d.tq + i] = mx + std::log(sum);
                double pdp = 0;
                for (int j = 0; j < n; ++j) {
                    p[j] = std::exp(s[j] - mx) / sum;
                    double acc = 0;
                    for (int c = 0; c < d.dh; ++c) acc += d_o[qh + (size_t)i * d.dh + c] * v[kh + (size_t)j * d.dh + c];
                    dp[j] = acc;
                    pdp += p[j] * dp[j];
                }
                for (int j = 0; j < n; ++j) {
                    const double ds = p[j] * (dp[j] - pdp);
                    for (int c = 0; c < d.dh; ++c) {
                        const size_t qi = qh + (size_t)i * d.dh + c, kj = kh + (size_t)j * d.dh + c;
                        r.o[qi] += p[j] * v[kj];
                        r.dv[kj] += p[j] * d_o[qi];
                        r.dq[qi] += scale * ds * k[kj];
                        r.dk[kj] += scale * ds * q[qi];
                    }
                }
            }
        }
    return r;
}

// Launch shapes, as moe-kernels' cuda::attention_launch plans them.
static const int BLOCK_ROWS = ATT_BLOCK_ROWS, TILE = ATT_TILE, THREADS = ATT_WARPS * 32;
enum Kernel { FWD, DQ, DKV };
static size_t shared_elems(Kernel kind, int dh) {
    switch (kind) {
        case FWD: return (size_t)BLOCK_ROWS * dh + TILE * (dh + 1) + TILE * dh;
        case DQ: return 2 * (size_t)BLOCK_ROWS * dh + 2 * TILE * (dh + 1);
        default: return 2 * (size_t)BLOCK_ROWS * dh + 2 * TILE * (dh + 1) + 2 * TILE;
    }
}

// Kernel entry points by element type and head-size class.
template <typename T>
struct Entry;
template <>
struct Entry<float> {
    static constexpr const char* name = "f32";
    static void fwd(int cls, int hq, int hkv, int tq, int tk, int dh, float s, const float* q, const float* k,
                    const float* v, float* o, float* l) {
        if (cls == 64) attn_fwd_f32_d64(hq, hkv, tq, tk, dh, s, q, k, v, o, l);
        else if (cls == 128) attn_fwd_f32_d128(hq, hkv, tq, tk, dh, s, q, k, v, o, l);
        else attn_fwd_f32_d256(hq, hkv, tq, tk, dh, s, q, k, v, o, l);
    }
    static void dq(int cls, int hq, int hkv, int tq, int tk, int dh, float s, const float* q, const float* k,
                   const float* v, const float* g, const float* l, const float* de, float* dq) {
        if (cls == 64) attn_bwd_dq_f32_d64(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dq);
        else if (cls == 128) attn_bwd_dq_f32_d128(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dq);
        else attn_bwd_dq_f32_d256(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dq);
    }
    static void dkv(int cls, int hq, int hkv, int tq, int tk, int dh, float s, const float* q, const float* k,
                    const float* v, const float* g, const float* l, const float* de, float* dk, float* dv) {
        if (cls == 64) attn_bwd_dkv_f32_d64(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dk, dv);
        else if (cls == 128) attn_bwd_dkv_f32_d128(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dk, dv);
        else attn_bwd_dkv_f32_d256(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dk, dv);
    }
    static void delta(long long rows, int dh, const float* g, const float* o, float* de) {
        attn_delta_f32(rows, dh, g, o, de);
    }
};
template <>
struct Entry<double> {
    static constexpr const char* name = "f64";
    static void fwd(int cls, int hq, int hkv, int tq, int tk, int dh, double s, const double* q, const double* k,
                    const double* v, double* o, double* l) {
        if (cls == 64) attn_fwd_f64_d64(hq, hkv, tq, tk, dh, s, q, k, v, o, l);
        else if (cls == 128) attn_fwd_f64_d128(hq, hkv, tq, tk, dh, s, q, k, v, o, l);
        else attn_fwd_f64_d256(hq, hkv, tq, tk, dh, s, q, k, v, o, l);
    }
    static void dq(int cls, int hq, int hkv, int tq, int tk, int dh, double s, const double* q, const double* k,
                   const double* v, const double* g, const double* l, const double* de, double* dq) {
        if (cls == 64) attn_bwd_dq_f64_d64(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dq);
        else if (cls == 128) attn_bwd_dq_f64_d128(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dq);
        else attn_bwd_dq_f64_d256(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dq);
    }
    static void dkv(int cls, int hq, int hkv, int tq, int tk, int dh, double s, const double* q, const double* k,
                    const double* v, const double* g, const double* l, const double* de, double* dk, double* dv) {
        if (cls == 64) attn_bwd_dkv_f64_d64(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dk, dv);
        else if (cls == 128) attn_bwd_dkv_f64_d128(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dk, dv);
        else attn_bwd_dkv_f64_d256(hq, hkv, tq, tk, dh, s, q, k, v, g, l, de, dk, dv);
    }
    static void delta(long long rows, int dh, const double* g, const double* o, double* de) {
        attn_delta_f64(rows, dh, g, o, de);
    }
};

template <typename T>
static void check(const Dims& d, std::mt19937& rng, double rtol, double atol) {
    std::normal_distribution<double> normal(0.0, 1.0);
    const size_t nq = (size_t)d.b * d.hq * d.tq * d.dh, nkv = (size_t)d.b * d.hkv * d.tk * d.dh;
    const size_t rows = (size_t)d.b * d.hq * d.tq;
    auto draw = [&](size_t n) {
        std::vector<T> x(n);
        for (auto& e : x) e = (T)normal(rng);
        return x;
    };
    std::vector<T> q = draw(nq), k = draw(nkv), v = draw(nkv), g = draw(nq);
    const double scale = 1.0 / std::sqrt((double)std::max(d.dh, 1));
    const Reference want = reference(d, widen(q), widen(k), widen(v), widen(g), (double)(T)scale);
    const int cls = d.dh <= 64 ? 64 : d.dh <= 128 ? 128 : 256;
    std::vector<T> o(nq), lse(rows), delta(rows), dq(nq), dk(nkv), dv(nkv);
    const T s = (T)scale;
    const EmuDim block{(unsigned)THREADS, 1, 1};
    const EmuDim qgrid{(unsigned)(d.b * d.hq), (unsigned)((d.tq + BLOCK_ROWS - 1) / BLOCK_ROWS), 1};
    const EmuDim kgrid{(unsigned)(d.b * d.hkv), (unsigned)((d.tk + BLOCK_ROWS - 1) / BLOCK_ROWS), 1};
    emu_launch(qgrid, block, shared_elems(FWD, d.dh) * sizeof(T), [&] {
        Entry<T>::fwd(cls, d.hq, d.hkv, d.tq, d.tk, d.dh, s, q.data(), k.data(), v.data(), o.data(), lse.data());
    });
    // launch::warps(rows): 256-thread blocks, one warp per row.
    emu_launch(EmuDim{(unsigned)((rows * 32 + 255) / 256), 1, 1}, EmuDim{256, 1, 1}, 0,
               [&] { Entry<T>::delta((long long)rows, d.dh, g.data(), o.data(), delta.data()); });
    emu_launch(qgrid, block, shared_elems(DQ, d.dh) * sizeof(T), [&] {
        Entry<T>::dq(cls, d.hq, d.hkv, d.tq, d.tk, d.dh, s, q.data(), k.data(), v.data(), g.data(), lse.data(),
                     delta.data(), dq.data());
    });
    emu_launch(kgrid, block, shared_elems(DKV, d.dh) * sizeof(T), [&] {
        Entry<T>::dkv(cls, d.hq, d.hkv, d.tq, d.tk, d.dh, s, q.data(), k.data(), v.data(), g.data(), lse.data(),
                      delta.data(), dk.data(), dv.data());
    });
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s B%d Hq%d Hkv%d Tq%d Tk%d Dh%d", Entry<T>::name, d.b, d.hq, d.hkv, d.tq, d.tk,
                  d.dh);
    const std::string name = buf;
    expect_close(name, "o", want.o, widen(o), rtol, atol);
    expect_close(name, "lse", want.lse, widen(lse), rtol, atol);
    expect_close(name, "dq", want.dq, widen(dq), rtol, atol);
    expect_close(name, "dk", want.dk, widen(dk), rtol, atol);
    expect_close(name, "dv", want.dv, widen(dv), rtol, atol);
}

int main() {
    std::mt19937 rng(7);
    // GQA with rows that fill no tile evenly; a KV-cache call (Tq < Tk);
    // several query blocks and key tiles; each head-size class.
    const Dims cases[] = {
        {2, 4, 2, 37, 37, 24}, {1, 2, 1, 5, 40, 64}, {2, 3, 3, 17, 17, 100},
        {1, 2, 2, 33, 33, 160}, {1, 1, 1, 70, 70, 32}, {1, 4, 1, 1, 9, 16},
    };
    for (const Dims& d : cases) {
        check<float>(d, rng, 2e-4, 2e-5);
        check<double>(d, rng, 1e-10, 1e-12);
    }
    return finish("attention");
}
