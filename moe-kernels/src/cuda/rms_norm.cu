// rms_norm.cu: RMSNorm over the last dim, f32, the Llama/HF order of
// operations y = (x * rstd) * w, rstd = 1 / sqrt(mean(x^2) + eps).
// x, y, dy, dx: contiguous [rows, cols]; w, dw: [cols]; rstd: [rows].

// One block per row: launch::rows(rows, cols).
extern "C" __global__ void rms_norm_fwd_f32(int rows, int cols, float eps, const float* x, const float* w,
                                            float* y, float* rstd) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float* yr = y + (long long)r * cols;
        float ss = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
        ss = block_reduce_sum(ss);
        float rs = rsqrtf(ss / (float)cols + eps);
        if (threadIdx.x == 0) rstd[r] = rs;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (xr[c] * rs) * w[c];
    }
}

// dx = rstd * (w*dy) - x * rstd^3 / D * sum_c (w*dy*x). One block per row.
extern "C" __global__ void rms_norm_bwd_dx_f32(int rows, int cols, const float* dy, const float* x,
                                               const float* w, const float* rstd, float* dx) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        long long base = (long long)r * cols;
        float dot = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += w[c] * dy[base + c] * x[base + c];
        dot = block_reduce_sum(dot);
        float rs = rstd[r];
        float k = rs * rs * rs * dot / (float)cols;
        for (int c = threadIdx.x; c < cols; c += blockDim.x)
            dx[base + c] = rs * w[c] * dy[base + c] - x[base + c] * k;
    }
}

// dw[c] = sum_r dy[r, c] * x[r, c] * rstd[r]. One thread per column, rows in
// order (deterministic); adjacent threads read adjacent columns, so each row
// step is a coalesced read. Launch::elementwise(cols).
extern "C" __global__ void rms_norm_bwd_dw_f32(int rows, int cols, const float* dy, const float* x,
                                               const float* rstd, float* dw) {
    GRID_STRIDE_LOOP(c, (long long)cols) {
        float acc = 0.0f;
        for (int r = 0; r < rows; ++r) {
            long long i = (long long)r * cols + c;
            acc += dy[i] * x[i] * rstd[r];
        }
        dw[c] = acc;
    }
}
