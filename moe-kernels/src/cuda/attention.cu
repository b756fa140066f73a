// attention.cu: causal grouped-query attention, flash-attention style (no
// T x T matrix in memory), forward and backward, f32 and f64. Same contract
// as moe_kernels::cpu::attention:
//
//   q, o, dq, dO: contiguous [B, Hq, Tq, Dh]   k, v, dk, dv: [B, Hkv, Tk, Dh]
//   lse, delta:   [B, Hq, Tq]                   query head h reads kv head h / (Hq / Hkv)
//   query i sees keys j <= i + (Tk - Tq)   (bottom-right causal alignment)
//
// Work split (launch::attention sizes the grid and the dynamic shared memory):
// - a block is ATT_WARPS warps; each warp owns ATT_ROWS rows (query rows in
//   forward and dq, key rows in dkv), so a block owns ATT_BLOCK_ROWS rows;
// - the other side streams through shared memory in tiles of ATT_TILE = 32
//   rows, one per lane: lane j scores tile row j against the warp's row,
//   then the row's output is accumulated with the tile's values broadcast by
//   __shfl_sync, lane l owning output columns l, l + 32, ... (DPL of them,
//   so Dh <= 32 * DPL);
// - tiles read by lane index are stored with a row stride of Dh + 1, so the
//   32 lanes of a score loop hit 32 different banks.
// The backward is two kernels, dq (per query block) and dk/dv (per kv head
// and key block, looping over the group's query heads), so every gradient
// element is written by one thread: no atomics, results are deterministic.
// Statistics are kept in the element type (f32 for f32, as the CPU kernel).

#define ATT_WARPS 4
#define ATT_ROWS 4
#define ATT_BLOCK_ROWS 16
#define ATT_TILE 32

template <typename T>
__device__ __forceinline__ T att_warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        T w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

// Copies rows [r0, r0 + n) of a [rows, dh] matrix into shared memory with row
// stride `stride`; rows past `rows` are zero. All threads of the block call it.
template <typename T>
__device__ void att_stage(T* dst, int stride, const T* src, int r0, int n, int rows, int dh) {
    for (int e = threadIdx.x; e < n * dh; e += blockDim.x) {
        int r = e / dh, c = e - r * dh;
        dst[r * stride + c] = (r0 + r < rows) ? src[(long long)(r0 + r) * dh + c] : (T)0;
    }
}

template <typename T>
__device__ __forceinline__ T att_dot(const T* a, const T* b, int dh) {
    T s = (T)0;
    for (int c = 0; c < dh; ++c) s += a[c] * b[c];
    return s;
}

// The block's query rows in forward and dq (grid x = B * Hq, y = query
// blocks): its (b, h) index, first row, and the element offsets of its
// query head and of the kv head it reads (h / (Hq / Hkv)).
struct AttQueryBlock {
    int bh, i0;
    long long q0, kv0;
};

__device__ __forceinline__ AttQueryBlock att_query_block(int hq, int hkv, int tq, int tk, int dh) {
    AttQueryBlock a;
    a.bh = blockIdx.x;
    const int b = a.bh / hq, h = a.bh - b * hq;
    a.i0 = blockIdx.y * ATT_BLOCK_ROWS;
    a.q0 = (long long)a.bh * tq * dh;
    a.kv0 = ((long long)b * hkv + h / (hq / hkv)) * tk * dh;
    return a;
}

