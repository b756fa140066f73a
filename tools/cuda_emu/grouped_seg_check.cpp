// grouped_seg_check.cpp: runs grouped_seg.cu under emu.h as moe-tensor's
// CUDA backend launches it (launch::grouped_seg_fwd / grouped_seg_wgrad:
// 64 × 64 tiles, 256 threads) against naive loops written here: for each
// output, the products in ascending k added to a zero, which is the order
// the kernel's contract promises, so results are compared bit for bit
// (f64, f32, and f32 with bf16-rounded operands). Operands are strided
// views (a transposed A, the HF [E, F, D] expert stack read as its
// transpose); segments are empty, shorter and longer than a tile; rows in no
// segment must stay unwritten. Exit status 1 on any mismatch.
#include <cstdio>
#include <functional>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + grouped_seg.cu, rewritten by run.sh
#include "check.h"

constexpr unsigned TILE = 64;

float round_bf16(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return v;
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&v, &u, 4);
    return v;
}
template <typename T>
T operand(T v, int round) {
    if constexpr (std::is_same_v<T, float>) return round ? round_bf16(v) : v;
    return v;
}

// A matrix stored with strides (rs, cs) from offset 0 in a buffer.
template <typename T>
struct Mat {
    std::vector<T> data;
    long long rs, cs;
    T at(long long r, long long c) const { return data[r * rs + c * cs]; }
};

template <typename T>
Mat<T> random_mat(std::mt19937& rng, long long rows, long long cols, bool transposed) {
    std::normal_distribution<double> nd;
    Mat<T> m{std::vector<T>(rows * cols), transposed ? 1 : cols, transposed ? rows : 1};
    for (auto& v : m.data) v = (T)nd(rng);
    return m;
}

template <typename T>
int compare(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); ++i) bad += std::memcmp(&got[i], &want[i], sizeof(T)) != 0;
    if (bad) {
        std::printf("FAIL %s: %zu of %zu differ\n", what.c_str(), bad, want.size());
        ++failures;
    } else {
        std::printf("ok   %s\n", what.c_str());
    }
    return (int)bad;
}

std::vector<long long> offsets_of(const std::vector<long long>& counts) {
    std::vector<long long> off{0};
    for (long long c : counts) off.push_back(off.back() + c);
    return off;
}

// fwd: C[r, :] = A[r, :] · B[e] for rows of segment e; A [M, K], B [E, K, N]
// read either row-major or as the transpose of an [E, N, K] stack.
template <typename T>
void check_fwd(std::mt19937& rng, const std::vector<long long>& counts, long long m_rows, long long k, long long n,
               bool a_t, bool b_hf, int round, const char* name,
               void (*kernel)(long long, long long, long long, int, const long long*, const T*, long long, long long, const T*,
                              long long, long long, long long, T*, int)) {
    const int e = (int)counts.size();
    const auto off = offsets_of(counts);
    const auto a = random_mat<T>(rng, m_rows, k, a_t);
    std::normal_distribution<double> nd;
    std::vector<T> b(e * k * n);
    for (auto& v : b) v = (T)nd(rng);
    // Element (x, kk, j) of B: row-major [E, K, N], or the HF [E, N, K] stack.
    const long long bes = k * n, brs = b_hf ? 1 : n, bcs = b_hf ? k : 1;
    const T unwritten = (T)-12345.0;
    std::vector<T> want(m_rows * n, unwritten), got(m_rows * n, unwritten);
    for (int x = 0; x < e; ++x)
        for (long long r = off[x]; r < off[x + 1]; ++r)
            for (long long j = 0; j < n; ++j) {
                T acc = T(0);
                for (long long kk = 0; kk < k; ++kk)
                    acc += operand(a.at(r, kk), round) * operand(b[x * bes + kk * brs + j * bcs], round);
                want[r * n + j] = acc;
            }
    const unsigned tiles = (unsigned)((m_rows + TILE - 1) / TILE + e), cols = (unsigned)((n + TILE - 1) / TILE);
    if (m_rows > 0 && n > 0)
        emu_launch(EmuDim{tiles, cols, 1}, EmuDim{256, 1, 1}, 0, [&] {
            kernel(m_rows, n, k, e, off.data(), a.data.data(), a.rs, a.cs, b.data(), bes, brs, bcs, got.data(), round);
        });
    std::string tag = std::string(name) + " M " + std::to_string(m_rows) + " K " + std::to_string(k) + " N " +
                      std::to_string(n) + " E " + std::to_string(e) + (a_t ? " A^T" : "") + (b_hf ? " B hf" : "") +
                      (round ? " bf16" : "");
    compare(tag, got, want);
}

