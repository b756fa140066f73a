#!/usr/bin/env bash
# Builds the emulated CUDA device: libcuda.so, libcublas.so and libnvrtc.so
# that run the CUDA backend of moe-tensor on the CPU, with every kernel
# source of moe-kernels compiled in (as `cargo run -p moe-kernels --example
# kernel_manifest` writes them, the text NVRTC would see). Prints the
# directory to put on LD_LIBRARY_PATH. Needs g++ (C++20).
#   tools/cuda_emu/device/build.sh            # -> target/cuda-emu/lib
# See ../README.md ("The emulated device") for what it checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${EMU_DEVICE_DIR:-$root/target/cuda-emu}
CXX=${CXX:-g++}
# initial-exec TLS: threadIdx and blockIdx are read on every access without
# a call into the dynamic loader (they need a few bytes of static TLS).
flags=(-std=c++20 -O2 -g -fPIC -ftls-model=initial-exec -ffp-contract=off -pthread -I"$here" -I"$here/..")
mkdir -p "$out/src" "$out/obj" "$out/lib"

(cd "$root" && cargo run --release -q -p moe-kernels --example kernel_manifest -- "$out/src") >&2

# One translation unit per source: the kernels in a namespace of their own
# (sources share helper names), then their registration.
jobs=()
while read -r name; do
    {
        echo '#define EMU_FIBERS'
        echo '#include "emu.h"'
        echo '#include "registry.h"'
        echo '#include "text_hash.h"'
        echo "namespace emu_$name {"
        sed -f "$here/../host_source.sed" "$out/src/$name.cu"
        echo "}  // namespace emu_$name"
        # The exact text NVRTC is given, to recognise it at module load.
        printf 'static const char text[] = R"EMU_SOURCE('
        cat "$out/src/$name.cu"
        printf ')EMU_SOURCE";\n'
        echo "static const bool registered = emu_register(\"$name\", emu_text_hash(text, sizeof text - 1), {"
        while read -r f; do
            echo "    {\"$f\", emu_trampoline(&emu_$name::$f)},"
        done <"$out/src/$name.functions"
        echo "});"
    } >"$out/src/$name.emu.cpp"
    jobs+=("$out/src/$name.emu.cpp")
done <"$out/src/sources"
jobs+=("$here/fibers.cpp" "$here/driver.cpp" "$here/cublas.cpp" "$here/nvrtc.cpp")

compile() { # compile SOURCE: OBJECT, unless it is newer than the source and headers
    local obj
    obj=$out/obj/$(basename "${1%.cpp}").o
    if [[ ! -e $obj || $1 -nt $obj || $here/build.sh -nt $obj || $here/../emu.h -nt $obj || $here/registry.h -nt $obj || $here/fibers.h -nt $obj ]]; then
        "$CXX" "${flags[@]}" -c "$1" -o "$obj"
    fi
}
export -f compile
export out here CXX
export FLAGS="${flags[*]}"
printf '%s\n' "${jobs[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c 'flags=($FLAGS); compile "$@"' _ {} >&2

objs=()
while read -r name; do objs+=("$out/obj/$name.emu.o"); done <"$out/src/sources"
"$CXX" -shared -pthread -o "$out/lib/libcuda.so" "$out/obj/fibers.o" "$out/obj/driver.o" "${objs[@]}"
"$CXX" -shared -o "$out/lib/libcublas.so" "$out/obj/cublas.o" -L"$out/lib" -lcuda -Wl,-rpath,'$ORIGIN'
"$CXX" -shared -o "$out/lib/libnvrtc.so" "$out/obj/nvrtc.o"
for lib in cuda:1 cublas:13 nvrtc:13; do
    ln -sf "lib${lib%%:*}.so" "$out/lib/lib${lib%%:*}.so.${lib##*:}"
done
echo "$out/lib"
