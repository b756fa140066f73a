// topk.cu: the k largest entries of each row of a contiguous [rows, n] f32
// buffer, and the backward that scatters their gradient back.
//
// Ranking: ranks_before (common.cuh), a strict total order on (value,
// index), so the j-th pick is the best element ranked after pick j-1: k
// passes over the row, no scratch memory. One thread per row (k * n
// compares; meant for router scores, n = experts): launch::elementwise(rows).

// vals, idx: [rows, k], best first.
extern "C" __global__ void topk_rows_f32(long long rows, int n, int k, const float* x, float* vals,
                                         long long* idx) {
    GRID_STRIDE_LOOP(r, rows) {
        const float* xr = x + r * n;
        long long prev = -1;
        float prev_v = 0.0f;
        for (int j = 0; j < k; ++j) {
            long long best = -1;
            float best_v = 0.0f;
            for (int i = 0; i < n; ++i) {
                float v = xr[i];
                bool after_prev = prev < 0 || ranks_before(prev_v, prev, v, i);
                if (after_prev && (best < 0 || ranks_before(v, i, best_v, best))) {
                    best = i;
                    best_v = v;
                }
            }
            vals[r * k + j] = best_v;
            idx[r * k + j] = best;
            prev = best;
            prev_v = best_v;
        }
    }
}

// dx[r, idx[r, j]] = g[r, j] into a zeroed dx [rows, n]; a row's indices are
// distinct (topk picks each element once), so no two threads write one
// element. One thread per (r, j): launch::elementwise(rows * k).
extern "C" __global__ void topk_bwd_f32(long long rows, int n, int k, const float* g, const long long* idx,
                                        float* dx) {
    long long total = rows * k;
    GRID_STRIDE_LOOP(i, total) {
        long long r = i / k;
        long long c = idx[i];
        if (c >= 0 && c < n) dx[r * n + c] = g[i];
    }
}
