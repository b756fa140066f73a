#!/usr/bin/env bash
# Runs CUDA kernel sources of moe-kernels on the CPU (emu.h) against naive
# references, with AddressSanitizer: a check of the kernels' indexing and
# arithmetic on machines without a GPU. Needs g++ (C++20). Not a substitute
# for the GPU tests (`cargo test -p moe-tensor --features cuda --test cuda_ops`).
#   tools/cuda_emu/run.sh            # every check below
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../../moe-kernels/src/cuda
out=${TMPDIR:-/tmp}/moe-cuda-emu
mkdir -p "$out"
CXX=${CXX:-g++}

# common.cuh + the kernel file, with shared memory made host memory: the
# dynamic `extern __shared__` array becomes a pointer to the launch's buffer,
# static `__shared__` arrays become statics (blocks run one at a time).
rewrite() {
    cat "$src/common.cuh" "$src/$1" |
        sed -e 's/extern __shared__ unsigned char \([A-Za-z_0-9]*\)\[\];/unsigned char* \1 = emu_dynamic_smem;/' \
            -e 's/__shared__/static/g' \
            -e 's/extern "C" //'
}

check() { # check NAME KERNEL.cu
    local name=$1 kernel=$2
    { echo '#include "emu.h"'; rewrite "$kernel"; } >"$out/$name.kernels.inc"
    cp "$here/$name.cpp" "$out/$name.cpp"
    sed -i "s|#include \"kernels.inc\".*|#include \"$name.kernels.inc\"|" "$out/$name.cpp"
    "$CXX" -std=c++20 -O1 -g -pthread -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -I"$here" -I"$out" -o "$out/$name" "$out/$name.cpp"
    "$out/$name"
}

check attention_check attention.cu
