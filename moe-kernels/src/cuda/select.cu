// select.cu: index_select and gather along a dim (any dtype, by element
// size) and their backward (index_add and scatter-add, f32 and f64).
//
// A tensor is seen as [outer, dim, inner] around the indexed dim. Indices
// are i64 and were checked against dim by the host, so nothing here bounds-
// checks them. The backward kernels add every contribution to an element in
// ascending source position, starting from zero: the same additions in the
// same order as the CPU's index_add / scatter_add, so results are
// deterministic (and equal to the CPU's bit for bit). Launch every kernel
// with launch::elementwise(n) for its n.

// y[o, j, i] = x[view((o * dim + idx[j]) * inner + i)]: x any view of
// [outer, dim, inner], idx [k], y row-major [outer, k, inner] (n elements).
#define INDEX_SELECT(NAME, T)                                                                      \
    extern "C" __global__ void NAME(long long n, long long k, long long dim, long long inner, Strided sx, \
                                    const T* x, const long long* idx, T* y) {                      \
        GRID_STRIDE_LOOP(e, n) {                                                                   \
            long long r = e / inner, i = e - r * inner;                                            \
            long long o = r / k, j = r - o * k;                                                    \
            y[e] = x[strided_offset(sx, (o * dim + idx[j]) * inner + i)];                          \
        }                                                                                          \
    }
INDEX_SELECT(index_select_b1, unsigned char)
INDEX_SELECT(index_select_b2, unsigned short)
INDEX_SELECT(index_select_b4, unsigned int)
INDEX_SELECT(index_select_b8, unsigned long long)

// y[o, j, i] = x[view((o * dim + idx[o, j, i]) * inner + i)] (torch.gather):
// x any view of [outer, dim, inner], idx and y row-major [outer, k, inner]
// (n elements).
#define GATHER(NAME, T)                                                                            \
    extern "C" __global__ void NAME(long long n, long long k, long long dim, long long inner, Strided sx, \
                                    const T* x, const long long* idx, T* y) {                      \
        GRID_STRIDE_LOOP(e, n) {                                                                   \
            long long o = e / (k * inner), i = e % inner;                                          \
            y[e] = x[strided_offset(sx, (o * dim + idx[e]) * inner + i)];                          \
        }                                                                                          \
    }
GATHER(gather_b1, unsigned char)
GATHER(gather_b2, unsigned short)
GATHER(gather_b4, unsigned int)
GATHER(gather_b8, unsigned long long)

// The backward of index_select: dx[o, d, i] = sum over the positions j with
// idx[j] = d, ascending, of g[o, j, i]. The host groups the positions by
// index: those of d are order[starts[d] .. starts[d + 1]] (ascending).
// g row-major [outer, k, inner]; dx row-major [outer, dim, inner] (n
// elements), every element written. One thread per element of dx.
template <typename T>
__device__ void index_add_rows(long long n, long long k, long long dim, long long inner, const long long* starts,
                               const long long* order, const T* g, T* dx) {
    GRID_STRIDE_LOOP(e, n) {
        long long r = e / inner, i = e - r * inner;
        long long o = r / dim, d = r - o * dim;
        T acc = T(0);
        for (long long p = starts[d]; p < starts[d + 1]; ++p) acc += g[(o * k + order[p]) * inner + i];
        dx[e] = acc;
    }
}

#define INDEX_ADD(NAME, T)                                                                         \
    extern "C" __global__ void NAME(long long n, long long k, long long dim, long long inner,      \
                                    const long long* starts, const long long* order, const T* g, T* dx) { \
        index_add_rows<T>(n, k, dim, inner, starts, order, g, dx);                                 \
    }
INDEX_ADD(index_add_f32, float)
INDEX_ADD(index_add_f64, double)

// The backward of gather: dx[o, idx[o, j, i], i] += g[o, j, i] for j
// ascending, into a zeroed dx [outer, dim, inner]. One thread per (o, i)
// column (n = outer * inner): a column's elements are written by its thread
// only.
template <typename T>
__device__ void scatter_add_cols(long long n, long long k, long long dim, long long inner, const long long* idx,
                                 const T* g, T* dx) {
    GRID_STRIDE_LOOP(c, n) {
        long long o = c / inner, i = c - o * inner;
        for (long long j = 0; j < k; ++j) {
            long long s = (o * k + j) * inner + i;
            dx[(o * dim + idx[s]) * inner + i] += g[s];
        }
    }
}

#define SCATTER_ADD(NAME, T)                                                                       \
    extern "C" __global__ void NAME(long long n, long long k, long long dim, long long inner,      \
                                    const long long* idx, const T* g, T* dx) {                     \
        scatter_add_cols<T>(n, k, dim, inner, idx, g, dx);                                         \
    }
SCATTER_ADD(scatter_add_f32, float)
SCATTER_ADD(scatter_add_f64, double)
// Integers as on the CPU: i64 sums, u8 sums (modulo 256).
SCATTER_ADD(scatter_add_i64, long long)
SCATTER_ADD(scatter_add_u8, unsigned char)