// Forward. Grid: x = B * Hq, y = query blocks of ATT_BLOCK_ROWS rows.
// Shared: q [ATT_BLOCK_ROWS][Dh], k [ATT_TILE][Dh + 1], v [ATT_TILE][Dh].
template <typename T, int DPL>
__device__ void attn_fwd(int hq, int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k, const T* v,
                         T* o, T* lse) {
    extern __shared__ unsigned char att_smem[];
    T* qs = reinterpret_cast<T*>(att_smem);
    T* ks = qs + ATT_BLOCK_ROWS * dh;
    T* vs = ks + ATT_TILE * (dh + 1);
    const AttQueryBlock qb = att_query_block(hq, hkv, tq, tk, dh);
    const int bh = qb.bh, i0 = qb.i0, off = tk - tq;
    const long long q0 = qb.q0, kv0 = qb.kv0;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    att_stage(qs, dh, q + q0, i0, ATT_BLOCK_ROWS, tq, dh);

    T m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][DPL];
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; ++rr) {
        m[rr] = (T)NEG_INF_F;
        l[rr] = (T)0;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[rr][c] = (T)0;
    }
    // The block's last row sees keys < i0 + ATT_BLOCK_ROWS + off.
    const int kend = min(i0 + ATT_BLOCK_ROWS + off, tk);
    for (int j0 = 0; j0 < kend; j0 += ATT_TILE) {
        __syncthreads();  // the previous tile is consumed (and q staged)
        att_stage(ks, dh + 1, k + kv0, j0, ATT_TILE, tk, dh);
        att_stage(vs, dh, v + kv0, j0, ATT_TILE, tk, dh);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ATT_ROWS; ++rr) {
            const int r = warp * ATT_ROWS + rr, i = i0 + r, j = j0 + lane;
            if (i >= tq) break;  // warp-uniform
            const bool vis = j < tk && j <= i + off;
            const T s = vis ? scale * att_dot(qs + r * dh, ks + lane * (dh + 1), dh) : (T)NEG_INF_F;
            const T mx = att_warp_max(s);
            if (mx == (T)NEG_INF_F) continue;  // warp-uniform: no visible key in this tile
            const T m_new = m[rr] > mx ? m[rr] : mx;
            const T alpha = exp_t(m[rr] - m_new);
            const T p = vis ? exp_t(s - m_new) : (T)0;
            l[rr] = l[rr] * alpha + warp_sum(p);
#pragma unroll
            for (int c = 0; c < DPL; ++c) acc[rr][c] *= alpha;
            for (int jj = 0; jj < ATT_TILE; ++jj) {
                const T pj = __shfl_sync(0xffffffffu, p, jj);
                const T* vr = vs + jj * dh;
#pragma unroll
                for (int c = 0; c < DPL; ++c) {
                    const int d = lane + 32 * c;
                    if (d < dh) acc[rr][c] += pj * vr[d];
                }
            }
            m[rr] = m_new;
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; ++rr) {
        const int i = i0 + warp * ATT_ROWS + rr;
        if (i >= tq) break;
        // Every query sees key 0, so l > 0.
        const T inv = (T)1 / l[rr];
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < dh) o[q0 + (long long)i * dh + d] = acc[rr][c] * inv;
        }
        if (lane == 0) lse[(long long)bh * tq + i] = m[rr] + log_t(l[rr]);
    }
}

// delta[r] = sum_d dO[r, d] * O[r, d], one warp per row (launch::warps(rows)).
template <typename T>
__device__ void attn_delta(long long rows, int dh, const T* d_o, const T* o, T* delta) {
    const long long nwarps = ((long long)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nwarps) {
        T s = (T)0;
        for (int c = lane; c < dh; c += 32) s += d_o[r * dh + c] * o[r * dh + c];
        s = warp_sum(s);
        if (lane == 0) delta[r] = s;
    }
}

