// rope_check.cpp: runs rope.cu under emu.h as the host launches it (one
// thread per (row, slot, pair), launch::elementwise(outer * t * half)),
// forward (sign +1) and backward (sign -1), against a long double rotation of
// each head vector by its position's angle (rotate_half convention, the
// CPU's cpu::rope), with [groups, t] positions shared by outer / groups
// leading rows. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + rope.cu, rewritten by run.sh
#include "check.h"

using R = long double;

struct Case {
    int outer, t, half, groups, max_pos;
};

static void check(const Case& k, float sign, std::mt19937& rng) {
    const size_t n = (size_t)k.outer * k.t * 2 * k.half;
    // Tables [max_pos, half] as moe-tensor builds them (angles in f64, then f32).
    std::vector<float> cos_t((size_t)k.max_pos * k.half), sin_t(cos_t.size());
    for (int p = 0; p < k.max_pos; ++p)
        for (int i = 0; i < k.half; ++i) {
            const double a = p * std::pow(10000.0, -2.0 * i / (2.0 * k.half));
            cos_t[(size_t)p * k.half + i] = (float)std::cos(a);
            sin_t[(size_t)p * k.half + i] = (float)std::sin(a);
        }
    std::vector<long long> pos((size_t)k.groups * k.t);
    for (auto& p : pos) p = (long long)(rng() % k.max_pos);
    const std::vector<float> x = normals<float>(rng, n);
    std::vector<float> y(n);
    std::vector<double> want(n), mag(n);
    const int per_group = k.outer / k.groups;
    for (int o = 0; o < k.outer; ++o)
        for (int tt = 0; tt < k.t; ++tt) {
            const long long p = pos[(size_t)(o / per_group) * k.t + tt];
            const size_t base = ((size_t)o * k.t + tt) * 2 * k.half;
            for (int i = 0; i < k.half; ++i) {
                const R c = cos_t[(size_t)p * k.half + i], s = sign * (R)sin_t[(size_t)p * k.half + i];
                const R a = x[base + i], b = x[base + i + k.half];
                want[base + i] = (double)(a * c - b * s);
                want[base + i + k.half] = (double)(b * c + a * s);
                // Two products that can cancel: tolerance on their sizes.
                mag[base + i] = mag[base + i + k.half] = (double)(std::fabs(a * c) + std::fabs(b * s) +
                                                                  std::fabs(b * c) + std::fabs(a * s));
            }
        }
    run(launch::elementwise((size_t)k.outer * k.t * k.half), [&] {
        rope_f32(k.outer, k.t, k.half, std::max(per_group, 1), sign, pos.data(), cos_t.data(), sin_t.data(), x.data(),
                 y.data());
    });
    char name[160];
    std::snprintf(name, sizeof name, "rope_f32 %s outer%d t%d half%d groups%d", sign > 0 ? "fwd" : "bwd", k.outer, k.t,
                  k.half, k.groups);
    expect_close(name, "y", want, widen(y), 1e-5, 0, &mag);
}

int main() {
    std::mt19937 rng(29);
    // One vector; shared positions; per-sequence positions (groups = batch,
    // outer = batch * heads); head sizes of one pair, odd pair counts, 64.
    const Case cases[] = {
        {1, 1, 1, 1, 4}, {6, 5, 8, 1, 16}, {6, 5, 3, 2, 9}, {8, 7, 32, 4, 50}, {2, 33, 64, 2, 40}, {3, 1, 5, 3, 2},
    };
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (const Case& c : cases) {
            check(c, 1.0f, rng);
            check(c, -1.0f, rng);
        }
    });
    return finish("rope");
}
