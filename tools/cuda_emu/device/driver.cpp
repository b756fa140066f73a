// driver.cpp: the CUDA driver API subset that cudarc and moe-tensor call,
// over host memory, for the emulated device (libcuda.so of build.sh).
//
// - One device, "moe-cpt emulated device", compute capability 9.0.
// - Device memory is host memory; every allocation has guard bytes on both
//   sides, checked after every launch, so a kernel writing outside its
//   buffer fails the launch. Copies, memsets and kernel pointer arguments
//   must lie inside a live allocation.
// - Streams and events exist for the API's sake: work runs when it is
//   queued, so the host never observes an unfinished kernel.
// - Kernels come from the registry (registry.h); a module is the source
//   name and text hash the emulated NVRTC writes in place of PTX.
// Errors print one line to stderr saying what was wrong, then return the
// CUDA error code the real driver would.
#include "registry.h"
#include "fibers.h"
#include "text_hash.h"

#define EMU_FIBERS
#include "emu.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

namespace {

enum : int {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    INVALID_DEVICE = 101,
    INVALID_IMAGE = 200,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    LAUNCH_OUT_OF_RESOURCES = 701,
    LAUNCH_FAILED = 719,
    NOT_SUPPORTED = 801,
};

constexpr size_t GUARD = 64;
constexpr unsigned char GUARD_BYTE = 0xa5;
constexpr size_t TOTAL_MEMORY = size_t(16) << 30;
constexpr int DEFAULT_MAX_DYNAMIC_SMEM = 48 << 10;
constexpr int OPTIN_MAX_DYNAMIC_SMEM = 227 << 10;

std::recursive_mutex device_lock;  // one launch / copy at a time

struct Allocation {
    size_t bytes;
    unsigned char* base;  // guard, then `bytes` usable bytes, then guard
};
std::map<uintptr_t, Allocation> allocations;  // by usable address
size_t allocated_bytes = 0;

int fail(int code, const std::string& what) {
    std::fprintf(stderr, "[emulated CUDA device] %s\n", what.c_str());
    return code;
}

// The live allocation holding [p, p + n), or nullptr.
const Allocation* holding(uintptr_t p, size_t n) {
    auto it = allocations.upper_bound(p);
    if (it == allocations.begin()) return nullptr;
    --it;
    if (p < it->first || p - it->first > it->second.bytes || n > it->second.bytes - (p - it->first)) return nullptr;
    return &it->second;
}

bool guards_intact(const Allocation& a) {
    for (size_t i = 0; i < GUARD; ++i)
        if (a.base[i] != GUARD_BYTE || a.base[GUARD + a.bytes + i] != GUARD_BYTE) return false;
    return true;
}

struct Module {
    std::string source;
};
struct Function {
    std::string source, name;
    EmuBind bind;
    int max_dynamic_smem = DEFAULT_MAX_DYNAMIC_SMEM;
};

struct Source {
    unsigned long long hash;
    std::map<std::string, EmuBind> kernels;
};
std::map<std::string, Source>& sources() {
    static std::map<std::string, Source> s;
    return s;
}

int primary_context_tag;
thread_local void* current_context = nullptr;

}  // namespace

bool emu_register(const char* source, unsigned long long text_hash, std::vector<EmuKernel> kernels) {
    Source& s = sources()[source];
    s.hash = text_hash;
    for (auto& k : kernels) s.kernels[k.name] = std::move(k.bind);
    return true;
}

// For the emulated cuBLAS: whether [p, p + n) lies in a live allocation.
extern "C" int emuDeviceRangeValid(unsigned long long p, size_t n) {
    std::lock_guard<std::recursive_mutex> g(device_lock);
    return holding(p, n) != nullptr;
}

extern "C" {

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

CUresult cuInit(unsigned) { return SUCCESS; }
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return SUCCESS;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return SUCCESS;
}
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return INVALID_DEVICE;
    *d = 0;
    return SUCCESS;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    std::snprintf(name, len, "moe-cpt emulated device");
    return SUCCESS;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = TOTAL_MEMORY;
    return SUCCESS;
}
CUresult cuDeviceGetAttribute(int* v, int attribute, CUdevice) {
    switch (attribute) {
        case 1: *v = 1024; break;                       // max threads per block
        case 2: *v = 1024; break;                       // max block dim x
        case 3: case 4: *v = 1024; break;               // y, z
        case 5: *v = 2147483647; break;                 // max grid dim x
        case 6: case 7: *v = 65535; break;              // y, z
        case 8: *v = DEFAULT_MAX_DYNAMIC_SMEM; break;   // shared memory per block
        case 10: *v = 32; break;                        // warp size
        case 16: *v = 132; break;                       // multiprocessors
        case 75: *v = 9; break;                         // compute capability
        case 76: *v = 0; break;
        case 97: *v = OPTIN_MAX_DYNAMIC_SMEM; break;    // opt-in shared memory per block
        case 115: *v = 1; break;                        // memory pools
        default: *v = 0;
    }
    return SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice) {
    *ctx = &primary_context_tag;
    return SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return SUCCESS; }
