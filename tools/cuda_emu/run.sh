#!/usr/bin/env bash
# Runs CUDA kernel sources of moe-kernels on the CPU (emu.h) against naive
# references, with AddressSanitizer: a check of the kernels' indexing and
# arithmetic on machines without a GPU. Needs g++ (C++20). Not a substitute
# for the GPU tests (`cargo test -p moe-tensor --features cuda --test cuda_ops`).
#   tools/cuda_emu/run.sh                  # every check below
#   tools/cuda_emu/run.sh softmax topk     # only the named ones (NAME_check.cpp)
#   KERNEL_DIR=/tmp/patched tools/cuda_emu/run.sh rope   # kernels from another directory
# Exit status 1 when any check fails (the others still run); 2 on a build error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${KERNEL_DIR:-$here/../../moe-kernels/src/cuda}
out=${TMPDIR:-/tmp}/moe-cuda-emu
mkdir -p "$out"
CXX=${CXX:-g++}
wanted=("$@")
passed=() failed=()

# common.cuh, tensor_core.cuh (its mma is emu.h's model) and the kernel file,
# all from DIR, with shared memory made host memory (host_source.sed).
rewrite() { # rewrite KERNEL.cu [DIR]
    local dir=${2:-$src}
    cat "$dir/common.cuh" "$dir/tensor_core.cuh" "$dir/$1" | sed -f "$here/host_source.sed"
}

build() { # build NAME KERNEL.cu [KERNEL-DIR]: NAME_check.cpp into $out/NAME
    local name=$1_check
    { echo '#include "emu.h"'; rewrite "$2" "${3:-}"; } >"$out/$name.kernels.inc"
    cp "$here/$name.cpp" "$out/$name.cpp"
    sed -i "s|#include \"kernels.inc\".*|#include \"$name.kernels.inc\"|" "$out/$name.cpp"
    "$CXX" -std=c++20 -O1 -g -ffp-contract=off -pthread -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -I"$here" -I"$out" -o "$out/$name" "$out/$name.cpp" || exit 2
}

asked() { ! ((${#wanted[@]})) || [[ " ${wanted[*]} " == *" $1 "* ]]; }

check() { # check NAME KERNEL.cu: builds and runs NAME_check.cpp
    asked "$1" || return 0
    echo "== $1 ($2)"
    build "$1" "$2"
    if "$out/$1_check"; then passed+=("$1"); else failed+=("$1"); fi
}

# Negative control: NAME's check must fail on KERNEL.cu when, in FILE (the
# kernel or a header), the line FROM is replaced by TO (a deliberate
# fragment-layout error), so a check that cannot see such errors does not
# pass unnoticed.
must_fail() { # must_fail NAME KERNEL.cu FILE FROM TO
    asked "$1" || return 0
    echo "== $1 negative control: $3 with '$4' -> '$5' must FAIL"
    local broken=$out/broken
    rm -rf "$broken" && mkdir -p "$broken" && cp "$src"/*.cu "$src"/*.cuh "$broken"/
    grep -qF -- "$4" "$src/$3" || { echo "control line '$4' not in $3" >&2; exit 2; }
    FROM=$4 TO=$5 perl -pe 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$src/$3" >"$broken/$3"
    build "$1" "$2" "$broken"
    if "$out/$1_check" >"$out/$1_broken.log" 2>&1; then
        echo "FAIL the check passed a broken kernel"
        failed+=("$1")
    else
        echo "ok   the check rejects it ($(grep -c '^FAIL' "$out/$1_broken.log") failing lines)"
    fi
}

check attention attention.cu
check attention_tc attention_tc.cu
must_fail attention_tc attention_tc.cu tensor_core.cuh 'a[1] = p[8 * ws];' 'a[1] = p[4];'
must_fail attention_tc attention_tc.cu tensor_core.cuh 'tc_elem(s, ws, k + 9, n) << 16' 'tc_elem(s, ws, k + 1, n) << 16'
check strided strided.cu
check elementwise elementwise.cu
check reduce reduce.cu
check softmax softmax.cu
check rms_norm rms_norm.cu
check rope rope.cu
check cross_entropy cross_entropy.cu
check embedding embedding.cu
check topk topk.cu
check select select.cu
check scan scan.cu
check combine combine.cu
check optim optim.cu
must_fail optim optim.cu optim.cu '__fmul_rn(-step_size, mi)' '__fmul_rn(step_size, mi)'
check route_plan route_plan.cu
must_fail route_plan route_plan.cu route_plan.cu 'if (t >= step) x += buf[cur][t - step];' 'if (t > step) x += buf[cur][t - step];'
must_fail route_plan route_plan.cu route_plan.cu 'position < capacity) ? position' 'position <= capacity) ? position'
must_fail route_plan route_plan.cu route_plan.cu '(k == key && other < c)' '(k == key && other > c)'
must_fail route_plan route_plan.cu route_plan.cu '(int)(((unsigned)(b >> 31)) >> 1)' '(int)(((unsigned)(b >> 31)) >> 0)'
check grouped_seg grouped_seg.cu
must_fail grouped_seg grouped_seg.cu grouped_seg.cu 'if (tile < tiles) {' 'if (tile <= tiles) {'
must_fail grouped_seg grouped_seg.cu grouped_seg.cu 'const int m = warp * 16 + g + (i >= 2 ? 8 : 0)' 'const int m = warp * 16 + g + (i >= 1 ? 8 : 0)'
check sinkhorn sinkhorn.cu
must_fail sinkhorn sinkhorn.cu sinkhorn.cu 'if (g < stride && g + stride < groups)' 'if (g < stride && g + stride <= groups)'
must_fail sinkhorn sinkhorn.cu sinkhorn.cu 'exp((double)(row[k] - m))' 'exp((double)(row[k]))'

for name in "${wanted[@]}"; do
    if [[ " ${passed[*]} ${failed[*]} " != *" $name "* ]]; then
        echo "no check named '$name'" >&2
        exit 2
    fi
done
echo "== passed: ${passed[*]:-none}"
if ((${#failed[@]})); then
    echo "== FAILED: ${failed[*]}"
    exit 1
fi
