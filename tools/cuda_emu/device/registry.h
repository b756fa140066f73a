// registry.h: how the emulated device finds a kernel by name. Each kernel
// source is compiled into its own namespace (build.sh); the generated code
// registers every `extern "C"` kernel the source lists, with a trampoline
// that reads the launch's argument array as the kernel's own parameter
// types, the way the driver reads a kernel's parameter buffer.
#pragma once
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// Copies the arguments out of `params` (one pointer per parameter) and
// returns the call that every emulated thread runs.
using EmuBind = std::function<std::function<void()>(void** params)>;

struct EmuKernel {
    const char* name;
    EmuBind bind;
};

// Registers the kernels of source `source` (the `KernelSource` name) whose
// full text hashes to `text_hash` (emu_text_hash of the text NVRTC sees).
bool emu_register(const char* source, unsigned long long text_hash, std::vector<EmuKernel> kernels);

template <class... A, size_t... I>
std::tuple<std::decay_t<A>...> emu_read_args(void** params, std::index_sequence<I...>) {
    return std::tuple<std::decay_t<A>...>(*static_cast<std::decay_t<A>*>(params[I])...);
}

template <class... A>
EmuBind emu_trampoline(void (*kernel)(A...)) {
    return [kernel](void** params) -> std::function<void()> {
        auto args = emu_read_args<A...>(params, std::index_sequence_for<A...>{});
        return [kernel, args] { std::apply(kernel, args); };
    };
}
