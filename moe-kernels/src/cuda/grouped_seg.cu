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
// grouped_seg_tc_*: the same on bf16 tensor cores (f32 only, sm_80+; see
// the section at the end).
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

// The expert and rows of forward block blockIdx.x: the row tiles of every
// segment, in expert order. Returns the expert (num_experts for a spare
// block) and this tile's rows [*start, *end), at most SEG_BM of them.
__device__ int seg_row_tile(const long long* offsets, int num_experts, long long m_rows, long long* start,
                            long long* end) {
    long long tile = blockIdx.x;
    for (int e = 0; e < num_experts; ++e) {
        seg_bounds(offsets, e, m_rows, start, end);
        long long tiles = (*end - *start + SEG_BM - 1) / SEG_BM;
        if (tile < tiles) {
            *start += tile * SEG_BM;
            *end = *start + SEG_BM < *end ? *start + SEG_BM : *end;
            return e;
        }
        tile -= tiles;
    }
    return num_experts;
}

template <typename T>
__device__ void seg_fwd(long long m_rows, long long n_cols, long long k_dim, int num_experts, const long long* offsets,
                        const T* a, long long ars, long long acs, const T* b, long long bes, long long brs,
                        long long bcs, T* c, int round_bf16) {
    long long start, end;
    const int e = seg_row_tile(offsets, num_experts, m_rows, &start, &end);
    if (e == num_experts) return;  // a spare block: fewer tiles than the bound
    long long row0 = start, col0 = (long long)blockIdx.y * SEG_BN;
    long long rows = end - row0, cols = n_cols - col0;
    seg_tile<T>((int)(rows < SEG_BM ? rows : SEG_BM), (int)(cols < SEG_BN ? cols : SEG_BN), k_dim,
                a + row0 * ars, ars, acs, b + e * bes + col0 * bcs, brs, bcs, c + row0 * n_cols + col0, n_cols,
                round_bf16);
}

template <typename T>
__device__ void seg_wgrad(long long m_rows, long long d_dim, long long f_dim, const long long* offsets, const T* a,
                          long long ars, long long acs, const T* b, long long brs, long long bcs, T* c,
                          int round_bf16) {
    const long long e = blockIdx.z;
    long long start, end;
    seg_bounds(offsets, e, m_rows, &start, &end);
    const long long i0 = (long long)blockIdx.y * SEG_BM, j0 = (long long)blockIdx.x * SEG_BN;
    const long long rows = d_dim - i0, cols = f_dim - j0;
    seg_tile<T>((int)(rows < SEG_BM ? rows : SEG_BM), (int)(cols < SEG_BN ? cols : SEG_BN),
                end > start ? end - start : 0, a + start * ars + i0 * acs, acs, ars, b + start * brs + j0 * bcs,
                brs, bcs, c + e * d_dim * f_dim + i0 * f_dim + j0, f_dim, round_bf16);
}

#define SEG_FWD(NAME, T)                                                                                      \
    extern "C" __global__ void NAME(long long m_rows, long long n_cols, long long k_dim, int num_experts,         \
                                    const long long* offsets, const T* a, long long ars, long long acs, const T* b, \
                                    long long bes, long long brs, long long bcs, T* c, int round_bf16) {           \
        seg_fwd<T>(m_rows, n_cols, k_dim, num_experts, offsets, a, ars, acs, b, bes, brs, bcs, c, round_bf16);    \
    }
#define SEG_WGRAD(NAME, T)                                                                                       \
    extern "C" __global__ void NAME(long long m_rows, long long d_dim, long long f_dim, const long long* offsets,  \
                                    const T* a, long long ars, long long acs, const T* b, long long brs,          \
                                    long long bcs, T* c, int round_bf16) {                                        \
        seg_wgrad<T>(m_rows, d_dim, f_dim, offsets, a, ars, acs, b, brs, bcs, c, round_bf16);                     \
    }
SEG_FWD(grouped_seg_fwd_f32, float)
SEG_FWD(grouped_seg_fwd_f64, double)
SEG_WGRAD(grouped_seg_wgrad_f32, float)
SEG_WGRAD(grouped_seg_wgrad_f64, double)

// ---- bf16 tensor cores (sm_80+): f32 operands under MatmulPrecision::Bf16 ----
// The same contract and tiles (64 x 64 outputs per block, the same grids),
// but 4 warps (SEG_TC_THREADS): warp w owns output rows 16w..16w+15 as eight
// 16 x 8 mma accumulators. Operands are rounded to bf16 as they are staged
// (32 deep) into shared memory and multiplied with mma.m16n8k16, f32
// accumulation; each output is one lane's sum in a fixed order.

#define SEG_TC_THREADS 128
#define SEG_TC_BK 32
// Words per staged row: 16 bf16 pairs plus 4 words of padding, so the
// fragment loads of a warp hit 32 distinct banks.
#define SEG_TC_WS 20

