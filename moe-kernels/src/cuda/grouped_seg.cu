// grouped_seg.cu: the MoE expert GEMMs with the segment boundaries read from
// device memory (offsets[E + 1], i64, as route_plan.cu writes them), so the
// routing plan never has to come back to the host. cuBLAS's grouped GEMM
// takes its problem sizes from host arrays, which is why these exist.
//
//   grouped_seg_fwd_*:   C[r, :] = A[r, :] · B[e]   for r in segment e
//                        (A [M, K] and B [E, K, N] any strides, C row-major
//                        [M, N]); also the input gradient, with B a
//                        transposed view. Rows in no segment are not written.
//   grouped_seg_wgrad_*: C[e] = A[seg e]ᵀ · B[seg e]
//                        (A [M, D], B [M, F] any strides, C row-major
//                        [E, D, F]); zero for an empty segment.
//
// Tiles of SEG_BM × SEG_BN outputs, SEG_BK deep, one block of SEG_THREADS
// (16 × 16) threads, each owning a 4 × 4 grid of outputs spaced 16 apart.
// Offsets are clamped into 0..=m_rows (and each end to at least its start),
// so offsets that are not a valid plan give wrong numbers, never an access
// outside A, B or C. Every output is one thread's sum in ascending k:
// deterministic. With
// round_bf16 != 0 (f32 only) each operand is rounded to bf16 as it is loaded
// and products accumulate in f32: MatmulPrecision::Bf16's arithmetic.
//
// Launch (cuda::launch::grouped_seg_*): fwd grid (ceil(M / BM) + E,
// ceil(N / BN)): blockIdx.x enumerates every segment's row tiles in expert
// order (at most ceil(M / BM) + E of them; spare blocks exit);
// wgrad grid (ceil(F / BN), ceil(D / BM), E).

#define SEG_BM 64
#define SEG_BN 64
#define SEG_BK 16
#define SEG_THREADS 256

__device__ __forceinline__ float seg_operand(float v, int round_bf16) {
    return round_bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}
__device__ __forceinline__ double seg_operand(double v, int) { return v; }

