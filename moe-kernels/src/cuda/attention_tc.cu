// attention_tc.cu: causal grouped-query attention on bf16 tensor cores, for
// f32 tensors under MatmulPrecision::Bf16 on sm_80+. Same contract and
// argument lists as attention.cu (q, o, dq, dO [B, Hq, Tq, Dh]; k, v, dk, dv
// [B, Hkv, Tk, Dh]; lse, delta [B, Hq, Tq]; bottom-right causal, GQA), but:
// - f32 inputs are rounded to bf16 (nearest even) when staged into shared
//   memory, and the products Q K^T, P V, dO V^T, dS K, P^T dO, dS^T Q run as
//   mma.m16n8k16 with f32 accumulation;
// - softmax statistics, P, dP and dS are f32; P and dS are rounded to bf16
//   only as operands of the next product (as flash-attention does);
// - no ldmatrix / cp.async: fragments come from plain shared-memory loads, so
//   the only instruction whose lane layout must be right is the mma itself.
//
// Work split (launch planned by moe_kernels::cuda::attention_tc_launch): a
// block is ATT_TC_WARPS warps, each owning one 16-row m-tile, so a block owns
// ATT_TC_ROWS rows (queries in forward and dq, keys in dk/dv); the other side
// streams through shared memory in tiles of ATT_TC_TILE rows. Backward is two
// kernels (dq; dk/dv), each gradient element written by one thread: no
// atomics, deterministic. delta comes from attention.cu's attn_delta_f32.

#define ATT_TC_WARPS 4
#define ATT_TC_ROWS 64
#define ATT_TC_TILE 64
// bf16 elements of padding per shared row: a row is then 4 words past a
// multiple of 32 banks, so the fragment loads below hit 32 distinct banks.
#define ATT_TC_PAD 8

// Rows [r0, r0 + n) of a row-major [rows, dh] f32 matrix, rounded to bf16;
// rows past `rows` are zero. All threads of the block call it.
__device__ void tc_stage(unsigned* dst, int ws, const float* src, int r0, int n, int rows, int dh) {
    const int half = dh >> 1;
    for (int e = threadIdx.x; e < n * half; e += blockDim.x) {
        const int r = e / half, c = e - r * half;
        unsigned w = 0;
        if (r0 + r < rows) {
            const float* p = src + (long long)(r0 + r) * dh + 2 * c;
            w = (unsigned)f32_to_bf16(p[0]) | ((unsigned)f32_to_bf16(p[1]) << 16);
        }
        dst[r * ws + c] = w;
    }
}

// The A fragment of k-step kk (columns 16kk..16kk+15) of a 16 x (8 * NT)
// f32 accumulator held as NT C fragments (c0, c1: row g, columns 2t, 2t+1;
// c2, c3: row g+8), rounded to bf16: C tile 2kk gives the left 8 columns,
// 2kk+1 the right 8, so the registers map across without a shuffle.
__device__ __forceinline__ void tc_acc_to_a(unsigned a[4], const float (*acc)[4], int kk) {
    a[0] = tc_pack(acc[2 * kk][0], acc[2 * kk][1]);
    a[1] = tc_pack(acc[2 * kk][2], acc[2 * kk][3]);
    a[2] = tc_pack(acc[2 * kk + 1][0], acc[2 * kk + 1][1]);
    a[3] = tc_pack(acc[2 * kk + 1][2], acc[2 * kk + 1][3]);
}

// acc[n] (16 x 8 C tiles, NT of them) += rows r0.. of `a_tile` (16 x DH) times
// the transpose of `b_tile`'s rows (n-tile n = b_tile rows 8n..8n+7).
template <int DH, int NT>
__device__ __forceinline__ void tc_rows_times_rows_t(float (*acc)[4], const unsigned* a_tile, const unsigned* b_tile,
                                                     int ws, int r0, int g, int t) {
#pragma unroll
    for (int kk = 0; kk < DH / 16; ++kk) {
        unsigned a[4];
        tc_load_a(a, a_tile, ws, r0, kk * 16, g, t);
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            unsigned b[2];
            tc_load_b_from_rows(b, b_tile, ws, n * 8, kk * 16, g, t);
            mma_bf16_16816(acc[n], a, b, acc[n]);
        }
    }
}

