// attention_tc_check.cpp: runs attention_tc.cu's tensor-core kernels under
// emu.h (with its mma.m16n8k16 model) against two references:
// - a naive double reference on the unrounded f32 inputs, with a tolerance
//   derived from bf16 rounding (below);
// - an exact model: the same bf16 operands, P and dS rounded to bf16 as the
//   kernels round them, scores and dP formed as f32 mma chains (one f32
//   rounding per 16-wide k-step, as the emulator's mma), softmax statistics
//   per 64-key tile; everything else in double. It matches to ~1e-5.
// Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + attention_tc.cu, rewritten by run.sh
#include "check.h"

struct Dims {
    int b, hq, hkv, tq, tk, dh;
};

// bf16 round to nearest even, as f32_to_bf16 (no NaN/inf in these inputs).
static float bf16_round(float x) {
    unsigned u = f32_bits(x);
    u += 0x7fffu + ((u >> 16) & 1u);
    return bits_f32(u & 0xffff0000u);
}

// What the mma chain of the kernels computes for a dot product of bf16
// values: per 16-wide k-step, the f32 accumulator plus 16 exact products,
// rounded once to f32.
static float mma_chain_dot(const float* a, const float* b, int dh) {
    float acc = 0.0f;
    for (int k0 = 0; k0 < dh; k0 += 16) {
        double sum = acc;
        for (int c = k0; c < k0 + 16; ++c) sum += (double)a[c] * (double)b[c];
        acc = (float)sum;
    }
    return acc;
}

struct Outputs {
    std::vector<double> o, lse, dq, dk, dv;
    // Magnitudes the bf16 rounding errors scale with, per element (naive only).
    std::vector<double> o_mag, lse_mag, dq_mag, dk_mag, dv_mag;
};

// Visits every (head, query row) with its q/dO row offset, kv row offset and visible key count.
template <typename F>
static void for_each_row(const Dims& d, F&& f) {
    const int group = d.hq / d.hkv, off = d.tk - d.tq;
    for (int b = 0; b < d.b; ++b)
        for (int h = 0; h < d.hq; ++h)
            for (int i = 0; i < d.tq; ++i) {
                const size_t row = ((size_t)b * d.hq + h) * d.tq + i;
                const size_t kh = ((size_t)b * d.hkv + h / group) * d.tk * d.dh;
                f(row, row * d.dh, kh, i + off + 1);
            }
}

static Outputs zeros(const Dims& d, size_t nq, size_t nkv, bool mags) {
    Outputs r;
    r.o.assign(nq, 0);
    r.dq.assign(nq, 0);
    r.dk.assign(nkv, 0);
    r.dv.assign(nkv, 0);
    r.lse.assign((size_t)d.b * d.hq * d.tq, 0);
    if (mags) {
        r.o_mag = r.o, r.dq_mag = r.dq, r.dk_mag = r.dk, r.dv_mag = r.dv, r.lse_mag = r.lse;
    }
    return r;
}

// Naive reference on the unrounded inputs, with the magnitudes the kernels'
// rounding errors scale with. u = 2^-9 is bf16's unit roundoff; q, k, v, dO,
// P and dS each carry one rounding of relative size <= u, and a score
// s = scale q.k moves by <= 2u * scale * sum |q||k| =: 2u * sa, which moves
// P relatively by about as much. Hence per element (as rtol * magnitude):
//   o:   sum_j p_j (1 + sa_j) |v_j|          lse: sum_j p_j sa_j
//   dv:  sum_i p_ij (1 + sa_ij) |dO_i|
//   dS magnitude: p (1 + sa) (|dP| + |delta| + sum |dO||v|)
//   dq:  scale sum_j |dS_ij| |k_j|,  dk: scale sum_i |dS_ij| |q_i|
static Outputs naive(const Dims& d, const std::vector<double>& q, const std::vector<double>& k,
                     const std::vector<double>& v, const std::vector<double>& g, double scale) {
    Outputs r = zeros(d, q.size(), k.size(), true);
    for_each_row(d, [&](size_t row, size_t qi, size_t kh, int n) {
        std::vector<double> s(n), sa(n), p(n), dp(n), dpa(n);
        double mx = -1e300;
        for (int j = 0; j < n; ++j) {
            double acc = 0, mag = 0;
            for (int c = 0; c < d.dh; ++c) {
                acc += q[qi + c] * k[kh + (size_t)j * d.dh + c];
                mag += std::fabs(q[qi + c] * k[kh + (size_t)j * d.dh + c]);
            }
            s[j] = scale * acc, sa[j] = scale * mag;
            mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < n; ++j) sum += std::exp(s[j] - mx);
        r.lse[row] = mx + std::log(sum);
        double delta = 0;
        for (int j = 0; j < n; ++j) {
            p[j] = std::exp(s[j] - mx) / sum;
            double acc = 0, mag = 0;
            for (int c = 0; c < d.dh; ++c) {
                acc += g[qi + c] * v[kh + (size_t)j * d.dh + c];
                mag += std::fabs(g[qi + c] * v[kh + (size_t)j * d.dh + c]);
            }
            dp[j] = acc, dpa[j] = mag;
            delta += p[j] * dp[j];
            r.lse_mag[row] += p[j] * sa[j];
        }
        for (int j = 0; j < n; ++j) {
            const double ds = p[j] * (dp[j] - delta);
            const double ds_mag = p[j] * (1 + sa[j]) * (std::fabs(dp[j]) + std::fabs(delta) + dpa[j]);
            for (int c = 0; c < d.dh; ++c) {
                const size_t a = qi + c, kj = kh + (size_t)j * d.dh + c;
                r.o[a] += p[j] * v[kj];
                r.o_mag[a] += p[j] * (1 + sa[j]) * std::fabs(v[kj]);
                r.dv[kj] += p[j] * g[a];
                r.dv_mag[kj] += p[j] * (1 + sa[j]) * std::fabs(g[a]);
                r.dq[a] += scale * ds * k[kj];
                r.dq_mag[a] += scale * ds_mag * std::fabs(k[kj]);
                r.dk[kj] += scale * ds * q[a];
                r.dk_mag[kj] += scale * ds_mag * std::fabs(q[a]);
            }
        }
    });
    return r;
}

