// route_plan_check.cpp: runs route_plan.cu under emu.h as moe-tensor's CUDA
// backend launches it (route_plan_rank with one block of 256 threads per
// expert, then route_plan_place over launch::elementwise(max(C, E + 1)))
// against a naive stable sort of the copies by expert, written here from
// the contract in route_plan.cu's header (an expert keeps its first
// `capacity` copies among those whose keep flag is set, as moe-router's
// position policy), and the score policy (dropless plan, route_keep_by_score,
// plan with its flags) against a stable sort by score written here with its
// own total order. Every output is compared exactly, dropless, with
// capacity, with keep flags, by score (f32 and f64: ties, signed zeros,
// NaNs), for out-of-range ids, copies of more than one 256-thread chunk,
// experts with no copies, and no copies.
// Exit status 1 on any mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + route_plan.cu, rewritten by run.sh
#include "check.h"

struct Plan {
    std::vector<long long> selected, counts, bad, offsets, row_of_copy, copy_of_row, token_of_row;
    std::vector<unsigned char> dropped;
};

// The reference: copies in order, each kept one appended to its expert's
// list (keep empty: every copy is eligible).
Plan reference(const std::vector<long long>& ids, long long capacity, const std::vector<unsigned char>& keep, int k,
               int e) {
    std::vector<long long> eligible(e, 0);
    Plan p;
    p.selected.assign(e, 0);
    p.counts.assign(e, 0);
    p.bad = {0};
    std::vector<std::vector<long long>> lists(e);
    for (size_t c = 0; c < ids.size(); ++c) {
        const long long id = ids[c];
        if (id < 0 || id >= e) {
            ++p.bad[0];
            continue;
        }
        ++p.selected[id];
        if (!keep.empty() && !keep[c]) continue;
        if (capacity < 0 || eligible[id] < capacity) lists[id].push_back((long long)c);
        ++eligible[id];
    }
    p.row_of_copy.assign(ids.size(), -1);
    p.offsets.push_back(0);
    for (int x = 0; x < e; ++x) {
        p.counts[x] = (long long)lists[x].size();
        for (long long c : lists[x]) {
            p.row_of_copy[c] = (long long)p.token_of_row.size();
            p.copy_of_row.push_back(c);
            p.token_of_row.push_back(c / k);
        }
        p.offsets.push_back((long long)p.token_of_row.size());
    }
    for (long long r : p.row_of_copy) p.dropped.push_back(r < 0 ? 1 : 0);
    // Rows past the segments: copy -1, token 0.
    p.copy_of_row.resize(ids.size(), -1);
    p.token_of_row.resize(ids.size(), 0);
    return p;
}

Plan on_device(const std::vector<long long>& ids, long long capacity, const std::vector<unsigned char>& keep, int k,
               int e) {
    const long long copies = (long long)ids.size();
    const long long sentinel = -7;  // every output the contract names must be written
    Plan p;
    p.selected.assign(e, sentinel);
    p.counts.assign(e, sentinel);
    p.bad = {sentinel};
    p.offsets.assign(e + 1, sentinel);
    p.row_of_copy.assign(copies, sentinel);
    std::vector<long long> rank(copies, sentinel);
    p.copy_of_row.assign(copies, sentinel);
    p.token_of_row.assign(copies, sentinel);
    p.dropped.assign(copies, 7);
    // route_plan_rank needs its full grid (one block per expert): no cap.
    emu_launch(EmuDim{(unsigned)e, 1, 1}, EmuDim{256, 1, 1}, 0, [&] {
        route_plan_rank(copies, e, capacity, ids.data(), keep.empty() ? nullptr : keep.data(), p.selected.data(),
                        p.counts.data(), p.bad.data(), rank.data());
    });
    run(launch::elementwise(std::max<size_t>(copies, e + 1)), [&] {
        route_plan_place(copies, k, e, ids.data(), p.counts.data(), rank.data(), p.offsets.data(),
                         p.row_of_copy.data(), p.copy_of_row.data(), p.token_of_row.data(), p.dropped.data());
    });
    return p;
}

// Float order for the score policy, written independently of the kernel's
// integer key: -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN.
bool total_less(double a, double b) {
    auto cls = [](double x) { return std::isnan(x) ? (std::signbit(x) ? -1 : 1) : 0; };
    if (cls(a) != cls(b)) return cls(a) < cls(b);
    if (cls(a) != 0) return false;  // NaNs of one sign: equal here (no payloads in the cases)
    if (a == b) return std::signbit(a) && !std::signbit(b);
    return a < b;
}

// Keep flags of the score policy: per expert, a stable sort of its copies by
// score, descending, keeping the first `capacity`.
std::vector<unsigned char> score_keep_reference(const std::vector<long long>& ids, const std::vector<double>& scores,
                                                long long capacity, int e) {
    std::vector<unsigned char> keep(ids.size(), 0);
    std::vector<std::vector<long long>> lists(e);
    for (size_t c = 0; c < ids.size(); ++c)
        if (ids[c] >= 0 && ids[c] < e) lists[ids[c]].push_back((long long)c);
    for (auto& list : lists) {
        std::stable_sort(list.begin(), list.end(),
                         [&](long long a, long long b) { return total_less(scores[b], scores[a]); });
        for (size_t i = 0; i < list.size() && (long long)i < capacity; ++i) keep[list[i]] = 1;
    }
    return keep;
}