// out[n] (16 x DH as DH / 8 C tiles) += P (16 x ATT_TC_TILE, the f32
// accumulator `p`, rounded to bf16) times the tile `b_tile` [ATT_TC_TILE][DH].
template <int DH>
__device__ __forceinline__ void tc_acc_times_tile(float (*out)[4], const float (*p)[4], const unsigned* b_tile, int ws,
                                                  int g, int t) {
#pragma unroll
    for (int kk = 0; kk < ATT_TC_TILE / 16; ++kk) {
        unsigned a[4];
        tc_acc_to_a(a, p, kk);
#pragma unroll
        for (int n = 0; n < DH / 8; ++n) {
            unsigned b[2];
            tc_load_b_from_cols(b, b_tile, ws, kk * 16, n * 8, g, t);
            mma_bf16_16816(out[n], a, b, out[n]);
        }
    }
}

template <int N>
__device__ __forceinline__ void tc_zero(float (*acc)[4]) {
#pragma unroll
    for (int n = 0; n < N; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// Max / sum over the 4 lanes sharing a fragment row (same g).
__device__ __forceinline__ float tc_row_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float tc_row_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}


// Forward. Grid: x = B * Hq, y = query blocks of ATT_TC_ROWS.
// Shared: q [ATT_TC_ROWS], k, v [ATT_TC_TILE] rows of ws words.
template <int DH>
__device__ void attn_tc_fwd(int hq, int hkv, int tq, int tk, float scale, const float* q, const float* k,
                            const float* v, float* o, float* lse) {
    constexpr int WS = (DH + ATT_TC_PAD) / 2, KT = ATT_TC_TILE / 8;
    extern __shared__ unsigned char att_smem[];
    unsigned* qs = reinterpret_cast<unsigned*>(att_smem);
    unsigned* ks = qs + ATT_TC_ROWS * WS;
    unsigned* vs = ks + ATT_TC_TILE * WS;
    const int bh = blockIdx.x, b = bh / hq, h = bh - b * hq;
    const long long q0 = (long long)bh * tq * DH;
    const long long kv0 = ((long long)b * hkv + h / (hq / hkv)) * tk * DH;
    const int i0 = blockIdx.y * ATT_TC_ROWS, off = tk - tq;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = warp * 16, row[2] = {i0 + r0 + g, i0 + r0 + g + 8};
    tc_stage(qs, WS, q + q0, i0, ATT_TC_ROWS, tq, DH);

    // Per fragment row (g, g + 8): running max, this lane's share of the
    // row sum (reduced over the 4 lanes at the end), output accumulator.
    float m[2] = {NEG_INF_F, NEG_INF_F}, l[2] = {0.0f, 0.0f}, acc[DH / 8][4];
    tc_zero<DH / 8>(acc);
    const int kend = min(i0 + ATT_TC_ROWS + off, tk);
    for (int j0 = 0; j0 < kend; j0 += ATT_TC_TILE) {
        __syncthreads();  // the previous tile is consumed (and q staged)
        tc_stage(ks, WS, k + kv0, j0, ATT_TC_TILE, tk, DH);
        tc_stage(vs, WS, v + kv0, j0, ATT_TC_TILE, tk, DH);
        __syncthreads();
        // Warp-uniform: the warp's rows are all past Tq, or see none of the tile.
        if (i0 + r0 >= tq || j0 > i0 + r0 + 15 + off) continue;
        float s[KT][4];
        tc_zero<KT>(s);
        tc_rows_times_rows_t<DH, KT>(s, qs, ks, WS, r0, g, t);
        float mx[2] = {NEG_INF_F, NEG_INF_F};
#pragma unroll
        for (int n = 0; n < KT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int j = j0 + n * 8 + 2 * t + (e & 1);
                const bool vis = j < tk && j <= row[e >> 1] + off;
                s[n][e] = vis ? scale * s[n][e] : NEG_INF_F;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
            }
        float base[2];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const float m_new = fmaxf(m[rr], tc_row_max(mx[rr]));
            // A row with no visible key yet keeps zeros (exp(-inf - 0) = 0).
            base[rr] = m_new == NEG_INF_F ? 0.0f : m_new;
            const float alpha = expf(m[rr] - base[rr]);
            l[rr] *= alpha;
#pragma unroll
            for (int n = 0; n < DH / 8; ++n) {
                acc[n][2 * rr] *= alpha;
                acc[n][2 * rr + 1] *= alpha;
            }
            m[rr] = m_new;
        }
#pragma unroll
        for (int n = 0; n < KT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[n][e] = expf(s[n][e] - base[e >> 1]);
                l[e >> 1] += s[n][e];  // the f32 p, before its bf16 rounding
            }
        tc_acc_times_tile<DH>(acc, s, vs, WS, g, t);
    }
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const float sum = tc_row_sum(l[rr]);
        const int i = row[rr];
        if (i >= tq) continue;
        // Every query sees key 0, so sum > 0.
        const float inv = 1.0f / sum;
#pragma unroll
        for (int n = 0; n < DH / 8; ++n) {
            float* dst = o + q0 + (long long)i * DH + n * 8 + 2 * t;
            dst[0] = acc[n][2 * rr] * inv;
            dst[1] = acc[n][2 * rr + 1] * inv;
        }
        if (t == 0) lse[(long long)bh * tq + i] = m[rr] + logf(sum);
    }
}