// The exact model (see the top). Inputs already rounded to bf16; the
// backward takes the kernels' lse and the delta the kernels were given. The
// magnitudes are the sums of |terms|, which the kernels' f32 accumulation
// error scales with.
static Outputs exact_model(const Dims& d, const std::vector<float>& q, const std::vector<float>& k,
                           const std::vector<float>& v, const std::vector<float>& g, float scale,
                           const std::vector<float>& lse, const std::vector<float>& delta) {
    Outputs r = zeros(d, q.size(), k.size(), true);
    for_each_row(d, [&](size_t row, size_t qi, size_t kh, int n) {
        // Forward: running max per key tile of ATT_TC_TILE, as the kernel.
        std::vector<float> sv(n);
        std::vector<double> pb(n), tile_max(n);
        float m = NEG_INF_F;
        for (int j0 = 0; j0 < n; j0 += ATT_TC_TILE) {
            const int j1 = std::min(n, j0 + ATT_TC_TILE);
            for (int j = j0; j < j1; ++j) {
                sv[j] = scale * mma_chain_dot(&q[qi], &k[kh + (size_t)j * d.dh], d.dh);
                m = std::max(m, sv[j]);
            }
            for (int j = j0; j < j1; ++j) {
                pb[j] = expf(sv[j] - m);  // f32, as the kernel; rounded below
                tile_max[j] = m;
            }
        }
        double l = 0;
        for (int j = 0; j < n; ++j) {
            const double rescale = std::exp(tile_max[j] - (double)m);
            l += pb[j] * rescale;
            pb[j] = bf16_round((float)pb[j]) * rescale;
        }
        r.lse[row] = m + std::log(l);
        for (int j = 0; j < n; ++j)
            for (int c = 0; c < d.dh; ++c) {
                r.o[qi + c] += pb[j] * v[kh + (size_t)j * d.dh + c] / l;
                r.o_mag[qi + c] += std::fabs(pb[j] * v[kh + (size_t)j * d.dh + c] / l);
            }
        // Backward from the kernels' lse and delta.
        for (int j = 0; j < n; ++j) {
            const float* kj = &k[kh + (size_t)j * d.dh];
            const float* vj = &v[kh + (size_t)j * d.dh];
            const float p = expf(scale * mma_chain_dot(&q[qi], kj, d.dh) - lse[row]);
            const float ds = p * (mma_chain_dot(&g[qi], vj, d.dh) - delta[row]);
            const double p16 = bf16_round(p), ds16 = bf16_round(ds);
            for (int c = 0; c < d.dh; ++c) {
                const size_t kc = kh + (size_t)j * d.dh + c;
                r.dq[qi + c] += (double)scale * ds16 * kj[c];
                r.dq_mag[qi + c] += std::fabs((double)scale * ds16 * kj[c]);
                r.dk[kc] += (double)scale * ds16 * q[qi + c];
                r.dk_mag[kc] += std::fabs((double)scale * ds16 * q[qi + c]);
                r.dv[kc] += p16 * g[qi + c];
                r.dv_mag[kc] += std::fabs(p16 * g[qi + c]);
            }
        }
    });
    return r;
}