// wgrad: C[e] = A[seg e]ᵀ · B[seg e]; A [M, D], B [M, F], C [E, D, F].
template <typename T>
void check_wgrad(std::mt19937& rng, const std::vector<long long>& counts, long long d, long long f, bool a_t,
                 bool b_t, int round, const char* name,
                 void (*kernel)(long long, long long, long long, const long long*, const T*, long long, long long, const T*,
                                long long, long long, T*, int)) {
    const int e = (int)counts.size();
    const auto off = offsets_of(counts);
    const long long m_rows = off.back();
    const auto a = random_mat<T>(rng, m_rows, d, a_t);
    const auto b = random_mat<T>(rng, m_rows, f, b_t);
    std::vector<T> want(e * d * f), got(e * d * f, (T)-12345.0);
    for (int x = 0; x < e; ++x)
        for (long long i = 0; i < d; ++i)
            for (long long j = 0; j < f; ++j) {
                T acc = T(0);
                for (long long r = off[x]; r < off[x + 1]; ++r)
                    acc += operand(a.at(r, i), round) * operand(b.at(r, j), round);
                want[(x * d + i) * f + j] = acc;
            }
    const unsigned cols = (unsigned)((f + TILE - 1) / TILE), rows = (unsigned)((d + TILE - 1) / TILE);
    emu_launch(EmuDim{cols, rows, (unsigned)e}, EmuDim{256, 1, 1}, 0, [&] {
        kernel(m_rows, d, f, off.data(), a.data.data(), a.rs, a.cs, b.data.data(), b.rs, b.cs, got.data(), round);
    });
    std::string tag = std::string(name) + " D " + std::to_string(d) + " F " + std::to_string(f) + " E " +
                      std::to_string(e) + " M " + std::to_string(m_rows) + (a_t ? " A^T" : "") +
                      (b_t ? " B^T" : "") + (round ? " bf16" : "");
    compare(tag, got, want);
}

// Offsets {0, 4, 50} over 6 rows: segment 1 is clamped to rows 4..6.
void check_fwd_clamped(std::mt19937& rng) {
    const long long m_rows = 6, k = 3, n = 2;
    const auto a = random_mat<float>(rng, m_rows, k, false);
    std::vector<float> b(2 * k * n, 1.0f), got(m_rows * n, -1.0f), want(m_rows * n);
    const std::vector<long long> off{0, 4, 50};
    for (long long r = 0; r < m_rows; ++r)
        for (long long j = 0; j < n; ++j) want[r * n + j] = (a.at(r, 0) + a.at(r, 1)) + a.at(r, 2);
    emu_launch(EmuDim{3, 1, 1}, EmuDim{256, 1, 1}, 0, [&] {
        grouped_seg_fwd_f32(m_rows, n, k, 2, off.data(), a.data.data(), a.rs, a.cs, b.data(), k * n, n, 1,
                            got.data(), 0);
    });
    compare(std::string("fwd f32 offsets past M clamped"), got, want);
}

// The tensor-core kernels under emu.h's mma model: every 16-deep k-step
// forms acc + Σ of 16 exact bf16 products in double, rounded once to f32, in
// ascending k. This reference repeats exactly that, so results compare bit
// for bit; the 4-warp fragment placement is what is under test.
float tc_dot(long long klen, const std::function<float(long long)>& a, const std::function<float(long long)>& b) {
    float acc = 0.f;
    for (long long k0 = 0; k0 < klen; k0 += 16) {
        double s = acc;
        for (long long k = k0; k < std::min(k0 + 16, klen); ++k) s += (double)round_bf16(a(k)) * round_bf16(b(k));
        acc = (float)s;
    }
    return acc;
}

