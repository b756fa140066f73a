// fibers.cpp: runs one kernel launch of the emulated device. A block's
// threads are fibers on the calling OS thread (a stack each, switched by
// the few instructions of emu_switch below: ucontext's swapcontext makes a
// system call per switch, which took 95% of the time), scheduled round
// robin: a thread runs until it waits at a block or warp barrier (a
// __syncthreads, a shuffle, an mma), then the next one runs. Blocks run one
// after the other. Far cheaper than emu.h's OS thread per CUDA thread, which
// the kernel checks use, at the price of atomics never contending.
//
// A launch whose threads all wait on barriers that can no longer complete
// (a __syncthreads some threads skip) is reported as a deadlock instead of
// hanging.
#define EMU_FIBERS
#include "emu.h"
#include "fibers.h"

#include <sys/mman.h>

#include <cstdio>
#include <string>

// emu_switch(&save, next): saves the callee-saved registers on the current
// stack, stores the stack pointer in `save` and resumes the context whose
// stack pointer is `next` (x86-64 System V). The SSE and x87 control words
// are not switched: no kernel changes rounding modes.
extern "C" void emu_switch(void** save, void* next);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

namespace {

struct FiberBarrier {
    unsigned expected = 0, arrived = 0;
    uint64_t generation = 0;
};

struct Fiber {
    void* sp = nullptr;  // saved stack pointer while switched out
    bool done = false;
    EmuDim tid;
};

constexpr size_t STACK_BYTES = 256 << 10;
constexpr unsigned MAX_THREADS = 1024;

void* scheduler_sp = nullptr;
std::vector<Fiber> fibers;
unsigned current = 0;
FiberBarrier block_barrier;
std::vector<FiberBarrier> warp_barriers;
uint64_t progress = 0;  // arrivals, completed barriers, finished threads
const std::function<void()>* running_kernel = nullptr;
char* stacks = nullptr;

void yield_to_scheduler() { emu_switch(&fibers[current].sp, scheduler_sp); }

void wait_at(FiberBarrier& b) {
    const uint64_t g = b.generation;
    ++progress;
    if (++b.arrived == b.expected) {
        b.arrived = 0;
        ++b.generation;
        return;
    }
    while (b.generation == g) yield_to_scheduler();
}

[[noreturn]] void fiber_entry() {
    (*running_kernel)();
    fibers[current].done = true;
    ++progress;
    emu_switch(&fibers[current].sp, scheduler_sp);
    __builtin_unreachable();  // a finished fiber is never resumed
}

// A fresh stack whose first emu_switch "returns" into fiber_entry: six
// zero registers, then fiber_entry's address at a 16-byte aligned slot (so
// the stack is aligned as after a call).
void* fresh_stack(char* base, size_t bytes) {
    auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(base + bytes) & ~uintptr_t(15));
    uint64_t* sp = top - 2;  // 16-aligned slot for the return address
    sp[0] = reinterpret_cast<uint64_t>(&fiber_entry);
    sp[1] = 0;
    sp -= 6;  // r15 r14 r13 r12 rbx rbp
    for (int i = 0; i < 6; ++i) sp[i] = 0;
    return sp;
}

}  // namespace

void emu_block_wait() { wait_at(block_barrier); }
void emu_warp_wait(unsigned warp) { wait_at(warp_barriers[warp]); }

std::string emu_fiber_launch(EmuDim grid, EmuDim block, size_t smem, const std::function<void()>& kernel) {
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > MAX_THREADS) return "block of " + std::to_string(threads) + " threads";
    if (block.y != 1 || block.z != 1) return "the emulated device runs 1-D blocks only";
    if (!stacks) {
        void* p = mmap(nullptr, STACK_BYTES * MAX_THREADS, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return "cannot map fiber stacks";
        stacks = static_cast<char*>(p);
    }
    gridDim = grid;
    blockDim = block;
    running_kernel = &kernel;
    const unsigned nwarps = (threads + 31) / 32;
    std::vector<unsigned char> dynamic(smem == 0 ? 1 : smem);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                // Uninitialised shared memory, as on the device: a pattern.
                std::memset(dynamic.data(), 0x7f, dynamic.size());
                emu_dynamic_smem = smem == 0 ? nullptr : dynamic.data();
                block_barrier = FiberBarrier{threads};
                warp_barriers.assign(nwarps, FiberBarrier{});
                for (unsigned w = 0; w < nwarps; ++w) warp_barriers[w].expected = std::min(32u, threads - 32 * w);
                emu_sync_state.slots.assign(nwarps, {});
                emu_sync_state.mma.assign(nwarps, {});
                fibers.assign(threads, Fiber{});
                for (unsigned t = 0; t < threads; ++t) {
                    Fiber& f = fibers[t];
                    f.sp = fresh_stack(stacks + size_t(t) * STACK_BYTES, STACK_BYTES);
                    f.tid = EmuDim{t, 0, 0};
                }
                blockIdx = EmuDim{bx, by, bz};
                unsigned live = threads;
                while (live > 0) {
                    const uint64_t before = progress;
                    for (unsigned t = 0; t < threads; ++t) {
                        if (fibers[t].done) continue;
                        current = t;
                        threadIdx = fibers[t].tid;
                        emu_switch(&scheduler_sp, fibers[t].sp);
                        if (fibers[t].done) --live;
                    }
                    if (live > 0 && progress == before) {
                        return "deadlock in block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " +
                               std::to_string(bz) + "): " + std::to_string(live) +
                               " threads wait at barriers that cannot complete";
                    }
                }
            }
    emu_dynamic_smem = nullptr;
    return "";
}