static void check(const Dims& d, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    const size_t nq = (size_t)d.b * d.hq * d.tq * d.dh, nkv = (size_t)d.b * d.hkv * d.tk * d.dh;
    const size_t rows = (size_t)d.b * d.hq * d.tq;
    auto draw = [&](size_t n) {
        std::vector<float> x(n);
        for (auto& e : x) e = (float)normal(rng);
        return x;
    };
    const std::vector<float> q = draw(nq), k = draw(nkv), v = draw(nkv), g = draw(nq);
    const float scale = (float)(1.0 / std::sqrt((double)d.dh));
    std::vector<float> o(nq), lse(rows), delta(rows), dq(nq), dk(nkv), dv(nkv);
    // Launch shapes, as moe-kernels' cuda::attention_tc_launch plans them.
    const EmuDim block{ATT_TC_WARPS * 32, 1, 1};
    const EmuDim qgrid{(unsigned)(d.b * d.hq), (unsigned)((d.tq + ATT_TC_ROWS - 1) / ATT_TC_ROWS), 1};
    const EmuDim kgrid{(unsigned)(d.b * d.hkv), (unsigned)((d.tk + ATT_TC_ROWS - 1) / ATT_TC_ROWS), 1};
    const size_t row_bytes = (size_t)(d.dh + ATT_TC_PAD) * 2;
    const size_t fwd_smem = (ATT_TC_ROWS + 2 * ATT_TC_TILE) * row_bytes;
    const size_t dq_smem = (2 * ATT_TC_ROWS + 2 * ATT_TC_TILE) * row_bytes;
    const size_t dkv_smem = dq_smem + 2 * ATT_TC_TILE * sizeof(float);
    const bool d64 = d.dh == 64;
    emu_launch(qgrid, block, fwd_smem, [&] {
        (d64 ? attn_tc_fwd_d64 : attn_tc_fwd_d128)(d.hq, d.hkv, d.tq, d.tk, d.dh, scale, q.data(), k.data(), v.data(),
                                                   o.data(), lse.data());
    });
    // delta = rowsum(dO * O) from the kernel's O (attention.cu's attn_delta_f32
    // computes it on the device; any f32 delta serves the exact model).
    for (size_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int c = 0; c < d.dh; ++c) s += (double)g[r * d.dh + c] * o[r * d.dh + c];
        delta[r] = (float)s;
    }
    emu_launch(qgrid, block, dq_smem, [&] {
        (d64 ? attn_tc_bwd_dq_d64 : attn_tc_bwd_dq_d128)(d.hq, d.hkv, d.tq, d.tk, d.dh, scale, q.data(), k.data(),
                                                         v.data(), g.data(), lse.data(), delta.data(), dq.data());
    });
    emu_launch(kgrid, block, dkv_smem, [&] {
        (d64 ? attn_tc_bwd_dkv_d64 : attn_tc_bwd_dkv_d128)(d.hq, d.hkv, d.tq, d.tk, d.dh, scale, q.data(), k.data(),
                                                           v.data(), g.data(), lse.data(), delta.data(), dk.data(),
                                                           dv.data());
    });
    char buf[160];
    std::snprintf(buf, sizeof buf, "B%d Hq%d Hkv%d Tq%d Tk%d Dh%d", d.b, d.hq, d.hkv, d.tq, d.tk, d.dh);
    const std::string name = buf;

    const Outputs want = naive(d, widen(q), widen(k), widen(v), widen(g), (double)scale);
    const double rtol = 4.0 / 512;  // 4u: see naive()
    expect_close(name + " vs f64", "o", want.o, widen(o), rtol, 1e-6, &want.o_mag);
    expect_close(name + " vs f64", "lse", want.lse, widen(lse), rtol, 1e-6, &want.lse_mag);
    expect_close(name + " vs f64", "dq", want.dq, widen(dq), rtol, 1e-6, &want.dq_mag);
    expect_close(name + " vs f64", "dk", want.dk, widen(dk), rtol, 1e-6, &want.dk_mag);
    expect_close(name + " vs f64", "dv", want.dv, widen(dv), rtol, 1e-6, &want.dv_mag);

    auto rounded = [](const std::vector<float>& x) {
        std::vector<float> out(x.size());
        for (size_t i = 0; i < x.size(); ++i) out[i] = bf16_round(x[i]);
        return out;
    };
    const Outputs model = exact_model(d, rounded(q), rounded(k), rounded(v), rounded(g), scale, lse, delta);
    const double tight = 1e-5;
    expect_close(name + " vs model", "o", model.o, widen(o), tight, 1e-7, &model.o_mag);
    expect_close(name + " vs model", "lse", model.lse, widen(lse), tight, 1e-7);
    expect_close(name + " vs model", "dq", model.dq, widen(dq), tight, 1e-7, &model.dq_mag);
    expect_close(name + " vs model", "dk", model.dk, widen(dk), tight, 1e-7, &model.dk_mag);
    expect_close(name + " vs model", "dv", model.dv, widen(dv), tight, 1e-7, &model.dv_mag);
}

int main() {
    std::mt19937 rng(11);
    // GQA (Hq = 2 Hkv, 4 Hkv); lengths off the 64-row tiles and blocks; a
    // KV-cache call (Tq < Tk) spanning several key tiles; both head sizes.
    const Dims cases[] = {
        {1, 4, 2, 70, 70, 64},
        {1, 2, 1, 37, 150, 64},
        {1, 4, 1, 65, 65, 128},
        {1, 2, 2, 5, 100, 128},
    };
    for (const Dims& d : cases) check(d, rng);
    return finish("attention_tc");
}
