// reduce.cu: sums over the last dim of a contiguous [rows, cols] buffer (the
// host first moves the reduced dims last and makes the view contiguous), and
// max with its position over one dim of any view.

// y[r] = sum_c x[r, c]; fixed order for a given blockDim (deterministic).
// One block per row: launch::rows(rows, cols).
template <typename T>
__device__ void sum_rows(int rows, int cols, const T* x, T* y) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + (long long)r * cols;
        T acc = (T)0;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) acc += xr[c];
        acc = block_reduce_sum(acc);
        if (threadIdx.x == 0) y[r] = acc;
    }
}
extern "C" __global__ void sum_rows_f32(int rows, int cols, const float* x, float* y) { sum_rows(rows, cols, x, y); }
extern "C" __global__ void sum_rows_f64(int rows, int cols, const double* x, double* y) { sum_rows(rows, cols, x, y); }

// Max over dim of x, a view of [outer, dim, inner] (dim >= 1): for each of
// the n = outer * inner outputs, the element of (o, 0..dim, i) that ranks
// first (ranks_before, common.cuh: the first maximum, or the first NaN if
// there is one, as the CPU's max and argmax) and its position d:
// vals[o, i] = x[o, d, i], idx[o, i] = d, both row-major [outer, inner].
// Element (o, d, i) lives at strided_offset(sx, (o * dim) * inner + i) +
// d * sd, sd being the view's stride along dim.
//
// One warp per output: the lanes take d = lane, lane + 32, ..., then the
// warp keeps the best pair by shuffles. The ranking is a strict total order,
// so the winner does not depend on the order of the comparisons.
// launch::warps(n); blockDim.x a multiple of 32.
template <typename T>
__device__ void max_dim_warps(long long n, long long dim, long long inner, long long sd, const Strided& sx,
                              const T* x, T* vals, long long* idx) {
    const int lane = threadIdx.x & 31;
    const long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const long long step = ((long long)gridDim.x * blockDim.x) >> 5;
    // `w` is the same on every lane of a warp, so all 32 lanes reach the shuffles.
    for (long long w = first; w < n; w += step) {
        long long o = w / inner, i = w - o * inner;
        long long base = strided_offset(sx, o * dim * inner + i);
        T best = T(0);
        long long at = -1;  // no element seen yet (lanes past dim)
        for (long long d = lane; d < dim; d += 32) {
            T v = x[base + d * sd];
            if (at < 0 || ranks_before(v, d, best, at)) {
                best = v;
                at = d;
            }
        }
        for (int s = 16; s > 0; s >>= 1) {
            T other = __shfl_xor_sync(0xffffffffu, best, s);
            long long other_at = __shfl_xor_sync(0xffffffffu, at, s);
            if (other_at >= 0 && (at < 0 || ranks_before(other, other_at, best, at))) {
                best = other;
                at = other_at;
            }
        }
        if (lane == 0) {
            vals[w] = best;
            idx[w] = at;
        }
    }
}

#define MAX_DIM(NAME, T)                                                                           \
    extern "C" __global__ void NAME(long long n, long long dim, long long inner, long long sd, Strided sx, \
                                    const T* x, T* vals, long long* idx) {                         \
        max_dim_warps<T>(n, dim, inner, sd, sx, x, vals, idx);                                     \
    }
MAX_DIM(max_dim_f32, float)
MAX_DIM(max_dim_f64, double)