// dq = scale * sum_j P_ij (dP_ij - delta_i) k_j, dP = dO v^T.
// Grid and rows as forward. Shared: q, dO [ATT_BLOCK_ROWS][Dh], k, v [ATT_TILE][Dh + 1].
template <typename T, int DPL>
__device__ void attn_bwd_dq(int hq, int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k, const T* v,
                            const T* d_o, const T* lse, const T* delta, T* dq) {
    extern __shared__ unsigned char att_smem[];
    T* qs = reinterpret_cast<T*>(att_smem);
    T* dos = qs + ATT_BLOCK_ROWS * dh;
    T* ks = dos + ATT_BLOCK_ROWS * dh;
    T* vs = ks + ATT_TILE * (dh + 1);
    const AttQueryBlock qb = att_query_block(hq, hkv, tq, tk, dh);
    const int bh = qb.bh, i0 = qb.i0, off = tk - tq;
    const long long q0 = qb.q0, kv0 = qb.kv0;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    att_stage(qs, dh, q + q0, i0, ATT_BLOCK_ROWS, tq, dh);
    att_stage(dos, dh, d_o + q0, i0, ATT_BLOCK_ROWS, tq, dh);

    T acc[ATT_ROWS][DPL], row_lse[ATT_ROWS], row_delta[ATT_ROWS];
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; ++rr) {
        const int i = i0 + warp * ATT_ROWS + rr;
        row_lse[rr] = i < tq ? lse[(long long)bh * tq + i] : (T)0;
        row_delta[rr] = i < tq ? delta[(long long)bh * tq + i] : (T)0;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[rr][c] = (T)0;
    }
    const int kend = min(i0 + ATT_BLOCK_ROWS + off, tk);
    for (int j0 = 0; j0 < kend; j0 += ATT_TILE) {
        __syncthreads();
        att_stage(ks, dh + 1, k + kv0, j0, ATT_TILE, tk, dh);
        att_stage(vs, dh + 1, v + kv0, j0, ATT_TILE, tk, dh);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ATT_ROWS; ++rr) {
            const int r = warp * ATT_ROWS + rr, i = i0 + r, j = j0 + lane;
            if (i >= tq) break;
            const bool vis = j < tk && j <= i + off;
            T ds = (T)0;
            if (vis) {
                const T p = exp_t(scale * att_dot(qs + r * dh, ks + lane * (dh + 1), dh) - row_lse[rr]);
                const T dp = att_dot(dos + r * dh, vs + lane * (dh + 1), dh);
                ds = p * (dp - row_delta[rr]);
            }
            for (int jj = 0; jj < ATT_TILE; ++jj) {
                const T dsj = __shfl_sync(0xffffffffu, ds, jj);
                const T* kr = ks + jj * (dh + 1);
#pragma unroll
                for (int c = 0; c < DPL; ++c) {
                    const int d = lane + 32 * c;
                    if (d < dh) acc[rr][c] += dsj * kr[d];
                }
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; ++rr) {
        const int i = i0 + warp * ATT_ROWS + rr;
        if (i >= tq) break;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < dh) dq[q0 + (long long)i * dh + d] = scale * acc[rr][c];
        }
    }
}

