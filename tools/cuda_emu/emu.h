// emu.h: runs this repository's CUDA kernel sources on the CPU, for machines
// without a GPU. Every CUDA thread is an OS thread; __syncthreads() is a
// barrier over the block, and the warp shuffles exchange values through a
// per-warp slot array between two barriers over the warp, so warp-synchronous
// code (reductions, broadcasts) runs as written. Blocks run one after the
// other. Shared memory: `run.sh` rewrites `__shared__` arrays into statics
// (one block at a time, so that is per-block memory) and the dynamic
// `extern __shared__` array into a pointer to an exactly sized heap buffer,
// so AddressSanitizer catches out-of-bounds accesses to it.
//
// The threads of a block start together and run concurrently, so atomics
// (atomicAdd below, a real atomic read-modify-write) are exercised under
// contention within a block.
//
// What this checks: indexing, tiling, masking, the arithmetic and the warp
// and block collectives. What it cannot: timing, occupancy, register limits,
// races between threads that the kernels would not synchronise anyway (it
// does not model a relaxed memory model), contention between blocks (they
// run one after the other), the device's exact math library (expf, logf,
// tanhf, erff are the host's, within an ulp or two of CUDA's), its
// contraction of a * b + c into fma (the host build does not contract), or
// the NaN encodings its conversions produce.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct EmuDim {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local EmuDim threadIdx, blockIdx;
inline EmuDim blockDim, gridDim;
inline unsigned char* emu_dynamic_smem = nullptr;

struct EmuBlockSync {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<std::array<uint64_t, 32>> slots;
    struct MmaFragments {
        unsigned a[4], b[2];
        float c[4];
    };
    std::vector<std::array<MmaFragments, 32>> mma;  // per warp, per lane
};
inline EmuBlockSync emu_sync_state;

#define __global__
#define __device__
#define __launch_bounds__(...)
#define __forceinline__ inline

// The block and warp barriers: OS-thread barriers here; the emulated device
// (device/, which defines EMU_FIBERS) runs a block's threads as fibers on
// one OS thread and provides its own.
#ifdef EMU_FIBERS
void emu_block_wait();
void emu_warp_wait(unsigned warp);
#else
inline void emu_block_wait() { emu_sync_state.block->arrive_and_wait(); }
inline void emu_warp_wait(unsigned warp) { emu_sync_state.warps[warp]->arrive_and_wait(); }
#endif

inline void __syncthreads() { emu_block_wait(); }