// dq = scale * sum_j P_ij (dP_ij - delta_i) k_j, dP = dO v^T. Grid and rows
// as forward. Shared: q, dO [ATT_TC_ROWS], k, v [ATT_TC_TILE] rows.
template <int DH>
__device__ void attn_tc_bwd_dq(int hq, int hkv, int tq, int tk, float scale, const float* q, const float* k,
                               const float* v, const float* d_o, const float* lse, const float* delta, float* dq) {
    constexpr int WS = (DH + ATT_TC_PAD) / 2, KT = ATT_TC_TILE / 8;
    extern __shared__ unsigned char att_smem[];
    unsigned* qs = reinterpret_cast<unsigned*>(att_smem);
    unsigned* dos = qs + ATT_TC_ROWS * WS;
    unsigned* ks = dos + ATT_TC_ROWS * WS;
    unsigned* vs = ks + ATT_TC_TILE * WS;
    const int bh = blockIdx.x, b = bh / hq, h = bh - b * hq;
    const long long q0 = (long long)bh * tq * DH;
    const long long kv0 = ((long long)b * hkv + h / (hq / hkv)) * tk * DH;
    const int i0 = blockIdx.y * ATT_TC_ROWS, off = tk - tq;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = warp * 16, row[2] = {i0 + r0 + g, i0 + r0 + g + 8};
    tc_stage(qs, WS, q + q0, i0, ATT_TC_ROWS, tq, DH);
    tc_stage(dos, WS, d_o + q0, i0, ATT_TC_ROWS, tq, DH);
    float row_lse[2], row_delta[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        row_lse[rr] = row[rr] < tq ? lse[(long long)bh * tq + row[rr]] : 0.0f;
        row_delta[rr] = row[rr] < tq ? delta[(long long)bh * tq + row[rr]] : 0.0f;
    }
    float acc[DH / 8][4];
    tc_zero<DH / 8>(acc);
    const int kend = min(i0 + ATT_TC_ROWS + off, tk);
    for (int j0 = 0; j0 < kend; j0 += ATT_TC_TILE) {
        __syncthreads();
        tc_stage(ks, WS, k + kv0, j0, ATT_TC_TILE, tk, DH);
        tc_stage(vs, WS, v + kv0, j0, ATT_TC_TILE, tk, DH);
        __syncthreads();
        if (i0 + r0 >= tq || j0 > i0 + r0 + 15 + off) continue;
        float s[KT][4], dp[KT][4];
        tc_zero<KT>(s);
        tc_zero<KT>(dp);
        tc_rows_times_rows_t<DH, KT>(s, qs, ks, WS, r0, g, t);
        tc_rows_times_rows_t<DH, KT>(dp, dos, vs, WS, r0, g, t);
        // s becomes dS = P (dP - delta), masked entries 0.
#pragma unroll
        for (int n = 0; n < KT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int j = j0 + n * 8 + 2 * t + (e & 1), rr = e >> 1;
                const bool vis = j < tk && row[rr] < tq && j <= row[rr] + off;
                const float p = vis ? expf(scale * s[n][e] - row_lse[rr]) : 0.0f;
                s[n][e] = p * (dp[n][e] - row_delta[rr]);
            }
        tc_acc_times_tile<DH>(acc, s, ks, WS, g, t);
    }
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        if (row[rr] >= tq) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; ++n) {
            float* dst = dq + q0 + (long long)row[rr] * DH + n * 8 + 2 * t;
            dst[0] = scale * acc[n][2 * rr];
            dst[1] = scale * acc[n][2 * rr + 1];
        }
    }
}

