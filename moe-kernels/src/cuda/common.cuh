// common.cuh: prepended by the host to every kernel source before NVRTC
// compiles it (no #include: NVRTC then needs no toolkit headers).
//
// Conventions of every kernel in this directory:
// - element counts and offsets are `long long` (tensors may exceed 2^31
//   elements); row counts and row lengths are `int` where a grid dimension
//   or a block loop bounds them;
// - bf16 travels as its raw 16 bits (`bf16_t`) and is widened to f32 for
//   arithmetic; statistics (sums, max, logsumexp, rstd) are always f32;
// - grid-stride loops: a kernel is correct for any grid size >= 1;
// - row kernels (`*_rows_*`) run one block per row, blockDim.x a multiple
//   of 32 and at most 1024 (block_reduce_* below needs that).

typedef unsigned short bf16_t;

// Spelled by bits: INFINITY/NAN come from math.h, which NVRTC may not have.
#define NEG_INF_F __int_as_float(0xff800000)
#define NAN_F __int_as_float(0x7fc00000)

#define MAX_RANK 8

// A strided view: element i (row-major over dims) lives at
// offset + sum_d idx_d * strides[d]. Mirrors moe_kernels::cuda::StridedArg
// (#[repr(C)]: int, int, long long, long long[8], long long[8] = 144 bytes).
struct Strided {
    int rank;
    int pad_;
    long long offset;
    long long dims[MAX_RANK];
    long long strides[MAX_RANK];
};

// Storage offset of logical element i: peel the row-major index from the
// last dim to the first.
__device__ __forceinline__ long long strided_offset(const Strided& s, long long i) {
    long long off = s.offset;
    for (int d = s.rank - 1; d >= 0; --d) {
        long long n = s.dims[d];
        long long q = i / n;
        off += (i - q * n) * s.strides[d];
        i = q;
    }
    return off;
}

__device__ __forceinline__ float bf16_to_f32(bf16_t h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN.
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (bf16_t)((u >> 16) | 0x40u);
    }
    unsigned int rounding = 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)((u + rounding) >> 16);
}

// The ranking of topk, max and argmax (as on the CPU): larger first, NaN
// above every number, equal values (and NaNs among themselves) by lower
// index. A strict total order on (value, index): whether (a, ia) ranks
// strictly before (b, ib).
template <typename T>
__device__ __forceinline__ bool ranks_before(T a, long long ia, T b, long long ib) {
    bool na = a != a, nb = b != b;
    if (na != nb) return na;
    if (!na && a != b) return a > b;
    return ia < ib;
}

// exp and log by element type (float or double kernels written once).
__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }
__device__ __forceinline__ float log_t(float x) { return logf(x); }
__device__ __forceinline__ double log_t(double x) { return log(x); }

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// Sum over the 32 lanes of a warp (float or double); every lane gets it.
// All 32 lanes must call it.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum of `v` (float or double) over the block; every thread gets the
// result. The order of the additions depends only on blockDim.x, so results
// are deterministic. Contains __syncthreads(): call from all threads of the
// block.
template <typename T>
__device__ T block_reduce_sum(T v) {
    __shared__ T partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int nwarps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < nwarps) ? partial[threadIdx.x] : (T)0;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) partial[0] = v;
    __syncthreads();
    return partial[0];
}

// Max of `v` over the block (-inf for an empty row); every thread gets it.
__device__ float block_reduce_max(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int nwarps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < nwarps) ? partial[threadIdx.x] : NEG_INF_F;
    if (warp == 0) v = warp_max(v);
    if (threadIdx.x == 0) partial[0] = v;
    __syncthreads();
    return partial[0];
}
