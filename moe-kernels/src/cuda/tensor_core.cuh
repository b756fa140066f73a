// tensor_core.cuh: bf16 tensor-core building blocks (sm_80+), compiled in
// front of the sources that use them (attention_tc.cu, grouped_seg.cu;
// moe_kernels::cuda prepends it after common.cuh). The mma is guarded by the
// architecture so a source that also has SIMT kernels still compiles for
// older devices; its tensor-core kernels are guarded the same way.

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define TENSOR_CORES 1
#endif

// D = A B + C for a 16x16 bf16 A (row-major), 16x8 bf16 B (column-major) and
// 16x8 f32 C/D, one fragment per lane (layouts: PTX ISA, section 9.7.14.5.8
// "Matrix Fragments for mma.m16n8k16 with floating point type"). The CPU
// emulator (tools/cuda_emu/emu.h) defines its own model of this instruction.
#if defined(TENSOR_CORES) && !defined(MMA_BF16_16816_EMULATED)
__device__ __forceinline__ void mma_bf16_16816(float d[4], const unsigned a[4], const unsigned b[2],
                                               const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
}
#endif

// Shared tiles hold bf16 pairs in 32-bit words: element (r, c) is half
// (c & 1) (low half first, as the mma registers pack them) of word
// r * ws + c / 2, ws the words of a (padded) row.

__device__ __forceinline__ unsigned tc_elem(const unsigned* s, int ws, int r, int c) {
    return (s[r * ws + (c >> 1)] >> ((c & 1) * 16)) & 0xffffu;
}

__device__ __forceinline__ unsigned tc_pack(float lo, float hi) {
    return (unsigned)f32_to_bf16(lo) | ((unsigned)f32_to_bf16(hi) << 16);
}

// Fragment lanes: g = lane / 4 ("groupID"), t = lane % 4 ("threadID_in_group").

// A = tile rows r0..r0+15, columns k0..k0+15. A register holds the pair of
// columns (2t, 2t+1) of one row: a0 row g, a1 row g+8, a2 row g at +8
// columns, a3 row g+8 at +8 columns.
__device__ __forceinline__ void tc_load_a(unsigned a[4], const unsigned* s, int ws, int r0, int k0, int g, int t) {
    const unsigned* p = s + (r0 + g) * ws + (k0 >> 1) + t;
    a[0] = p[0];
    a[1] = p[8 * ws];
    a[2] = p[4];
    a[3] = p[8 * ws + 4];
}

// B[k][n] = tile[n0 + n][k0 + k]: the tile's rows are B's columns (K in
// Q K^T). b0 holds rows k = 2t, 2t+1 of column g, b1 rows 2t+8, 2t+9: a pair
// along a tile row, one word.
__device__ __forceinline__ void tc_load_b_from_rows(unsigned b[2], const unsigned* s, int ws, int n0, int k0, int g,
                                                    int t) {
    const unsigned* p = s + (n0 + g) * ws + (k0 >> 1) + t;
    b[0] = p[0];
    b[1] = p[4];
}

// B[k][n] = tile[k0 + k][n0 + n]: the tile's rows are B's rows (V in P V).
// The pair (2t, 2t+1) spans two tile rows, so it is packed from two halves.
__device__ __forceinline__ void tc_load_b_from_cols(unsigned b[2], const unsigned* s, int ws, int k0, int n0, int g,
                                                    int t) {
    const int k = k0 + 2 * t, n = n0 + g;
    b[0] = tc_elem(s, ws, k, n) | (tc_elem(s, ws, k + 1, n) << 16);
    b[1] = tc_elem(s, ws, k + 8, n) | (tc_elem(s, ws, k + 9, n) << 16);
}