// One output tile: C(m, n) = Σ_{k < klen} A(m, k) · B(k, n) for m < mlen,
// n < nlen, where A(m, k) = a[m · am + k · ak] and B(k, n) = b[k · bk + n · bn]
// (the pointers already at the tile's corner), written to c[m · cm + n].
template <typename T>
__device__ void seg_tile(int mlen, int nlen, long long klen, const T* a, long long am, long long ak, const T* b,
                         long long bk, long long bn, T* c, long long cm, int round_bf16) {
    __shared__ T as[SEG_BK][SEG_BM];
    __shared__ T bs[SEG_BK][SEG_BN];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    T acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
    for (long long k0 = 0; k0 < klen; k0 += SEG_BK) {
        // 1024 elements of each tile, four per thread; zeros outside.
        for (int l = threadIdx.x; l < SEG_BK * SEG_BM; l += SEG_THREADS) {
            int k = l / SEG_BM, m = l % SEG_BM;
            bool in = m < mlen && k0 + k < klen;
            as[k][m] = in ? seg_operand(a[m * am + (k0 + k) * ak], round_bf16) : T(0);
        }
        for (int l = threadIdx.x; l < SEG_BK * SEG_BN; l += SEG_THREADS) {
            int k = l / SEG_BN, n = l % SEG_BN;
            bool in = n < nlen && k0 + k < klen;
            bs[k][n] = in ? seg_operand(b[(k0 + k) * bk + n * bn], round_bf16) : T(0);
        }
        __syncthreads();
        for (int k = 0; k < SEG_BK; ++k) {
            T av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = as[k][ty + 16 * i];
            for (int j = 0; j < 4; ++j) bv[j] = bs[k][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        int m = ty + 16 * i;
        if (m >= mlen) continue;
        for (int j = 0; j < 4; ++j) {
            int n = tx + 16 * j;
            if (n < nlen) c[m * cm + n] = acc[i][j];
        }
    }
}

// Segment e's rows [*start, *end), clamped as the header says.
__device__ __forceinline__ void seg_bounds(const long long* offsets, long long e, long long m_rows, long long* start,
                                           long long* end) {
    long long s = offsets[e], t = offsets[e + 1];
    s = s < 0 ? 0 : (s > m_rows ? m_rows : s);
    t = t < s ? s : (t > m_rows ? m_rows : t);
    *start = s;
    *end = t;
}

template <typename T>
__device__ void seg_fwd(long long m_rows, long long n_cols, long long k_dim, int num_experts, const long long* offsets, const T* a,
                        long long ars, long long acs, const T* b, long long bes, long long brs, long long bcs, T* c,
                        int round_bf16) {
    // Find this block's (expert, row tile) by walking the segments in order.
    long long tile = blockIdx.x;
    int e = 0;
    long long start = 0, end = 0;
    for (; e < num_experts; ++e) {
        seg_bounds(offsets, e, m_rows, &start, &end);
        long long tiles = end > start ? (end - start + SEG_BM - 1) / SEG_BM : 0;
        if (tile < tiles) break;
        tile -= tiles;
    }
    if (e == num_experts) return;  // a spare block: fewer tiles than the bound
    long long row0 = start + tile * SEG_BM, col0 = (long long)blockIdx.y * SEG_BN;
    long long rows = end - row0, cols = n_cols - col0;
    seg_tile<T>((int)(rows < SEG_BM ? rows : SEG_BM), (int)(cols < SEG_BN ? cols : SEG_BN), k_dim,
                a + row0 * ars, ars, acs, b + e * bes + col0 * bcs, brs, bcs, c + row0 * n_cols + col0, n_cols,
                round_bf16);
}

template <typename T>
__device__ void seg_wgrad(long long m_rows, long long d_dim, long long f_dim, const long long* offsets, const T* a, long long ars,
                          long long acs, const T* b, long long brs, long long bcs, T* c, int round_bf16) {
    const long long e = blockIdx.z;
    long long start, end;
    seg_bounds(offsets, e, m_rows, &start, &end);
    const long long i0 = (long long)blockIdx.y * SEG_BM, j0 = (long long)blockIdx.x * SEG_BN;
    const long long rows = d_dim - i0, cols = f_dim - j0;
    seg_tile<T>((int)(rows < SEG_BM ? rows : SEG_BM), (int)(cols < SEG_BN ? cols : SEG_BN),
                end > start ? end - start : 0, a + start * ars + i0 * acs, acs, ars, b + start * brs + j0 * bcs,
                brs, bcs, c + e * d_dim * f_dim + i0 * f_dim + j0, f_dim, round_bf16);
}

#define GROUPED_SEG(SUFFIX, T)                                                                                  \
    extern "C" __global__ void grouped_seg_fwd_##SUFFIX(long long m_rows, long long n_cols, long long k_dim, int num_experts,    \
                                                        const long long* offsets, const T* a, long long ars,    \
                                                        long long acs, const T* b, long long bes, long long brs, \
                                                        long long bcs, T* c, int round_bf16) {                  \
        seg_fwd<T>(m_rows, n_cols, k_dim, num_experts, offsets, a, ars, acs, b, bes, brs, bcs, c, round_bf16);         \
    }                                                                                                           \
    extern "C" __global__ void grouped_seg_wgrad_##SUFFIX(long long m_rows, long long d_dim, long long f_dim,                    \
                                                          const long long* offsets, const T* a, long long ars,  \
                                                          long long acs, const T* b, long long brs,             \
                                                          long long bcs, T* c, int round_bf16) {                \
        seg_wgrad<T>(m_rows, d_dim, f_dim, offsets, a, ars, acs, b, brs, bcs, c, round_bf16);                          \
    }
GROUPED_SEG(f32, float)
GROUPED_SEG(f64, double)
