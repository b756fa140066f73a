// cross_entropy_check.cpp: runs cross_entropy.cu's three kernels under
// emu.h in the host's order (per-row forward with launch::rows, the loss
// reduction as one block, the backward elementwise) and compares with long
// double references of the CPU's semantics (cpu::cross_entropy): per-row
// loss (max - x_target) + ln(sum exp(x - max), exact when the target is the
// max, as torch; ignore_index rows add nothing; mean over the valid rows,
// NaN when there are none; a target neither valid nor ignored is reported
// through the bad-index flag. Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <set>
#include <string>

#include "kernels.inc"  // common.cuh + cross_entropy.cu, rewritten by run.sh
#include "check.h"

using R = long double;

struct Case {
    std::string what;
    int rows, v;
    long long ignore;
    bool mean;
    std::vector<float> logits;
    std::vector<long long> targets;
};

static std::vector<Case> cases(std::mt19937& rng) {
    std::vector<Case> out;
    auto add = [&](std::string what, int rows, int v, long long ignore, bool mean, std::vector<long long> targets,
                   double sd = 3.0, double offset = 0.0) {
        if (targets.empty())
            for (int r = 0; r < rows; ++r) targets.push_back((long long)(rng() % std::max(v, 1)));
        out.push_back({what, rows, v, ignore, mean, normals<float>(rng, (size_t)rows * v, sd, offset), targets});
    };
    add("mean, one ignored", 5, 7, -100, true, {0, 6, -100, 3, 3});
    add("sum", 4, 33, -100, false, {});
    add("ignore_index 2 (a class id)", 3, 513, 2, true, {2, 512, 0});
    add("mean", 2, 1000, -100, true, {});
    add("one class", 6, 1, -100, true, {0, -100, 0, 0, -100, 0});
    add("mean, all ignored (NaN loss, zero gradient)", 3, 10, -100, true, {-100, -100, -100});
    add("sum, all ignored", 3, 10, -100, false, {-100, -100, -100});
    add("mean, no rows", 0, 10, -100, true, {});
    add("sum, no rows", 0, 10, -100, false, {});
    add("no classes, all ignored", 2, 0, -100, false, {-100, -100});
    add("rows past the grid", 9, 40, -100, true, {});
    // Logits near 1000 with the target the max of its row: the loss is a
    // tiny ln(s) that an f32 lse - x_target (ulp(1000) = 6e-5) cannot show.
    Case big{"targets the max, logits near 1000", 3, 9, -100, true, normals<float>(rng, 27, 0.1, 990.0), {0, 4, 8}};
    big.logits[0] = 1000.0f, big.logits[9 + 4] = 1000.0f, big.logits[18 + 8] = 1001.5f;
    out.push_back(big);
    return out;
}

static void check(const Case& k) {
    const int rows = k.rows, v = k.v;
    const size_t n = (size_t)rows * v;
    const float dloss = 0.75f;
    std::vector<float> lse(rows), loss_row(rows), stats(2, -1.0f), dlogits(n, NAN);
    std::vector<long long> bad(2, 0);  // zeroed by the host
    run(launch::rows(rows, v), [&] {
        ce_fwd_rows_f32(rows, v, k.ignore, k.logits.data(), k.targets.data(), lse.data(), loss_row.data(), bad.data());
    });
    run(launch::single_block(rows), [&] {
        ce_reduce_f32(rows, k.ignore, k.mean ? 1 : 0, loss_row.data(), k.targets.data(), stats.data());
    });
    run(launch::elementwise(n), [&] {
        ce_bwd_f32(rows, v, k.ignore, k.mean ? 1 : 0, k.logits.data(), k.targets.data(), lse.data(), stats.data(),
                   &dloss, dlogits.data());
    });

    std::vector<double> wl(rows), ml(rows), wrow(rows), wd(n), md(n);
    R total = 0;
    int valid = 0;
    for (int r = 0; r < rows; ++r) {
        const float* x = k.logits.data() + (size_t)r * v;
        R m = -INFINITY, s = 0;
        for (int c = 0; c < v; ++c) m = std::max(m, (R)x[c]);
        for (int c = 0; c < v; ++c) s += std::exp(x[c] - m);
        wl[r] = (double)(m + std::log(s));
        ml[r] = (double)(std::fabs(m) + std::log(s));
        const long long t = k.targets[r];
        wrow[r] = 0;
        if (t != k.ignore) {
            wrow[r] = (double)((m - x[t]) + std::log(s));
            total += wrow[r];
            ++valid;
        }
    }
    const double want_loss = k.mean ? (double)(total / valid) : (double)total;  // 0/0 = NaN when none is valid
    // Backward: (exp(x - lse) - onehot) * scale from the saved f32 lse, as the CPU does.
    const R scale = k.mean ? (valid ? (R)dloss / valid : 0) : (R)dloss;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < v; ++c) {
            const size_t i = (size_t)r * v + c;
            if (k.targets[r] == k.ignore) continue;
            const R p = std::exp((R)k.logits[i] - lse[r]), hot = c == k.targets[r] ? 1 : 0;
            wd[i] = (double)((p - hot) * scale);
            md[i] = (double)((p + hot) * std::fabs(scale));
        }

    char buf[200];
    std::snprintf(buf, sizeof buf, "cross_entropy %dx%d %s", rows, v, k.what.c_str());
    const std::string name = buf;
    expect_true(name, "bad-index flag clear", bad[0] == 0 && bad[1] == 0);
    expect_close(name, "lse", wl, widen(lse), 1e-5, 0, &ml);
    // The loss of a row: relative 1e-5, and 1e-6 absolute for ln of the f32
    // sum (its relative rounding ~log2(v) * 6e-8 becomes absolute through ln).
    expect_close(name, "loss per row", wrow, widen(loss_row), 1e-5, 1e-6);
    expect_close(name, "loss", {want_loss}, {(double)stats[0]}, 1e-5, 1e-6);
    expect_same(name, "valid rows", {(double)valid}, {(double)stats[1]});
    expect_close(name, "dlogits", wd, widen(dlogits), 1e-5, 0, &md);
}

// Targets outside [0, v) that are not ignore_index: the flag and one of them.
static void check_bad_targets() {
    const int rows = 6, v = 10;
    std::mt19937 rng(1);
    const std::vector<float> logits = normals<float>(rng, rows * v);
    const std::vector<long long> targets = {3, 10, -100, -1, 9, 0};
    const std::set<long long> bad_ones = {10, -1};
    std::vector<float> lse(rows), loss_row(rows);
    std::vector<long long> bad(2, 0);
    run(launch::rows(rows, v), [&] {
        ce_fwd_rows_f32(rows, v, -100, logits.data(), targets.data(), lse.data(), loss_row.data(), bad.data());
    });
    expect_true("cross_entropy bad targets 10 and -1", "flag set with one of them",
                bad[0] == 1 && bad_ones.count(bad[1]) == 1,
                "(bad = [" + std::to_string(bad[0]) + ", " + std::to_string(bad[1]) + "])");
    expect_true("cross_entropy bad targets 10 and -1", "their rows' losses are 0", loss_row[1] == 0 && loss_row[3] == 0);
}

int main() {
    std::mt19937 rng(31);
    const std::vector<Case> all = cases(rng);
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (const Case& k : all) check(k);
        check_bad_targets();
    });
    return finish("cross_entropy");
}
