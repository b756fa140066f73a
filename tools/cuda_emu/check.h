// check.h: what the *_check.cpp programs share: launch shapes as
// moe-kernels' cuda::launch plans them, strided views and their kernel
// argument as cuda::StridedArg::new builds it, and comparisons that print one
// line per check and count failures. Include it after "kernels.inc" (it
// fills common.cuh's `struct Strided`).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

inline int failures = 0;

// ---- launch shapes (moe-kernels/src/cuda/launch.rs) ----

struct Launch1d {
    unsigned grid, block;
};

namespace launch {
constexpr unsigned ELEMENTWISE_BLOCK = 256, MAX_ELEMENTWISE_GRID = 65536, MAX_ROW_GRID = 1u << 20,
                   MAX_BLOCK = 1024, ROW_BLOCK = 512;

inline unsigned warp_multiple(size_t n) {
    n = std::clamp<size_t>(n, 1, MAX_BLOCK);
    return (unsigned)((n + 31) / 32 * 32);
}
inline std::optional<Launch1d> elementwise(size_t n) {
    if (n == 0) return std::nullopt;
    const size_t blocks = std::min<size_t>((n + ELEMENTWISE_BLOCK - 1) / ELEMENTWISE_BLOCK, MAX_ELEMENTWISE_GRID);
    return Launch1d{(unsigned)blocks, ELEMENTWISE_BLOCK};
}
inline std::optional<Launch1d> warps(size_t n) { return elementwise(n * 32); }
inline std::optional<Launch1d> rows(size_t rows, size_t cols) {
    if (rows == 0) return std::nullopt;
    return Launch1d{(unsigned)std::min<size_t>(rows, MAX_ROW_GRID), std::min(warp_multiple(cols), ROW_BLOCK)};
}
inline Launch1d single_block(size_t n) { return Launch1d{1, warp_multiple(n)}; }
}  // namespace launch

// Every kernel must be correct for any grid >= 1 (grid-stride loops, row
// loops past the grid). When set, launches use at most this many blocks, so
// a second pass over the cases runs those loops.
inline unsigned grid_cap = 0;

// Runs `kernel` as the host would launch it (nothing for a launch the host
// skips), without dynamic shared memory (these kernels have none).
inline void run(std::optional<Launch1d> l, const std::function<void()>& kernel) {
    if (!l) return;
    const unsigned grid = grid_cap ? std::min(l->grid, grid_cap) : l->grid;
    emu_launch(EmuDim{grid, 1, 1}, EmuDim{l->block, 1, 1}, 0, kernel);
}

// Whether, in the capped pass, launch l would run exactly as in the first
// pass (it has no more blocks than the cap): checks may skip such a case.
inline bool unchanged_by_cap(std::optional<Launch1d> l) { return grid_cap && (!l || l->grid <= grid_cap); }

// ---- strided views ----

// A view of a buffer: logical element (i0, i1, ..) at offset + sum ik * strides[k].
struct View {
    std::vector<long long> dims, strides;
    long long offset = 0;

    size_t numel() const {
        size_t n = 1;
        for (long long d : dims) n *= (size_t)d;
        return n;
    }
    // Storage offsets of the logical elements in row-major order, by an
    // odometer over the multi-index (not by strided_offset's divisions).
    std::vector<long long> offsets() const {
        std::vector<long long> out;
        const size_t n = numel();
        out.reserve(n);
        std::vector<long long> idx(dims.size(), 0);
        for (size_t e = 0; e < n; ++e) {
            long long off = offset;
            for (size_t k = 0; k < dims.size(); ++k) off += idx[k] * strides[k];
            out.push_back(off);
            for (size_t k = dims.size(); k-- > 0;) {
                if (++idx[k] < dims[k]) break;
                idx[k] = 0;
            }
        }
        return out;
    }
    // Elements a buffer needs to hold this view.
    size_t span() const {
        long long hi = offset;
        for (size_t k = 0; k < dims.size(); ++k)
            if (dims[k] > 0) hi += (dims[k] - 1) * strides[k];
        return numel() == 0 ? (size_t)offset : (size_t)hi + 1;
    }
};

