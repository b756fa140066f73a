// nvrtc.cpp: the NVRTC subset cudarc calls, for the emulated device
// (libnvrtc.so of build.sh). Kernels are compiled into the emulated driver
// ahead of time, so "compiling" records the program's name and the hash of
// its text, and the "PTX" is the line `moe-emu-module SOURCE HASH` that the
// emulated cuModuleLoadData checks against what it was built from. The real
// NVRTC compile is checked elsewhere (moe-tensor's
// every_kernel_source_compiles_with_nvrtc).
#include "text_hash.h"

#include <cstring>
#include <string>

namespace {
struct Program {
    std::string ptx;
};
enum : int { SUCCESS = 0, INVALID_INPUT = 3, INVALID_PROGRAM = 4 };
}  // namespace

extern "C" {

int nvrtcVersion(int* major, int* minor) {
    *major = 13;
    *minor = 0;
    return SUCCESS;
}
int nvrtcCreateProgram(void** prog, const char* src, const char* name, int, const char* const*, const char* const*) {
    if (!src || !name) return INVALID_INPUT;
    std::string source = name;
    if (source.size() > 3 && source.compare(source.size() - 3, 3, ".cu") == 0) source.resize(source.size() - 3);
    *prog = new Program{"moe-emu-module " + source + " " + std::to_string(emu_text_hash(src, std::strlen(src))) + "\n"};
    return SUCCESS;
}
int nvrtcCompileProgram(void* prog, int, const char* const*) { return prog ? SUCCESS : INVALID_PROGRAM; }
int nvrtcGetPTXSize(void* prog, size_t* size) {
    *size = static_cast<Program*>(prog)->ptx.size() + 1;
    return SUCCESS;
}
int nvrtcGetPTX(void* prog, char* out) {
    const std::string& p = static_cast<Program*>(prog)->ptx;
    std::memcpy(out, p.c_str(), p.size() + 1);
    return SUCCESS;
}
int nvrtcGetProgramLogSize(void*, size_t* size) {
    *size = 1;
    return SUCCESS;
}
int nvrtcGetProgramLog(void*, char* log) {
    log[0] = 0;
    return SUCCESS;
}
int nvrtcDestroyProgram(void** prog) {
    delete static_cast<Program*>(*prog);
    *prog = nullptr;
    return SUCCESS;
}
const char* nvrtcGetErrorString(int r) { return r == 0 ? "NVRTC_SUCCESS" : "NVRTC_ERROR"; }

}  // extern "C"
