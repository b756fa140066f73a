// optim_check.cpp: runs optim.cu under emu.h as moe-tensor's CUDA backend
// launches it: the AdamW update (launch::elementwise(n)) must give the bits
// of moe-kernels' cpu::optim::adamw_update, whose loop is transcribed below
// in its order of operations, and the sum of squares (sum_sq_chunks over
// launch::per_chunk(n), then sum_partials_f64 in one block) must equal a
// long double sum to f64 rounding and be identical when run again.
// Exit status 1 on any mismatch.
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"  // common.cuh + optim.cu, rewritten by run.sh
#include "check.h"

// cpu::optim::AdamWScalars::for_step, in the same f64 then f32 steps.
struct Scalars {
    float decay, w1, b2, c2, step_size, inv_bc2_sqrt, eps, grad_scale;
};
static Scalars for_step(double lr, double beta1, double beta2, double eps, double wd, unsigned long long t) {
    const double tt = (double)t;
    return Scalars{(float)(1.0 - lr * wd),
                   (float)(1.0 - beta1),
                   (float)beta2,
                   (float)(1.0 - beta2),
                   (float)(lr / (1.0 - std::pow(beta1, tt))),
                   1.0f / (float)std::sqrt(1.0 - std::pow(beta2, tt)),
                   (float)eps,
                   1.0f};
}

// The CPU loop of cpu::optim::adamw_update, element by element.
static void cpu_adamw(std::vector<float>& th, std::vector<float>& m, std::vector<float>& v, const std::vector<float>& g,
                      const Scalars& k) {
    for (size_t i = 0; i < th.size(); ++i) {
        const float gi = g[i] * k.grad_scale;
        th[i] *= k.decay;
        m[i] += k.w1 * (gi - m[i]);
        v[i] = v[i] * k.b2 + k.c2 * gi * gi;
        const float denom = std::sqrt(v[i]) * k.inv_bc2_sqrt + k.eps;
        th[i] += (-k.step_size * m[i]) / denom;
    }
}

static void check_adamw(std::mt19937& rng) {
    // Unclipped, and a clipping coefficient (AdamWScalars::with_grad_scale).
    for (float grad_scale : {1.0f, 0.37f})
    for (size_t n : {1ul, 31ul, 257ul, 5000ul}) {
        std::vector<float> th = normals<float>(rng, n), g = normals<float>(rng, n, 3.0);
        std::vector<float> m(n, 0.0f), v(n, 0.0f);
        std::vector<float> th_c = th, m_c = m, v_c = v;
        for (unsigned long long t = 1; t <= 3; ++t) {
            Scalars k = for_step(1e-3, 0.9, 0.95, 1e-8, 0.1, t);
            k.grad_scale = grad_scale;
            cpu_adamw(th_c, m_c, v_c, g, k);
            run(launch::elementwise(n), [&] {
                adamw_f32((long long)n, k.decay, k.w1, k.b2, k.c2, k.step_size, k.inv_bc2_sqrt, k.eps, k.grad_scale,
                          th.data(), m.data(), v.data(), g.data());
            });
        }
        const std::string name = "adamw_f32 n=" + std::to_string(n) + " grad_scale=" + std::to_string(grad_scale) +
                                 " after 3 steps";
        expect_equal(name, "theta", th_c, th);
        expect_equal(name, "exp_avg", m_c, m);
        expect_equal(name, "exp_avg_sq", v_c, v);
    }
}

// launch::per_chunk / chunks with SUM_SQ_CHUNK = 2^16.
static const long long CHUNK = 1 << 16;

template <typename T>
static double device_sum_sq(const std::vector<T>& x, void (*chunks)(long long, long long, const T*, double*)) {
    const long long n = (long long)x.size();
    const long long c = (n + CHUNK - 1) / CHUNK;
    std::vector<double> partial(c), out(1);
    run(Launch1d{(unsigned)std::min<long long>(c, 65536), 256}, [&] { chunks(n, CHUNK, x.data(), partial.data()); });
    run(launch::single_block(c), [&] { sum_partials_f64(c, partial.data(), out.data()); });
    return out[0];
}

template <typename T>
static void check_sum_sq(std::mt19937& rng, const char* dtype,
                         void (*chunks)(long long, long long, const T*, double*)) {
    for (size_t n : {1ul, 1000ul, (size_t)CHUNK, (size_t)CHUNK + 7, 3 * (size_t)CHUNK + 11}) {
        const std::vector<T> x = normals<T>(rng, n);
        long double want = 0;
        for (T e : x) want += (long double)e * (long double)e;
        const double a = device_sum_sq(x, chunks), b = device_sum_sq(x, chunks);
        const std::string name = std::string("sum_sq_chunks_") + dtype + " n=" + std::to_string(n);
        expect_close(name, "sum", {(double)want}, {a}, 1e-13, 0);
        expect_true(name, "identical when repeated", a == b);
    }
}

int main() {
    std::mt19937 rng(11);
    check_adamw(rng);
    check_sum_sq<float>(rng, "f32", sum_sq_chunks_f32);
    check_sum_sq<double>(rng, "f64", sum_sq_chunks_f64);
    return finish("optim");
}
