// cross_entropy.cu: fused softmax cross-entropy over logits [rows, v] (f32,
// contiguous) with i64 targets [rows], torch's ignore_index and mean/sum
// reductions. Forward saves the per-row logsumexp; backward rebuilds the
// softmax from it, so no [rows, v] probability buffer is kept.

// One block per row (launch::rows(rows, v)):
// lse[r] = logsumexp(logits[r]); loss_row[r] = (max - logits[r, target]) + log s
// for a valid target, 0 for an ignored one. A target that is neither in
// [0, v) nor ignore_index sets bad[0] = 1 and bad[1] = that target (one of
// them if several; checked by the host) and gives 0.
extern "C" __global__ void ce_fwd_rows_f32(int rows, int v, long long ignore, const float* logits,
                                           const long long* targets, float* lse, float* loss_row, long long* bad) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = logits + (long long)r * v;
        float m = NEG_INF_F;
        for (int c = threadIdx.x; c < v; c += blockDim.x) m = fmaxf(m, xr[c]);
        m = block_reduce_max(m);
        float s = 0.0f;
        for (int c = threadIdx.x; c < v; c += blockDim.x) s += expf(xr[c] - m);
        s = block_reduce_sum(s);
        if (threadIdx.x == 0) {
            float ls = logf(s), l = m + ls;
            lse[r] = l;
            long long tg = targets[r];
            float loss = 0.0f;
            if (tg == ignore) {
                loss = 0.0f;
            } else if (tg < 0 || tg >= v) {
                bad[0] = 1;
                bad[1] = tg;
            } else {
                // (m - x_t) + log s, not lse - x_t: exact when x_t is the
                // max (as the CPU and torch), even for large logits.
                loss = (m - xr[tg]) + ls;
            }
            loss_row[r] = loss;
        }
    }
}

// A single block (grid 1, launch::single_block()): out[0] = the reduced
// loss (mean: sum / n_valid, NaN when n_valid = 0, as torch; sum: the sum),
// out[1] = n_valid as a float (read by the backward).
extern "C" __global__ void ce_reduce_f32(int rows, long long ignore, int mean, const float* loss_row,
                                         const long long* targets, float* out) {
    float acc = 0.0f, cnt = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        acc += loss_row[r];
        cnt += (targets[r] != ignore) ? 1.0f : 0.0f;
    }
    acc = block_reduce_sum(acc);
    cnt = block_reduce_sum(cnt);
    if (threadIdx.x == 0) {
        out[0] = mean ? acc / cnt : acc;
        out[1] = cnt;
    }
}

// dlogits[r, c] = (exp(logits[r, c] - lse[r]) - [c == target]) * scale,
// scale = dloss[0] / (mean ? n_valid : 1); an ignored row gets 0 (and so do
// all rows for mean with n_valid = 0). Elementwise over rows*v
// (launch::elementwise(rows * v)); stats[1] is n_valid from ce_reduce_f32.
extern "C" __global__ void ce_bwd_f32(long long rows, int v, long long ignore, int mean, const float* logits,
                                      const long long* targets, const float* lse, const float* stats,
                                      const float* dloss, float* dlogits) {
    long long n = rows * v;
    GRID_STRIDE_LOOP(i, n) {
        long long r = i / v, c = i % v;
        long long tg = targets[r];
        float cnt = stats[1];
        float out = 0.0f;
        if (tg != ignore && !(mean && cnt == 0.0f)) {
            float scale = mean ? dloss[0] / cnt : dloss[0];
            float p = expf(logits[i] - lse[r]);
            out = (p - (c == tg ? 1.0f : 0.0f)) * scale;
        }
        dlogits[i] = out;
    }
}
