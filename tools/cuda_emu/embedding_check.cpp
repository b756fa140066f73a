// embedding_check.cpp: runs embedding.cu under emu.h as the host launches
// it (launch::elementwise(n_ids * dim)): the row gather (exact, with the
// bad-id flag for ids outside [0, vocab), whose rows read 0) and the
// atomicAdd scatter-add backward, against a long double sum (exact with
// integer gradients, whatever the order of the atomics: a lost update shows).
// Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <set>
#include <string>

#include "kernels.inc"  // common.cuh + embedding.cu, rewritten by run.sh
#include "check.h"

struct Case {
    long long n_ids;
    int dim;
    long long vocab;
};

static std::vector<long long> draw_ids(std::mt19937& rng, const Case& k) {
    std::vector<long long> ids(k.n_ids);
    for (auto& id : ids) id = (long long)(rng() % k.vocab);
    return ids;
}

static void check(const Case& k, std::mt19937& rng, bool integer_grads, const std::vector<long long>* fixed = nullptr) {
    const std::vector<long long> ids = fixed ? *fixed : draw_ids(rng, k);
    const size_t n = (size_t)k.n_ids * k.dim;
    const std::vector<float> w = normals<float>(rng, (size_t)k.vocab * k.dim);
    std::vector<float> g = normals<float>(rng, n);
    if (integer_grads)
        for (auto& e : g) e = std::round(e * 4);  // sums of these are exact in any order
    std::vector<float> y(n, NAN), dw((size_t)k.vocab * k.dim, 0.0f);  // dw zeroed by the host
    std::vector<long long> bad(2, 0);
    run(launch::elementwise(n),
        [&] { embedding_fwd_f32(k.n_ids, k.dim, k.vocab, ids.data(), w.data(), y.data(), bad.data()); });
    run(launch::elementwise(n), [&] { embedding_bwd_f32(k.n_ids, k.dim, k.vocab, ids.data(), g.data(), dw.data()); });

    std::vector<float> wy(n);
    std::vector<long double> acc(dw.size(), 0), acc_abs(dw.size(), 0);
    std::set<long long> bad_ids;
    for (long long j = 0; j < k.n_ids; ++j) {
        const long long id = ids[j];
        const bool ok = id >= 0 && id < k.vocab;
        if (!ok) bad_ids.insert(id);
        for (int d = 0; d < k.dim; ++d) {
            wy[(size_t)j * k.dim + d] = ok ? w[(size_t)id * k.dim + d] : 0.0f;
            if (ok) {
                acc[(size_t)id * k.dim + d] += g[(size_t)j * k.dim + d];
                acc_abs[(size_t)id * k.dim + d] += std::fabs(g[(size_t)j * k.dim + d]);
            }
        }
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "embedding n_ids%lld dim%d vocab%lld%s%s", k.n_ids, k.dim, k.vocab,
                  integer_grads ? " integer grads" : "", bad_ids.empty() ? "" : " with bad ids");
    const std::string name = buf;
    expect_equal(name, "y fwd", wy, y);
    if (bad_ids.empty())
        expect_true(name, "bad-id flag clear", bad[0] == 0 && bad[1] == 0);
    else
        expect_true(name, "bad-id flag set with one of them", bad[0] == 1 && bad_ids.count(bad[1]) == 1,
                    "(bad = [" + std::to_string(bad[0]) + ", " + std::to_string(bad[1]) + "])");
    std::vector<double> want(dw.size()), mag(dw.size());
    for (size_t i = 0; i < dw.size(); ++i) want[i] = (double)acc[i], mag[i] = (double)acc_abs[i];
    // Atomic f32 adds in no fixed order: exact for integer gradients, else
    // within 1e-5 of the sum of |g| (f32 rounding per addition).
    expect_close(name, "dw bwd", want, widen(dw), integer_grads ? 0 : 1e-5, 0, &mag);
}

int main() {
    std::mt19937 rng(37);
    const Case cases[] = {{1, 1, 1}, {7, 33, 5}, {40, 300, 1000}, {300, 1, 3}, {5, 64, 1}, {0, 8, 4}};
    with_host_and_capped_grids([&](const std::string& pass) {
        std::printf("-- launches%s\n", pass.empty() ? " as the host plans them" : pass.c_str());
        for (const Case& c : cases) {
            check(c, rng, false);
            check(c, rng, true);
        }
        // Every thread of every block adding into one element (a few times:
        // a lost update needs two threads to interleave).
        const std::vector<long long> same(1024, 2);
        for (int rep = 0; rep < 4; ++rep) check({1024, 1, 4}, rng, true, &same);
        // Ids outside [0, vocab): flagged, rows of zeros, skipped by the backward.
        const std::vector<long long> with_bad = {0, 5, -1, 2, 5, 4};
        check({6, 3, 5}, rng, true, &with_bad);
    });
    return finish("embedding");
}