// dv_j = sum_{h in group, i} P_ij dO_i, dk_j = scale * sum_{h, i} dS_ij q_i,
// computed transposed (keys are the m rows: S^T = K Q^T, dP^T = V dO^T).
// Grid: x = B * Hkv, y = key blocks of ATT_TC_ROWS. Shared: k, v
// [ATT_TC_ROWS], q, dO [ATT_TC_TILE] rows, then lse, delta [ATT_TC_TILE] f32.
template <int DH>
__device__ void attn_tc_bwd_dkv(int hq, int hkv, int tq, int tk, float scale, const float* q, const float* k,
                                const float* v, const float* d_o, const float* lse, const float* delta, float* dk,
                                float* dv) {
    constexpr int WS = (DH + ATT_TC_PAD) / 2, KT = ATT_TC_TILE / 8;
    extern __shared__ unsigned char att_smem[];
    unsigned* kst = reinterpret_cast<unsigned*>(att_smem);
    unsigned* vst = kst + ATT_TC_ROWS * WS;
    unsigned* qs = vst + ATT_TC_ROWS * WS;
    unsigned* dos = qs + ATT_TC_TILE * WS;
    float* ls = reinterpret_cast<float*>(dos + ATT_TC_TILE * WS);
    float* dl = ls + ATT_TC_TILE;
    const int bk = blockIdx.x, b = bk / hkv, hk = bk - b * hkv, group = hq / hkv;
    const long long kv0 = (long long)bk * tk * DH;
    const int j0 = blockIdx.y * ATT_TC_ROWS, off = tk - tq;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = warp * 16, key[2] = {j0 + r0 + g, j0 + r0 + g + 8};
    tc_stage(kst, WS, k + kv0, j0, ATT_TC_ROWS, tk, DH);
    tc_stage(vst, WS, v + kv0, j0, ATT_TC_ROWS, tk, DH);

    float adk[DH / 8][4], adv[DH / 8][4];
    tc_zero<DH / 8>(adk);
    tc_zero<DH / 8>(adv);
    // Key j0 is first seen by query j0 - off; earlier queries see none of the block.
    const int istart = max(j0 - off, 0);
    for (int hg = 0; hg < group; ++hg) {
        const long long bh = (long long)b * hq + hk * group + hg;
        const long long q0 = bh * tq * DH;
        for (int i0 = istart; i0 < tq; i0 += ATT_TC_TILE) {
            __syncthreads();
            tc_stage(qs, WS, q + q0, i0, ATT_TC_TILE, tq, DH);
            tc_stage(dos, WS, d_o + q0, i0, ATT_TC_TILE, tq, DH);
            if (threadIdx.x < ATT_TC_TILE) {
                const int i = i0 + threadIdx.x;
                ls[threadIdx.x] = i < tq ? lse[bh * tq + i] : 0.0f;
                dl[threadIdx.x] = i < tq ? delta[bh * tq + i] : 0.0f;
            }
            __syncthreads();
            // Warp-uniform: the warp's keys are all past Tk, or no query of the tile sees them.
            if (j0 + r0 >= tk || j0 + r0 > i0 + ATT_TC_TILE - 1 + off) continue;
            float st[KT][4], dpt[KT][4];
            tc_zero<KT>(st);
            tc_zero<KT>(dpt);
            tc_rows_times_rows_t<DH, KT>(st, kst, qs, WS, r0, g, t);
            tc_rows_times_rows_t<DH, KT>(dpt, vst, dos, WS, r0, g, t);
            // st becomes P^T, dpt dS^T; masked entries 0.
#pragma unroll
            for (int n = 0; n < KT; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int c = n * 8 + 2 * t + (e & 1), i = i0 + c, j = key[e >> 1];
                    const bool vis = i < tq && j < tk && j <= i + off;
                    const float p = vis ? expf(scale * st[n][e] - ls[c]) : 0.0f;
                    st[n][e] = p;
                    dpt[n][e] = p * (dpt[n][e] - dl[c]);
                }
            tc_acc_times_tile<DH>(adv, st, dos, WS, g, t);
            tc_acc_times_tile<DH>(adk, dpt, qs, WS, g, t);
        }
    }
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        if (key[rr] >= tk) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; ++n) {
            const long long at = kv0 + (long long)key[rr] * DH + n * 8 + 2 * t;
            dk[at] = scale * adk[n][2 * rr];
            dk[at + 1] = scale * adk[n][2 * rr + 1];
            dv[at] = adv[n][2 * rr];
            dv[at + 1] = adv[n][2 * rr + 1];
        }
    }
}

