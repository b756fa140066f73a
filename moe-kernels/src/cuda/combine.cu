// combine.cu: the weighted combine of MoE expert output rows into tokens
// (Tensor::expert_combine), forward and backward, f32 and f64.
//
// y [m, d] and dy: expert output rows; rows and w [n, k] row-major: the row
// each token copy reads (negative: the copy was dropped and adds nothing)
// and its weight; out and g [n, d]. The host checked every row id.

// out[t, c] = sum_j w[t, j] * y[rows[t, j], c], j ascending from zero (the
// CPU's order). One thread per element of out: launch::elementwise(n * d).
template <typename T>
__device__ void combine_fwd(long long total, long long d, long long k, const long long* rows, const T* w,
                            const T* y, T* out) {
    GRID_STRIDE_LOOP(e, total) {
        long long t = e / d, c = e - t * d;
        T acc = T(0);
        for (long long j = t * k; j < (t + 1) * k; ++j) {
            long long r = rows[j];
            if (r >= 0) acc += w[j] * y[r * d + c];
        }
        out[e] = acc;
    }
}

// dy[r, c] = sum over the copies j that read row r, in copy order, of
// w[j] * g[j / k, c] (zero for a row no copy reads). The host groups the
// copies by row: those of r are order[starts[r] .. starts[r + 1]]. One
// thread per element of dy: launch::elementwise(m * d).
template <typename T>
__device__ void combine_bwd_rows(long long total, long long d, long long k, const long long* starts,
                                 const long long* order, const T* w, const T* g, T* dy) {
    GRID_STRIDE_LOOP(e, total) {
        long long r = e / d, c = e - r * d;
        T acc = T(0);
        for (long long p = starts[r]; p < starts[r + 1]; ++p) {
            long long j = order[p];
            acc += w[j] * g[(j / k) * d + c];
        }
        dy[e] = acc;
    }
}

// dy of a dispatch plan's combine, where each row holds at most one copy:
// dy[r] = w[c] · g[c / k] for c = copy_of_row[r], zero where c < 0 (a row
// no copy fills). No host grouping. launch::elementwise(m * d).
template <typename T>
__device__ void combine_bwd_rows_planned(long long total, long long d, long long k, const long long* copy_of_row,
                                         const T* w, const T* g, T* dy) {
    GRID_STRIDE_LOOP(e, total) {
        long long r = e / d, c = e - r * d, j = copy_of_row[r];
        dy[e] = j >= 0 ? w[j] * g[(j / k) * d + c] : T(0);
    }
}

// dw[j] = <g[j / k], y[rows[j]]> (zero for a dropped copy). One warp per
// copy, its lanes striding over d, then a warp sum (the order depends only
// on d: deterministic). launch::warps(n * k).
template <typename T>
__device__ void combine_bwd_weights(long long copies, long long d, long long k, const long long* rows, const T* g,
                                    const T* y, T* dw) {
    long long lane = threadIdx.x & 31;
    long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    long long nwarps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long j = warp; j < copies; j += nwarps) {
        long long r = rows[j];
        T acc = T(0);
        if (r >= 0) {
            const T* gt = g + (j / k) * d;
            const T* yr = y + r * d;
            for (long long c = lane; c < d; c += 32) acc += gt[c] * yr[c];
        }
        acc = warp_sum(acc);
        if (lane == 0) dw[j] = acc;
    }
}

#define COMBINE_FWD(NAME, T)                                                                       \
    extern "C" __global__ void NAME(long long total, long long d, long long k, const long long* rows, \
                                    const T* w, const T* y, T* out) {                              \
        combine_fwd<T>(total, d, k, rows, w, y, out);                                              \
    }
COMBINE_FWD(combine_fwd_f32, float)
COMBINE_FWD(combine_fwd_f64, double)

#define COMBINE_BWD_ROWS(NAME, T)                                                                  \
    extern "C" __global__ void NAME(long long total, long long d, long long k, const long long* starts, \
                                    const long long* order, const T* w, const T* g, T* dy) {       \
        combine_bwd_rows<T>(total, d, k, starts, order, w, g, dy);                                 \
    }
COMBINE_BWD_ROWS(combine_bwd_rows_f32, float)
COMBINE_BWD_ROWS(combine_bwd_rows_f64, double)

#define COMBINE_BWD_ROWS_PLANNED(NAME, T)                                                                \
    extern "C" __global__ void NAME(long long total, long long d, long long k, const long long* copy_of_row, \
                                    const T* w, const T* g, T* dy) {                                       \
        combine_bwd_rows_planned<T>(total, d, k, copy_of_row, w, g, dy);                                   \
    }
COMBINE_BWD_ROWS_PLANNED(combine_bwd_rows_planned_f32, float)
COMBINE_BWD_ROWS_PLANNED(combine_bwd_rows_planned_f64, double)

#define COMBINE_BWD_WEIGHTS(NAME, T)                                                               \
    extern "C" __global__ void NAME(long long copies, long long d, long long k, const long long* rows, \
                                    const T* g, const T* y, T* dw) {                               \
        combine_bwd_weights<T>(copies, d, k, rows, g, y, dw);                                      \
    }
COMBINE_BWD_WEIGHTS(combine_bwd_weights_f32, float)
COMBINE_BWD_WEIGHTS(combine_bwd_weights_f64, double)