inline View contiguous(std::vector<long long> dims, long long offset = 0) {
    View v{dims, std::vector<long long>(dims.size()), offset};
    long long s = 1;
    for (size_t k = dims.size(); k-- > 0;) {
        v.strides[k] = s;
        s *= dims[k];
    }
    return v;
}
inline View permute(const View& v, const std::vector<int>& perm) {
    View p{{}, {}, v.offset};
    for (int k : perm) {
        p.dims.push_back(v.dims[k]);
        p.strides.push_back(v.strides[k]);
    }
    return p;
}
inline View narrow(View v, int d, long long start, long long len) {
    v.offset += start * v.strides[d];
    v.dims[d] = len;
    return v;
}
// Broadcast to `dims` as Layout::broadcast_as does: leading dims added and
// size-1 dims expanded with stride 0.
inline View broadcast_as(const View& v, const std::vector<long long>& dims) {
    View b{dims, std::vector<long long>(dims.size(), 0), v.offset};
    const size_t lead = dims.size() - v.dims.size();
    for (size_t k = 0; k < v.dims.size(); ++k)
        b.strides[lead + k] = v.dims[k] == 1 && dims[lead + k] != 1 ? 0 : v.strides[k];
    return b;
}

// The kernel argument, as StridedArg::new fills it: size-1 dims dropped,
// unused dims 1 with stride 0.
inline Strided strided_arg(const View& v) {
    Strided s{};
    s.offset = v.offset;
    for (int k = 0; k < MAX_RANK; ++k) {
        s.dims[k] = 1;
        s.strides[k] = 0;
    }
    int r = 0;
    for (size_t k = 0; k < v.dims.size(); ++k) {
        if (v.dims[k] == 1) continue;
        if (r == MAX_RANK) {
            std::printf("FAIL check setup: a view of more than %d dims of size > 1\n", MAX_RANK);
            std::exit(2);
        }
        s.dims[r] = v.dims[k];
        s.strides[r] = v.strides[k];
        ++r;
    }
    s.rank = r;
    return s;
}

// A shape seen around dim k, as Shape::outer_dim_inner splits it: logical
// element (o, d, i) is row-major index (o * dim + d) * inner + i.
struct OuterDimInner {
    long long outer, dim, inner;
};
inline OuterDimInner outer_dim_inner(const std::vector<long long>& dims, size_t k) {
    OuterDimInner s{1, dims[k], 1};
    for (size_t j = 0; j < k; ++j) s.outer *= dims[j];
    for (size_t j = k + 1; j < dims.size(); ++j) s.inner *= dims[j];
    return s;
}

// Views of logical shape `dims` for kernels that read along dim k in place
// (the dim's stride passed apart): contiguous; every dim reversed in storage
// (a transpose); the first dim stored last (another permutation, rank >= 3);
// each dim narrowed inside a larger buffer with an offset; broadcast
// (stride 0) along k; broadcast along another dim when there is one.
inline std::vector<View> views_along(const std::vector<long long>& dims, size_t k) {
    const size_t r = dims.size();
    std::vector<long long> reversed(dims.rbegin(), dims.rend()), padded = dims;
    std::vector<int> back(r);
    for (size_t j = 0; j < r; ++j) back[j] = (int)(r - 1 - j);
    for (auto& d : padded) d += 2;
    View narrowed = contiguous(padded, 5);
    for (size_t j = 0; j < r; ++j) narrowed = narrow(narrowed, (int)j, 1, dims[j]);
    const auto broadcast_along = [&](size_t j) {
        std::vector<long long> one = dims;
        one[j] = 1;
        return broadcast_as(contiguous(one, 2), dims);
    };
    std::vector<View> views{contiguous(dims), permute(contiguous(reversed), back), narrowed, broadcast_along(k)};
    if (r > 1) views.push_back(broadcast_along((k + 1) % r));
    if (r >= 3) {
        std::vector<long long> first_last(dims.begin() + 1, dims.end());
        first_last.push_back(dims[0]);
        std::vector<int> perm{(int)r - 1};
        for (size_t j = 0; j + 1 < r; ++j) perm.push_back((int)j);
        views.push_back(permute(contiguous(first_last), perm));
    }
    return views;
}

inline std::string describe(const View& v) {
    std::string s = "[";
    for (size_t k = 0; k < v.dims.size(); ++k) s += (k ? "," : "") + std::to_string(v.dims[k]);
    s += "]/(";
    for (size_t k = 0; k < v.strides.size(); ++k) s += (k ? "," : "") + std::to_string(v.strides[k]);
    return s + ")+" + std::to_string(v.offset);
}

// ---- inputs ----

template <typename T>
std::vector<T> normals(std::mt19937& rng, size_t n, double sd = 1.0, double mean = 0.0) {
    std::normal_distribution<double> d(mean, sd);
    std::vector<T> x(n);
    for (auto& e : x) e = (T)d(rng);
    return x;
}