template <typename T>
T emu_shfl(T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 64 bits");
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    emu_sync_state.slots[w][lane] = bits;
    emu_warp_wait(w);
    const uint64_t r = emu_sync_state.slots[w][src_lane & 31];
    emu_warp_wait(w);
    T out;
    std::memcpy(&out, &r, sizeof(T));
    return out;
}
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
    return emu_shfl(v, src);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask) {
    return emu_shfl(v, (int)(threadIdx.x % 32) ^ mask);
}

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline float __uint_as_float(unsigned i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline long long __double_as_longlong(double d) {
    long long i;
    std::memcpy(&i, &d, 8);
    return i;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

// Correctly rounded single operations (the host's IEEE float arithmetic;
// run.sh compiles without FMA contraction, so each is rounded on its own).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }

// atomicAdd: an atomic read-modify-write, as on the device (the threads of a
// block really run concurrently here); returns the old value.
template <typename T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
using std::max;
using std::min;

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, modelled from the PTX
// ISA (section 9.7.14.5.8, "Matrix Fragments for mma.m16n8k16 with floating
// point type"), independently of the kernels' fragment code: the 32 lanes'
// fragments are gathered through a per-warp exchange (between two barriers
// over the warp, like the shuffles), placed into A (16x16), B (16x8) and
// C (16x8) by the documented row/column formulas, and each lane computes its
// own elements of D = A B + C. With groupID = lane >> 2, tig = lane % 4, and
// the elements of each 32-bit register numbered low half first:
//   A (a0..a7, 4 registers): row = groupID for i in {0,1,4,5}, else groupID + 8;
//                            col = tig * 2 + (i & 1), plus 8 for i >= 4;
//   B (b0..b3, 2 registers): row = tig * 2 + (i & 1), plus 8 for i >= 2; col = groupID;
//   C/D (c0..c3, f32):       row = groupID for i < 2, else groupID + 8; col = tig * 2 + (i & 1).
// Each sum of 16 exact bf16 products and c is formed in double and rounded
// once to f32. The device's adder is not specified that precisely (its
// alignment and rounding of the partial sums may differ in the last bits).
#define MMA_BF16_16816_EMULATED
inline void mma_bf16_16816(float d[4], const unsigned a[4], const unsigned b[2], const float c[4]) {
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    auto& frags = emu_sync_state.mma[w];
    auto& mine = frags[lane];
    std::copy(a, a + 4, mine.a);
    std::copy(b, b + 2, mine.b);
    std::copy(c, c + 4, mine.c);
    emu_warp_wait(w);
    auto bf16 = [](unsigned reg, int i) {  // element i (0 = low half) of a register
        const unsigned bits = ((reg >> (16 * (i & 1))) & 0xffffu) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        return (double)f;
    };
    double A[16][16], B[16][8], C[16][8];
    int seen_a[16][16] = {}, seen_b[16][8] = {}, seen_c[16][8] = {};
    for (int l = 0; l < 32; ++l) {
        const int gid = l >> 2, tig = l % 4;
        for (int i = 0; i < 8; ++i) {
            const int row = (i < 2 || (i >= 4 && i < 6)) ? gid : gid + 8;
            const int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = bf16(frags[l].a[i / 2], i);
            ++seen_a[row][col];
        }
        for (int i = 0; i < 4; ++i) {
            const int row = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0);
            B[row][gid] = bf16(frags[l].b[i / 2], i);
            ++seen_b[row][gid];
        }
        for (int i = 0; i < 4; ++i) {
            const int row = i < 2 ? gid : gid + 8, col = tig * 2 + (i & 1);
            C[row][col] = frags[l].c[i];
            ++seen_c[row][col];
        }
    }
    emu_warp_wait(w);  // every lane has read the fragments
    // The model itself must place every element exactly once.
    for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col)
            if (seen_a[r][col] != 1 || (col < 8 && (seen_b[r][col] != 1 || seen_c[r][col] != 1))) std::abort();
    const int gid = lane >> 2, tig = lane % 4;
    for (int i = 0; i < 4; ++i) {
        const int row = i < 2 ? gid : gid + 8, col = tig * 2 + (i & 1);
        double sum = C[row][col];
        for (int kk = 0; kk < 16; ++kk) sum += A[row][kk] * B[kk][col];
        d[i] = (float)sum;
    }
}

#ifndef EMU_FIBERS
// Runs `kernel` over `grid` blocks of `block` threads with `smem` bytes of
// dynamic shared memory (filled with a pattern, as the device leaves it
// uninitialised).
inline void emu_launch(EmuDim grid, EmuDim block, size_t smem, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x * block.y * block.z;
    const unsigned nwarps = (threads + 31) / 32;
    for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by) {
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            std::unique_ptr<unsigned char[]> dyn(new unsigned char[smem == 0 ? 1 : smem]);
            std::memset(dyn.get(), 0x7f, smem);
            emu_dynamic_smem = smem == 0 ? nullptr : dyn.get();
            emu_sync_state.block = std::make_unique<std::barrier<>>(threads);
            emu_sync_state.warps.clear();
            for (unsigned w = 0; w < nwarps; ++w)
                emu_sync_state.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - 32 * w)));
            emu_sync_state.slots.assign(nwarps, {});
            emu_sync_state.mma.assign(nwarps, {});
            // The block's threads start together (as a block does), so that
            // unsynchronised updates (atomics) really overlap.
            std::barrier<> start(threads);
            std::vector<std::thread> ts;
            ts.reserve(threads);
            for (unsigned t = 0; t < threads; ++t) {
                ts.emplace_back([=, &kernel, &start] {
                    threadIdx = EmuDim{t, 0, 0};
                    blockIdx = EmuDim{bx, by, bz};
                    start.arrive_and_wait();
                    kernel();
                });
            }
            for (auto& th : ts) th.join();
        }
    }
}
#endif