// Same argument lists as attention.cu's f32 kernels; `dh` equals the
// instance's head size DH (the launch plan picks the instance by it).
#define ATTN_TC_FWD(NAME, DH)                                                                                    \
    extern "C" __global__ void NAME(int hq, int hkv, int tq, int tk, int dh, float scale, const float* q,       \
                                    const float* k, const float* v, float* o, float* lse) {                     \
        attn_tc_fwd<DH>(hq, hkv, tq, tk, scale, q, k, v, o, lse);                                                \
    }
ATTN_TC_FWD(attn_tc_fwd_d64, 64)
ATTN_TC_FWD(attn_tc_fwd_d128, 128)

#define ATTN_TC_BWD_DQ(NAME, DH)                                                                                 \
    extern "C" __global__ void NAME(int hq, int hkv, int tq, int tk, int dh, float scale, const float* q,       \
                                    const float* k, const float* v, const float* d_o, const float* lse,         \
                                    const float* delta, float* dq) {                                             \
        attn_tc_bwd_dq<DH>(hq, hkv, tq, tk, scale, q, k, v, d_o, lse, delta, dq);                                \
    }
ATTN_TC_BWD_DQ(attn_tc_bwd_dq_d64, 64)
ATTN_TC_BWD_DQ(attn_tc_bwd_dq_d128, 128)

#define ATTN_TC_BWD_DKV(NAME, DH)                                                                                \
    extern "C" __global__ void NAME(int hq, int hkv, int tq, int tk, int dh, float scale, const float* q,       \
                                    const float* k, const float* v, const float* d_o, const float* lse,         \
                                    const float* delta, float* dk, float* dv) {                                  \
        attn_tc_bwd_dkv<DH>(hq, hkv, tq, tk, scale, q, k, v, d_o, lse, delta, dk, dv);                           \
    }
ATTN_TC_BWD_DKV(attn_tc_bwd_dkv_d64, 64)
ATTN_TC_BWD_DKV(attn_tc_bwd_dkv_d128, 128)