template <typename T>
std::vector<double> widen(const std::vector<T>& x) {
    return std::vector<double>(x.begin(), x.end());
}

inline unsigned f32_bits(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float bits_f32(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ---- comparisons ----

// Element i passes when |got - want| <= rtol * scale[i] + atol, scale[i]
// being |want[i]| or, for a value computed by cancellation, the caller's
// magnitude of the terms (what the rounding of f32 inputs scales with).
// NaN must meet NaN and an infinity the same infinity.
inline void expect_close(const std::string& name, const char* what, const std::vector<double>& want,
                         const std::vector<double>& got, double rtol, double atol,
                         const std::vector<double>* scale = nullptr) {
    if (want.size() != got.size()) {
        std::printf("FAIL %s %s: %zu values vs %zu\n", name.c_str(), what, got.size(), want.size());
        ++failures;
        return;
    }
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double w = want[i], g = got[i];
        bool ok;
        if (std::isnan(w) || std::isnan(g)) ok = std::isnan(w) && std::isnan(g);
        else if (std::isinf(w) || std::isinf(g)) ok = w == g;
        else {
            const double err = std::fabs(w - g);
            ok = err <= atol + rtol * (scale ? (*scale)[i] : std::fabs(w));
            worst = std::max(worst, err);
        }
        if (!ok) {
            std::printf("FAIL %s %s[%zu]: kernel %.10g vs reference %.10g\n", name.c_str(), what, i, g, w);
            ++failures;
            return;
        }
    }
    std::printf("ok   %s %s (max |diff| %.3g)\n", name.c_str(), what, worst);
}

// Bit-for-bit equality (copies, casts, selections, integer results).
template <typename T>
void expect_equal(const std::string& name, const char* what, const std::vector<T>& want, const std::vector<T>& got) {
    if (want.size() != got.size()) {
        std::printf("FAIL %s %s: %zu values vs %zu\n", name.c_str(), what, got.size(), want.size());
        ++failures;
        return;
    }
    for (size_t i = 0; i < want.size(); ++i) {
        if (std::memcmp(&want[i], &got[i], sizeof(T)) != 0) {
            unsigned long long wb = 0, gb = 0;
            std::memcpy(&wb, &want[i], sizeof(T));
            std::memcpy(&gb, &got[i], sizeof(T));
            std::printf("FAIL %s %s[%zu]: kernel bits 0x%llx vs reference 0x%llx\n", name.c_str(), what, i, gb, wb);
            ++failures;
            return;
        }
    }
    std::printf("ok   %s %s (%zu values exact)\n", name.c_str(), what, want.size());
}

// Equal values, the sign of a zero included; NaN meets any NaN (payloads
// are not compared: the device's NaN encodings are its own).
inline void expect_same(const std::string& name, const char* what, const std::vector<double>& want,
                        const std::vector<double>& got) {
    if (want.size() != got.size()) {
        std::printf("FAIL %s %s: %zu values vs %zu\n", name.c_str(), what, got.size(), want.size());
        ++failures;
        return;
    }
    for (size_t i = 0; i < want.size(); ++i) {
        const double w = want[i], g = got[i];
        const bool ok = std::isnan(w) ? std::isnan(g) : (w == g && std::signbit(w) == std::signbit(g));
        if (!ok) {
            std::printf("FAIL %s %s[%zu]: kernel %.10g vs reference %.10g\n", name.c_str(), what, i, g, w);
            ++failures;
            return;
        }
    }
    std::printf("ok   %s %s (%zu values exact)\n", name.c_str(), what, want.size());
}

inline void expect_true(const std::string& name, const char* what, bool ok, const std::string& detail = "") {
    if (ok) {
        std::printf("ok   %s %s\n", name.c_str(), what);
    } else {
        std::printf("FAIL %s %s %s\n", name.c_str(), what, detail.c_str());
        ++failures;
    }
}

// Runs the cases with the host's launch shapes, then with the grid capped.
template <typename F>
void with_host_and_capped_grids(F&& cases) {
    grid_cap = 0;
    cases("");
    grid_cap = 3;
    cases(" grid<=3");
    grid_cap = 0;
}

// Prints the verdict; the process's exit status.
inline int finish(const char* what) {
    if (failures) {
        std::printf("FAIL %s: %d mismatches\n", what, failures);
        return 1;
    }
    std::printf("all %s kernels match the reference\n", what);
    return 0;
}
