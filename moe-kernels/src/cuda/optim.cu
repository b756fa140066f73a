// optim.cu: the optimiser step on the device — AdamW's in-place update of a
// parameter and its moments, and the sum of squares of the gradients behind
// global-norm clipping.

// One AdamW update per element of contiguous f32 buffers (launch::elementwise(n)).
// The arithmetic is moe-kernels' cpu::optim::adamw_update in the same order,
// every operation rounded on its own (__f*_rn: no fused multiply-add, IEEE
// square root and division), so each element gets the CPU's bits:
//   g *= grad_scale; theta *= decay; m += w1 * (g - m); v = v * b2 + (c2 * g) * g;
//   theta += (-step_size * m) / (sqrt(v) * inv_bc2_sqrt + eps).
extern "C" __global__ void adamw_f32(long long n, float decay, float w1, float b2, float c2,
                                     float step_size, float inv_bc2_sqrt, float eps, float grad_scale,
                                     float* theta, float* m, float* v, const float* g) {
    GRID_STRIDE_LOOP(i, n) {
        float gi = __fmul_rn(g[i], grad_scale);
        float th = __fmul_rn(theta[i], decay);
        float mi = __fadd_rn(m[i], __fmul_rn(w1, __fsub_rn(gi, m[i])));
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(c2, gi), gi));
        float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), inv_bc2_sqrt), eps);
        theta[i] = __fadd_rn(th, __fdiv_rn(__fmul_rn(-step_size, mi), denom));
        m[i] = mi;
        v[i] = vi;
    }
}

// partial[c] = sum of x[i]^2 in f64 over chunk c, the elements
// [c * chunk, min(n, (c + 1) * chunk)), one block per chunk
// (launch::per_chunk). Each chunk's order of additions is fixed by the
// block size, so the partials do not depend on the grid.
template <typename T>
__device__ void sum_sq_chunks(long long n, long long chunk, const T* x, double* partial) {
    long long chunks = (n + chunk - 1) / chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        long long end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        double acc = 0.0;
        for (long long i = c * chunk + threadIdx.x; i < end; i += blockDim.x) {
            double e = (double)x[i];
            acc += e * e;
        }
        acc = block_reduce_sum(acc);
        if (threadIdx.x == 0) partial[c] = acc;
    }
}

extern "C" __global__ void sum_sq_chunks_f32(long long n, long long chunk, const float* x, double* partial) {
    sum_sq_chunks(n, chunk, x, partial);
}

extern "C" __global__ void sum_sq_chunks_f64(long long n, long long chunk, const double* x, double* partial) {
    sum_sq_chunks(n, chunk, x, partial);
}

// out[0] = sum of partial[0..n) in a fixed order, one block
// (launch::single_block(n)).
extern "C" __global__ void sum_partials_f64(long long n, const double* partial, double* out) {
    double acc = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) out[0] = acc;
}