CUresult cuCtxSetCurrent(void* ctx) {
    current_context = ctx;
    return SUCCESS;
}
CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = current_context;
    return SUCCESS;
}
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return SUCCESS;
}
CUresult cuCtxSynchronize() { return SUCCESS; }
CUresult cuCtxPushCurrent_v2(void* ctx) { return cuCtxSetCurrent(ctx); }
CUresult cuCtxPopCurrent_v2(void** ctx) {
    if (ctx) *ctx = current_context;
    return SUCCESS;
}

CUresult cuStreamCreate(void** stream, unsigned) {
    *stream = new int(0);
    return SUCCESS;
}
CUresult cuStreamCreateWithPriority(void** stream, unsigned flags, int) { return cuStreamCreate(stream, flags); }
CUresult cuStreamDestroy_v2(void* stream) {
    delete static_cast<int*>(stream);
    return SUCCESS;
}
CUresult cuStreamSynchronize(void*) { return SUCCESS; }
CUresult cuStreamQuery(void*) { return SUCCESS; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return SUCCESS; }

CUresult cuEventCreate(void** event, unsigned) {
    *event = new int(0);
    return SUCCESS;
}
CUresult cuEventDestroy_v2(void* event) {
    delete static_cast<int*>(event);
    return SUCCESS;
}
CUresult cuEventRecord(void*, void*) { return SUCCESS; }
CUresult cuEventRecordWithFlags(void*, void*, unsigned) { return SUCCESS; }
CUresult cuEventSynchronize(void*) { return SUCCESS; }
CUresult cuEventQuery(void*) { return SUCCESS; }
CUresult cuEventElapsedTime(float* ms, void*, void*) {
    *ms = 0.0f;
    return SUCCESS;
}
CUresult cuEventElapsedTime_v2(float* ms, void* a, void* b) { return cuEventElapsedTime(ms, a, b); }

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    std::lock_guard<std::recursive_mutex> g(device_lock);
    if (allocated_bytes + bytes > TOTAL_MEMORY) return OUT_OF_MEMORY;
    auto* base = static_cast<unsigned char*>(std::malloc(bytes + 2 * GUARD));
    if (!base) return OUT_OF_MEMORY;
    std::memset(base, GUARD_BYTE, GUARD);
    std::memset(base + GUARD, 0xcd, bytes);  // garbage, as fresh device memory
    std::memset(base + GUARD + bytes, GUARD_BYTE, GUARD);
    *p = reinterpret_cast<uintptr_t>(base + GUARD);
    allocations[*p] = Allocation{bytes, base};
    allocated_bytes += bytes;
    return SUCCESS;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void*) { return cuMemAlloc_v2(p, bytes); }
CUresult cuMemFree_v2(CUdeviceptr p) {
    std::lock_guard<std::recursive_mutex> g(device_lock);
    auto it = allocations.find(p);
    if (it == allocations.end()) return fail(INVALID_VALUE, "cuMemFree of " + std::to_string(p) + ": not an allocation");
    if (!guards_intact(it->second)) std::fprintf(stderr, "[emulated CUDA device] guard bytes of a freed buffer were overwritten\n");
    allocated_bytes -= it->second.bytes;
    std::free(it->second.base);
    allocations.erase(it);
    return SUCCESS;
}
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    *free_bytes = TOTAL_MEMORY - allocated_bytes;
    *total = TOTAL_MEMORY;
    return SUCCESS;
}

static CUresult copy(void* dst, const void* src, size_t n, bool dst_dev, bool src_dev, const char* op) {
    std::lock_guard<std::recursive_mutex> g(device_lock);
    if (dst_dev && !holding(reinterpret_cast<uintptr_t>(dst), n))
        return fail(INVALID_VALUE, std::string(op) + ": destination range of " + std::to_string(n) + " bytes is outside every allocation");
    if (src_dev && !holding(reinterpret_cast<uintptr_t>(src), n))
        return fail(INVALID_VALUE, std::string(op) + ": source range of " + std::to_string(n) + " bytes is outside every allocation");
    if (n) std::memmove(dst, src, n);
    return SUCCESS;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    return copy(reinterpret_cast<void*>(dst), src, n, true, false, "cuMemcpyHtoD");
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void*) { return cuMemcpyHtoD_v2(dst, src, n); }
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    return copy(dst, reinterpret_cast<const void*>(src), n, false, true, "cuMemcpyDtoH");
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void*) { return cuMemcpyDtoH_v2(dst, src, n); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    return copy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n, true, true, "cuMemcpyDtoD");
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void*) { return cuMemcpyDtoD_v2(dst, src, n); }
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    std::lock_guard<std::recursive_mutex> g(device_lock);
    if (!holding(dst, n)) return fail(INVALID_VALUE, "cuMemsetD8: range of " + std::to_string(n) + " bytes is outside every allocation");
    std::memset(reinterpret_cast<void*>(dst), v, n);
    return SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void*) { return cuMemsetD8_v2(dst, v, n); }
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    *p = std::malloc(bytes ? bytes : 1);
    return *p ? SUCCESS : OUT_OF_MEMORY;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
