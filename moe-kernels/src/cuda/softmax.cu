// softmax.cu: softmax and log-softmax over the last dim of contiguous
// [rows, cols] f32, forward and backward. One block per row: launch::rows.

// y = softmax(x) (log_ = 0) or log_softmax(x) (log_ = 1), per row:
// m = max x, s = sum exp(x - m); y = exp(x - m) / s or x - m - log s.
extern "C" __global__ void softmax_fwd_f32(int rows, int cols, int log_, const float* x, float* y) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float* yr = y + (long long)r * cols;
        float m = NEG_INF_F;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
        m = block_reduce_max(m);
        float s = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(xr[c] - m);
        s = block_reduce_sum(s);
        if (log_) {
            // (x - m) - log s, in this order: exact for the max entry (as the
            // CPU and torch); x - (m + log s) loses small log-probabilities of
            // large logits.
            float ls = logf(s);
            for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (xr[c] - m) - ls;
        } else {
            float inv = 1.0f / s;
            for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = expf(xr[c] - m) * inv;
        }
    }
}

// Backward from the saved output y and the incoming gradient dy:
// softmax:     dx = y * (dy - sum_c dy*y)
// log_softmax: dx = dy - exp(y) * sum_c dy
extern "C" __global__ void softmax_bwd_f32(int rows, int cols, int log_, const float* y, const float* dy,
                                           float* dx) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        long long base = (long long)r * cols;
        float acc = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x)
            acc += log_ ? dy[base + c] : dy[base + c] * y[base + c];
        acc = block_reduce_sum(acc);
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            long long i = base + c;
            dx[i] = log_ ? dy[i] - expf(y[i]) * acc : y[i] * (dy[i] - acc);
        }
    }
}