#ifdef TENSOR_CORES
// X(r, c) = x[r · rs + c · cs] for r < 64, c < SEG_TC_BK, zero past rlen /
// clen, as bf16 pairs (c, c + 1) in words dst[r · SEG_TC_WS + c / 2]. The
// threads walk the operand's contiguous direction, so loads coalesce.
__device__ void seg_tc_stage(unsigned* dst, const float* x, long long rs, long long cs, int rlen, long long clen) {
    const int pairs = SEG_TC_BK / 2;
    const bool rows_fastest = rs == 1 && cs != 1;
    for (int i = threadIdx.x; i < SEG_BM * pairs; i += blockDim.x) {
        const int r = rows_fastest ? i % SEG_BM : i / pairs, p = rows_fastest ? i / SEG_BM : i % pairs;
        const long long c = 2 * p;
        float lo = 0.f, hi = 0.f;
        if (r < rlen) {
            if (c < clen) lo = x[r * rs + c * cs];
            if (c + 1 < clen) hi = x[r * rs + (c + 1) * cs];
        }
        dst[r * SEG_TC_WS + p] = tc_pack(lo, hi);
    }
}

// seg_tile's contract on tensor cores (operands f32, rounded to bf16).
__device__ void seg_tc_tile(int mlen, int nlen, long long klen, const float* a, long long am, long long ak,
                            const float* b, long long bk, long long bn, float* c, long long cm) {
    __shared__ unsigned as[SEG_BM * SEG_TC_WS];
    __shared__ unsigned bs[SEG_BN * SEG_TC_WS];  // B transposed: row n holds B(., n)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    float acc[SEG_BN / 8][4];
    for (int n = 0; n < SEG_BN / 8; ++n)
        for (int i = 0; i < 4; ++i) acc[n][i] = 0.f;
    for (long long k0 = 0; k0 < klen; k0 += SEG_TC_BK) {
        seg_tc_stage(as, a + k0 * ak, am, ak, mlen, klen - k0);
        seg_tc_stage(bs, b + k0 * bk, bn, bk, nlen, klen - k0);
        __syncthreads();
        for (int kk = 0; kk < SEG_TC_BK / 16; ++kk) {
            unsigned af[4];
            tc_load_a(af, as, SEG_TC_WS, warp * 16, kk * 16, g, t);
            for (int n = 0; n < SEG_BN / 8; ++n) {
                unsigned bf[2];
                tc_load_b_from_rows(bf, bs, SEG_TC_WS, n * 8, kk * 16, g, t);
                mma_bf16_16816(acc[n], af, bf, acc[n]);
            }
        }
        __syncthreads();
    }
    // C fragment: c0, c1 at row g, columns 2t, 2t + 1; c2, c3 at row g + 8.
    for (int n = 0; n < SEG_BN / 8; ++n)
        for (int i = 0; i < 4; ++i) {
            const int m = warp * 16 + g + (i >= 2 ? 8 : 0), col = n * 8 + 2 * t + (i & 1);
            if (m < mlen && col < nlen) c[m * cm + col] = acc[n][i];
        }
}
#endif

extern "C" __global__ void grouped_seg_tc_fwd(long long m_rows, long long n_cols, long long k_dim, int num_experts,
                                              const long long* offsets, const float* a, long long ars, long long acs,
                                              const float* b, long long bes, long long brs, long long bcs, float* c) {
#ifdef TENSOR_CORES
    long long start, end;
    const int e = seg_row_tile(offsets, num_experts, m_rows, &start, &end);
    if (e == num_experts) return;
    const long long col0 = (long long)blockIdx.y * SEG_BN, cols = n_cols - col0;
    seg_tc_tile((int)(end - start), (int)(cols < SEG_BN ? cols : SEG_BN), k_dim, a + start * ars, ars, acs,
                b + e * bes + col0 * bcs, brs, bcs, c + start * n_cols + col0, n_cols);
#endif
}

extern "C" __global__ void grouped_seg_tc_wgrad(long long m_rows, long long d_dim, long long f_dim,
                                                const long long* offsets, const float* a, long long ars,
                                                long long acs, const float* b, long long brs, long long bcs,
                                                float* c) {
#ifdef TENSOR_CORES
    const long long e = blockIdx.z;
    long long start, end;
    seg_bounds(offsets, e, m_rows, &start, &end);
    const long long i0 = (long long)blockIdx.y * SEG_BM, j0 = (long long)blockIdx.x * SEG_BN;
    const long long rows = d_dim - i0, cols = f_dim - j0;
    seg_tc_tile((int)(rows < SEG_BM ? rows : SEG_BM), (int)(cols < SEG_BN ? cols : SEG_BN), end - start,
                a + start * ars + i0 * acs, acs, ars, b + start * brs + j0 * bcs, brs, bcs,
                c + e * d_dim * f_dim + i0 * f_dim + j0, f_dim);
#endif
}
