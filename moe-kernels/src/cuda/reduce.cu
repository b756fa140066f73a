// reduce.cu: reductions over the last dim of a contiguous [rows, cols]
// buffer (the host first moves the reduced dims last and makes the view
// contiguous). One block per row: launch::rows(rows, cols).

// y[r] = sum_c x[r, c]; fixed order for a given blockDim (deterministic).
extern "C" __global__ void sum_rows_f32(int rows, int cols, const float* x, float* y) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float acc = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) acc += xr[c];
        acc = block_reduce_sum(acc);
        if (threadIdx.x == 0) y[r] = acc;
    }
}

// y[r] = max_c x[r, c] (-inf for cols = 0; NaN propagates through fmaxf only
// when every element is NaN, unlike the CPU: see moe-kernels README).
extern "C" __global__ void max_rows_f32(int rows, int cols, const float* x, float* y) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float acc = NEG_INF_F;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) acc = fmaxf(acc, xr[c]);
        acc = block_reduce_max(acc);
        if (threadIdx.x == 0) y[r] = acc;
    }
}