// The score policy as moe-tensor's CUDA backend runs it: a dropless plan,
// route_keep_by_score over its segments, then the plan with those flags.
template <typename T>
Plan by_score_on_device(const std::vector<long long>& ids, const std::vector<double>& scores, long long capacity,
                        int k, int e) {
    const Plan dropless = on_device(ids, -1, {}, k, e);
    std::vector<T> typed(scores.begin(), scores.end());
    std::vector<unsigned char> keep(ids.size(), 7);
    run(launch::elementwise(std::max<size_t>(ids.size(), 1)), [&] {
        if constexpr (sizeof(T) == 4)
            route_keep_by_score_f32((long long)ids.size(), e, capacity, ids.data(), typed.data(),
                                    dropless.offsets.data(), dropless.copy_of_row.data(), keep.data());
        else
            route_keep_by_score_f64((long long)ids.size(), e, capacity, ids.data(), typed.data(),
                                    dropless.offsets.data(), dropless.copy_of_row.data(), keep.data());
    });
    return on_device(ids, -1, keep, k, e);
}

void compare(const std::string& what, const std::vector<long long>& got, const std::vector<long long>& want) {
    size_t bad = got.size() == want.size() ? 0 : 1;
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) bad += got[i] != want[i];
    if (bad) {
        std::printf("FAIL %s: %zu of %zu differ\n", what.c_str(), bad, want.size());
        ++failures;
    }
}

void compare_plans(const std::string& tag, const Plan& got, const Plan& want) {
    compare(tag + " selected", got.selected, want.selected);
    compare(tag + " counts", got.counts, want.counts);
    compare(tag + " bad", got.bad, want.bad);
    compare(tag + " offsets", got.offsets, want.offsets);
    compare(tag + " row_of_copy", got.row_of_copy, want.row_of_copy);
    compare(tag + " copy_of_row", got.copy_of_row, want.copy_of_row);
    compare(tag + " token_of_row", got.token_of_row, want.token_of_row);
    compare(tag + " dropped", std::vector<long long>(got.dropped.begin(), got.dropped.end()),
            std::vector<long long>(want.dropped.begin(), want.dropped.end()));
}

int main() {
    std::mt19937 rng(7);
    struct Case {
        int n, k, e;
        long long capacity;  // -1 dropless
        int invalid_per_mille;
    };
    // Capacities below, at and above an expert's load; one past a 256-copy chunk.
    const Case cases[] = {
        {6, 2, 3, -1, 0},    {6, 2, 3, 2, 0},      {300, 2, 8, -1, 0},  {300, 2, 8, 75, 0},  {129, 3, 32, -1, 0},
        {200, 1, 8, 30, 20}, {700, 2, 64, -1, 10}, {5, 1, 40, -1, 0},   {0, 2, 4, -1, 0},    {0, 2, 4, 3, 0},
        {1, 1, 1, -1, 0},    {256, 1, 2, 0, 0},    {1000, 4, 5, 300, 0}, {1000, 4, 5, 5000, 0},
    };
    for (int pass = 0; pass < 2; ++pass) {
        grid_cap = pass ? 1 : 0;  // the second pass runs the grid-stride loop
        for (const Case& cs : cases) {
            const size_t copies = (size_t)cs.n * cs.k;
            std::vector<long long> ids(copies);
            // Skewed choices, so some experts get nothing and some many.
            std::geometric_distribution<int> skew(0.3);
            for (auto& id : ids) {
                id = std::min(skew(rng), cs.e - 1);
                if ((int)(rng() % 1000) < cs.invalid_per_mille) id = rng() % 2 ? -1 : cs.e + (long long)(rng() % 3);
            }
            const std::string tag = "n " + std::to_string(cs.n) + " k " + std::to_string(cs.k) + " e " +
                                    std::to_string(cs.e) + " capacity " + std::to_string(cs.capacity) +
                                    " grid cap " + std::to_string(grid_cap);
            compare_plans(tag, on_device(ids, cs.capacity, {}, cs.k, cs.e),
                          reference(ids, cs.capacity, {}, cs.k, cs.e));
            // Flags of a policy decided elsewhere, alone and under the capacity.
            std::vector<unsigned char> flags(copies);
            for (auto& f : flags) f = rng() % 3 != 0;
            compare_plans(tag + " keep flags", on_device(ids, cs.capacity, flags, cs.k, cs.e),
                          reference(ids, cs.capacity, flags, cs.k, cs.e));
            if (cs.capacity >= 0) {
                // Scores with ties, signed zeros and NaNs of both signs.
                const double pool[] = {0.5, 0.25, -0.0, 0.0, -1.5, 0.75, 2.0, NAN, -NAN, 0.125, -3.0, 1.0};
                std::vector<double> scores(copies);
                for (auto& x : scores) x = rng() % 4 ? (double)(rng() % 1000) / 997.0 : pool[rng() % 12];
                const Plan want = reference(ids, -1, score_keep_reference(ids, scores, cs.capacity, cs.e), cs.k, cs.e);
                compare_plans(tag + " by score f64", by_score_on_device<double>(ids, scores, cs.capacity, cs.k, cs.e),
                              want);
                // f32 scores: the same values rounded, ranked in f32.
                std::vector<double> rounded(scores.size());
                for (size_t c = 0; c < scores.size(); ++c) rounded[c] = (double)(float)scores[c];
                compare_plans(tag + " by score f32", by_score_on_device<float>(ids, rounded, cs.capacity, cs.k, cs.e),
                              reference(ids, -1, score_keep_reference(ids, rounded, cs.capacity, cs.e), cs.k, cs.e));
            }
            if (!failures) std::printf("ok   %s\n", tag.c_str());
        }
    }
    return failures ? 1 : 0;
}