CUresult cuMemFreeHost(void* p) {
    std::free(p);
    return SUCCESS;
}

// The "PTX" of the emulated NVRTC: "moe-emu-module SOURCE HASH".
CUresult cuModuleLoadData(void** module, const void* image) {
    char source[256];
    unsigned long long hash = 0;
    if (std::sscanf(static_cast<const char*>(image), "moe-emu-module %255s %llu", source, &hash) != 2)
        return fail(INVALID_IMAGE, "cuModuleLoadData: not a module of the emulated NVRTC");
    auto it = sources().find(source);
    if (it == sources().end()) return fail(INVALID_IMAGE, std::string("cuModuleLoadData: no kernel source '") + source + "' was built into the emulated device");
    if (it->second.hash != hash)
        return fail(INVALID_IMAGE, std::string("cuModuleLoadData: ") + source +
                                       ".cu differs from the text the emulated device was built from: rebuild it (tools/cuda_emu/device/build.sh)");
    *module = new Module{source};
    return SUCCESS;
}
CUresult cuModuleUnload(void* module) {
    delete static_cast<Module*>(module);
    return SUCCESS;
}
CUresult cuModuleGetFunction(void** function, void* module, const char* name) {
    const auto* m = static_cast<Module*>(module);
    const Source& s = sources().at(m->source);
    auto it = s.kernels.find(name);
    if (it == s.kernels.end()) return fail(NOT_FOUND, "cuModuleGetFunction: " + m->source + ".cu has no kernel " + name);
    *function = new Function{m->source, name, it->second};
    return SUCCESS;
}
CUresult cuFuncSetAttribute(void* function, int attribute, int value) {
    auto* f = static_cast<Function*>(function);
    if (attribute == 8) {  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        if (value < 0 || value > OPTIN_MAX_DYNAMIC_SMEM)
            return fail(INVALID_VALUE, f->name + ": dynamic shared memory limit " + std::to_string(value) + " exceeds the device's");
        f->max_dynamic_smem = value;
    }
    return SUCCESS;
}
CUresult cuFuncGetAttribute(int* v, int attribute, void* function) {
    auto* f = static_cast<Function*>(function);
    *v = attribute == 8 ? f->max_dynamic_smem : attribute == 0 ? 1024 : 0;
    return SUCCESS;
}
CUresult cuFuncSetCacheConfig(void*, int) { return SUCCESS; }

CUresult cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void*, void** params, void** extra) {
    std::lock_guard<std::recursive_mutex> g(device_lock);
    auto* f = static_cast<Function*>(function);
    const std::string what = "launch of " + f->source + "." + f->name + " (grid " + std::to_string(gx) + "x" +
                             std::to_string(gy) + "x" + std::to_string(gz) + ", block " + std::to_string(bx) + "x" +
                             std::to_string(by) + "x" + std::to_string(bz) + ", " + std::to_string(smem) +
                             " B dynamic shared)";
    if (extra) return fail(NOT_SUPPORTED, what + ": `extra` parameters are not emulated");
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gy > 65535 || gz > 65535 || bx > 1024 ||
        by > 1024 || bz > 64)
        return fail(INVALID_VALUE, what + ": grid or block dimension out of range");
    if (size_t(bx) * by * bz > 1024) return fail(INVALID_VALUE, what + ": more than 1024 threads per block");
    if ((int)smem > f->max_dynamic_smem)
        return fail(INVALID_VALUE, what + ": dynamic shared memory above the function's limit of " +
                                       std::to_string(f->max_dynamic_smem) + " bytes");
    std::string error = emu_fiber_launch(EmuDim{gx, gy, gz}, EmuDim{bx, by, bz}, smem, f->bind(params));
    if (!error.empty()) return fail(LAUNCH_FAILED, what + ": " + error);
    for (auto& [p, a] : allocations)
        if (!guards_intact(a)) {
            std::memset(a.base, GUARD_BYTE, GUARD);  // restored, so later launches are judged on their own
            std::memset(a.base + GUARD + a.bytes, GUARD_BYTE, GUARD);
            return fail(LAUNCH_FAILED, what + ": wrote outside a buffer of " + std::to_string(a.bytes) + " bytes");
        }
    return SUCCESS;
}

CUresult cuGetErrorName(CUresult e, const char** s) {
    static thread_local std::string name;
    name = "CUDA_ERROR_" + std::to_string(e);
    *s = name.c_str();
    return SUCCESS;
}
CUresult cuGetErrorString(CUresult e, const char** s) { return cuGetErrorName(e, s); }

}  // extern "C"