void check_tc(std::mt19937& rng, const std::vector<long long>& counts, long long d, long long f, bool hf) {
    const int e = (int)counts.size();
    const auto off = offsets_of(counts);
    const long long m_rows = off.back();
    // fwd: y [M, F] = x [M, D] · w[e] [D, F], w read as the HF [E, F, D] stack when hf.
    const auto x = random_mat<float>(rng, m_rows, d, false);
    std::normal_distribution<double> nd;
    std::vector<float> w(e * d * f);
    for (auto& v : w) v = (float)nd(rng);
    const long long bes = d * f, brs = hf ? 1 : f, bcs = hf ? d : 1;
    std::vector<float> want(m_rows * f), got(m_rows * f, -12345.f);
    for (int x_e = 0; x_e < e; ++x_e)
        for (long long r = off[x_e]; r < off[x_e + 1]; ++r)
            for (long long j = 0; j < f; ++j)
                want[r * f + j] = tc_dot(d, [&](long long k) { return x.at(r, k); },
                                         [&](long long k) { return w[x_e * bes + k * brs + j * bcs]; });
    emu_launch(EmuDim{(unsigned)((m_rows + TILE - 1) / TILE + e), (unsigned)((f + TILE - 1) / TILE), 1},
               EmuDim{128, 1, 1}, 0, [&] {
                   grouped_seg_tc_fwd(m_rows, f, d, e, off.data(), x.data.data(), x.rs, x.cs, w.data(), bes, brs,
                                      bcs, got.data());
               });
    const std::string shape = " M " + std::to_string(m_rows) + " D " + std::to_string(d) + " F " +
                              std::to_string(f) + (hf ? " B hf" : "");
    compare("tc fwd" + shape, got, want);
    // wgrad: dw [E, D, F] = x[seg]ᵀ · g[seg], g [M, F].
    const auto g = random_mat<float>(rng, m_rows, f, false);
    std::vector<float> wwant(e * d * f), wgot(e * d * f, -12345.f);
    for (int x_e = 0; x_e < e; ++x_e)
        for (long long i = 0; i < d; ++i)
            for (long long j = 0; j < f; ++j)
                wwant[(x_e * d + i) * f + j] = tc_dot(off[x_e + 1] - off[x_e],
                                                      [&](long long k) { return x.at(off[x_e] + k, i); },
                                                      [&](long long k) { return g.at(off[x_e] + k, j); });
    emu_launch(EmuDim{(unsigned)((f + TILE - 1) / TILE), (unsigned)((d + TILE - 1) / TILE), (unsigned)e},
               EmuDim{128, 1, 1}, 0, [&] {
                   grouped_seg_tc_wgrad(m_rows, d, f, off.data(), x.data.data(), x.rs, x.cs, g.data.data(), g.rs,
                                        g.cs, wgot.data());
               });
    compare("tc wgrad" + shape, wgot, wwant);
}

int main() {
    std::mt19937 rng(11);
    // Segments: one empty, one under a tile, one over two tiles, one exact.
    const std::vector<long long> counts{3, 0, 130, 64};
    check_fwd<double>(rng, counts, 197, 20, 70, false, false, 0, "fwd f64", grouped_seg_fwd_f64);
    check_fwd<double>(rng, counts, 197, 33, 65, true, true, 0, "fwd f64", grouped_seg_fwd_f64);
    check_fwd<float>(rng, counts, 197, 17, 64, false, true, 0, "fwd f32", grouped_seg_fwd_f32);
    check_fwd<float>(rng, counts, 197, 40, 9, true, false, 1, "fwd f32", grouped_seg_fwd_f32);
    // Rows past the last segment (offsets[E] < M) are not written.
    check_fwd<float>(rng, {5, 7}, 20, 8, 3, false, false, 0, "fwd f32 rows past the segments", grouped_seg_fwd_f32);
    // Offsets past M (not a valid plan) are clamped: no access outside A or C.
    check_fwd_clamped(rng);
    // Every row in one expert, and a single row.
    check_fwd<double>(rng, {0, 0, 129}, 129, 5, 5, false, true, 0, "fwd f64 one expert", grouped_seg_fwd_f64);
    check_fwd<float>(rng, {1}, 1, 1, 1, false, false, 1, "fwd f32 1x1", grouped_seg_fwd_f32);

    check_wgrad<double>(rng, counts, 70, 20, false, false, 0, "wgrad f64", grouped_seg_wgrad_f64);
    check_wgrad<double>(rng, counts, 17, 65, true, true, 0, "wgrad f64", grouped_seg_wgrad_f64);
    check_wgrad<float>(rng, counts, 64, 33, true, false, 0, "wgrad f32", grouped_seg_wgrad_f32);
    check_wgrad<float>(rng, counts, 9, 40, false, true, 1, "wgrad f32", grouped_seg_wgrad_f32);
    check_wgrad<float>(rng, {0, 0}, 3, 4, false, false, 0, "wgrad f32 empty segments", grouped_seg_wgrad_f32);
    // Tensor cores: segments empty, short, over two tiles; D over one k-step
    // of 32 and not a multiple of 16; F not a multiple of 8.
    check_tc(rng, counts, 40, 70, true);
    check_tc(rng, {1, 70, 0}, 17, 9, false);
    return failures ? 1 : 0;
}