// dv_j = sum_{h in group, i} P_ij dO_i,  dk_j = scale * sum_{h, i} P_ij (dP_ij - delta_i) q_i.
// Grid: x = B * Hkv, y = key blocks of ATT_BLOCK_ROWS keys (one key per warp row).
// Shared: k, v [ATT_BLOCK_ROWS][Dh], q, dO [ATT_TILE][Dh + 1], lse, delta [ATT_TILE].
template <typename T, int DPL>
__device__ void attn_bwd_dkv(int hq, int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k, const T* v,
                             const T* d_o, const T* lse, const T* delta, T* dk, T* dv) {
    extern __shared__ unsigned char att_smem[];
    T* kst = reinterpret_cast<T*>(att_smem);
    T* vst = kst + ATT_BLOCK_ROWS * dh;
    T* qs = vst + ATT_BLOCK_ROWS * dh;
    T* dos = qs + ATT_TILE * (dh + 1);
    T* ls = dos + ATT_TILE * (dh + 1);
    T* dl = ls + ATT_TILE;
    const int bk = blockIdx.x, b = bk / hkv, hk = bk - b * hkv, group = hq / hkv;
    const long long kv0 = (long long)bk * tk * dh;
    const int j0 = blockIdx.y * ATT_BLOCK_ROWS, off = tk - tq;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    att_stage(kst, dh, k + kv0, j0, ATT_BLOCK_ROWS, tk, dh);
    att_stage(vst, dh, v + kv0, j0, ATT_BLOCK_ROWS, tk, dh);

    T adk[ATT_ROWS][DPL], adv[ATT_ROWS][DPL];
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; ++rr) {
#pragma unroll
        for (int c = 0; c < DPL; ++c) adk[rr][c] = adv[rr][c] = (T)0;
    }
    // Key j0 is first seen by query j0 - off; earlier queries see none of the block.
    const int istart = max(j0 - off, 0);
    for (int g = 0; g < group; ++g) {
        const long long bh = (long long)b * hq + hk * group + g;
        const long long q0 = bh * tq * dh;
        for (int i0 = istart; i0 < tq; i0 += ATT_TILE) {
            __syncthreads();
            att_stage(qs, dh + 1, q + q0, i0, ATT_TILE, tq, dh);
            att_stage(dos, dh + 1, d_o + q0, i0, ATT_TILE, tq, dh);
            if (threadIdx.x < ATT_TILE) {
                const int i = i0 + threadIdx.x;
                ls[threadIdx.x] = i < tq ? lse[bh * tq + i] : (T)0;
                dl[threadIdx.x] = i < tq ? delta[bh * tq + i] : (T)0;
            }
            __syncthreads();
#pragma unroll
            for (int rr = 0; rr < ATT_ROWS; ++rr) {
                const int r = warp * ATT_ROWS + rr, j = j0 + r, i = i0 + lane;
                if (j >= tk) break;
                const bool vis = i < tq && j <= i + off;
                T p = (T)0, ds = (T)0;
                if (vis) {
                    p = exp_t(scale * att_dot(qs + lane * (dh + 1), kst + r * dh, dh) - ls[lane]);
                    const T dp = att_dot(dos + lane * (dh + 1), vst + r * dh, dh);
                    ds = p * (dp - dl[lane]);
                }
                for (int ii = 0; ii < ATT_TILE; ++ii) {
                    const T pi = __shfl_sync(0xffffffffu, p, ii);
                    const T dsi = __shfl_sync(0xffffffffu, ds, ii);
                    const T* qr = qs + ii * (dh + 1);
                    const T* dor = dos + ii * (dh + 1);
#pragma unroll
                    for (int c = 0; c < DPL; ++c) {
                        const int d = lane + 32 * c;
                        if (d < dh) {
                            adv[rr][c] += pi * dor[d];
                            adk[rr][c] += dsi * qr[d];
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; ++rr) {
        const int j = j0 + warp * ATT_ROWS + rr;
        if (j >= tk) break;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int d = lane + 32 * c;
            if (d < dh) {
                dk[kv0 + (long long)j * dh + d] = scale * adk[rr][c];
                dv[kv0 + (long long)j * dh + d] = adv[rr][c];
            }
        }
    }
}

#define ATTN_FWD(NAME, T, DPL)                                                                                \
    extern "C" __global__ void NAME(int hq, int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k, \
                                    const T* v, T* o, T* lse) {                                               \
        attn_fwd<T, DPL>(hq, hkv, tq, tk, dh, scale, q, k, v, o, lse);                                        \
    }
ATTN_FWD(attn_fwd_f32_d64, float, 2)
ATTN_FWD(attn_fwd_f32_d128, float, 4)
ATTN_FWD(attn_fwd_f32_d256, float, 8)
ATTN_FWD(attn_fwd_f64_d64, double, 2)
ATTN_FWD(attn_fwd_f64_d128, double, 4)
ATTN_FWD(attn_fwd_f64_d256, double, 8)

#define ATTN_DELTA(NAME, T)                                                                                 \
    extern "C" __global__ void NAME(long long rows, int dh, const T* d_o, const T* o, T* delta) {          \
        attn_delta<T>(rows, dh, d_o, o, delta);                                                             \
    }
ATTN_DELTA(attn_delta_f32, float)
ATTN_DELTA(attn_delta_f64, double)

#define ATTN_BWD_DQ(NAME, T, DPL)                                                                                \
    extern "C" __global__ void NAME(int hq, int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k,    \
                                    const T* v, const T* d_o, const T* lse, const T* delta, T* dq) {             \
        attn_bwd_dq<T, DPL>(hq, hkv, tq, tk, dh, scale, q, k, v, d_o, lse, delta, dq);                           \
    }
ATTN_BWD_DQ(attn_bwd_dq_f32_d64, float, 2)
ATTN_BWD_DQ(attn_bwd_dq_f32_d128, float, 4)
ATTN_BWD_DQ(attn_bwd_dq_f32_d256, float, 8)
ATTN_BWD_DQ(attn_bwd_dq_f64_d64, double, 2)
ATTN_BWD_DQ(attn_bwd_dq_f64_d128, double, 4)
ATTN_BWD_DQ(attn_bwd_dq_f64_d256, double, 8)

#define ATTN_BWD_DKV(NAME, T, DPL)                                                                               \
    extern "C" __global__ void NAME(int hq, int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k,    \
                                    const T* v, const T* d_o, const T* lse, const T* delta, T* dk, T* dv) {      \
        attn_bwd_dkv<T, DPL>(hq, hkv, tq, tk, dh, scale, q, k, v, d_o, lse, delta, dk, dv);                      \
    }
ATTN_BWD_DKV(attn_bwd_dkv_f32_d64, float, 2)
ATTN_BWD_DKV(attn_bwd_dkv_f32_d128, float, 4)
ATTN_BWD_DKV(attn_bwd_dkv_f32_d256, float, 8)
ATTN_BWD_DKV(attn_bwd_dkv_f64_d64, double, 2)
ATTN_BWD_DKV(attn_bwd_dkv_f64_d128, double, 4)
ATTN_BWD_DKV(attn_bwd_dkv_f64_d256, double, 8)
