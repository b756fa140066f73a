// sinkhorn.cu: Sinkhorn-Knopp balancing of router logits [N, E] in one
// block, so the iterations and their convergence test stay on the device
// (no read-back per iteration, as Megatron-LM's loop has). The arithmetic
// is moe_kernels::cpu::sinkhorn's, step for step, so both devices reach the
// same iteration count and, in f32, the same bits:
//   cost[r, e] = T(exp(f64(x[r, e] - max_e x[r, :])))
//   repeat up to max_iters:
//     d0[r]  = T((1/N) / (sum_e cost[r, e] * d1[e] + eps))     f64, e in order
//     col[e] = sum_r cost[r, e] * d0[r]                        f64, order below
//     d1'[e] = T((1/E) / (col[e] + eps)); err = sum_e |d1' - d1| / E; d1 = d1'
//     stop when err <= tolerance
//   out[r, e] = T(T(cost[r, e] * d1[e]) * d0[r])
// Column sums: G = SINKHORN_THREADS / E groups; thread g*E + e sums rows g,
// g + G, ... of column e in order, then a pairwise tree over the groups.
// f64 arithmetic is spelled with __dadd_rn/__dmul_rn so no multiply-add is
// fused (the CPU rounds each operation).
//
// Launch: one block of SINKHORN_THREADS threads (launch::sinkhorn), E <=
// SINKHORN_THREADS. out doubles as the cost matrix; d0 is an [N] scratch;
// iters[0] receives the iterations run.

#define SINKHORN_THREADS 1024
#define SINKHORN_EPS 1e-8

template <typename T>
__device__ void sinkhorn_block(long long n, int e, double tolerance, long long max_iters, const T* x, T* out, T* d0,
                               long long* iters) {
    // d1 holds T values widened to f64 (exact).
    __shared__ double d1[SINKHORN_THREADS];
    __shared__ double partial[SINKHORN_THREADS];
    __shared__ int done;
    const int t = threadIdx.x;
    const int groups = SINKHORN_THREADS / e;
    const int active = groups * e;
    const double inv_n = 1.0 / (double)n, inv_e = 1.0 / (double)e;
    for (long long r = t; r < n; r += SINKHORN_THREADS) {
        const T* row = x + r * e;
        T m = row[0];
        for (int k = 1; k < e; ++k)
            if (row[k] > m) m = row[k];
        for (int k = 0; k < e; ++k) out[r * e + k] = (T)exp((double)(row[k] - m));
        d0[r] = (T)1.0;  // the scaling when max_iters is 0
    }
    for (int k = t; k < e; k += SINKHORN_THREADS) d1[k] = 1.0;
    int top = 1;
    while (top < groups) top *= 2;
    __syncthreads();
    long long it = 0;
    while (it < max_iters) {
        ++it;
        for (long long r = t; r < n; r += SINKHORN_THREADS) {
            double s = 0.0;
            for (int k = 0; k < e; ++k) s = __dadd_rn(s, __dmul_rn((double)out[r * e + k], d1[k]));
            d0[r] = (T)(inv_n / __dadd_rn(s, SINKHORN_EPS));
        }
        __syncthreads();  // every d0 written (global memory, visible to the block)
        if (t < active) {
            const int g = t / e, k = t - g * e;
            double acc = 0.0;
            for (long long r = g; r < n; r += groups) acc = __dadd_rn(acc, __dmul_rn((double)out[r * e + k], (double)d0[r]));
            partial[t] = acc;
        }
        __syncthreads();
        for (int stride = top / 2; stride > 0; stride /= 2) {
            if (t < active) {
                const int g = t / e, k = t - g * e;
                if (g < stride && g + stride < groups) partial[t] = __dadd_rn(partial[t], partial[(g + stride) * e + k]);
            }
            __syncthreads();
        }
        if (t == 0) {
            double err = 0.0;
            for (int k = 0; k < e; ++k) {
                const double fresh = (double)(T)(inv_e / __dadd_rn(partial[k], SINKHORN_EPS));
                err = __dadd_rn(err, fabs(__dadd_rn(fresh, -d1[k])));
                d1[k] = fresh;
            }
            done = err / e <= tolerance;
        }
        __syncthreads();
        if (done) break;
    }
    for (long long r = t; r < n; r += SINKHORN_THREADS)
        for (int k = 0; k < e; ++k) {
            const T scaled = out[r * e + k] * (T)d1[k];
            out[r * e + k] = scaled * d0[r];
        }
    if (t == 0) iters[0] = it;
}

extern "C" __global__ void __launch_bounds__(SINKHORN_THREADS) sinkhorn_f32(long long n, int e, double tolerance, long long max_iters, const float* x,
                                        float* out, float* d0, long long* iters) {
    sinkhorn_block(n, e, tolerance, max_iters, x, out, d0, iters);
}

extern "C" __global__ void __launch_bounds__(SINKHORN_THREADS) sinkhorn_f64(long long n, int e, double tolerance, long long max_iters, const double* x,
                                        double* out, double* d0, long long* iters) {
    sinkhorn_block(n, e, tolerance, max_iters, x, out, d0, iters);
}
