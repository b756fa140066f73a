#!/usr/bin/env bash
# Runs the CUDA test suites of the workspace on the emulated device (no GPU
# needed): builds it (build.sh), then the CUDA op, optimiser, router and
# training tests and the backend's unit tests, with the emulated libcuda,
# libcublas and libnvrtc first on LD_LIBRARY_PATH. Extra arguments go to
# every test binary (e.g. a test name filter).
#   tools/cuda_emu/device/test.sh
#   tools/cuda_emu/device/test.sh sinkhorn
# The NVRTC compile test is skipped: the emulated NVRTC compiles nothing
# (run it with the real library, docs/gpu.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
lib=$("$here/build.sh") || exit 2
export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cd "$root"
log=$root/target/cuda-emu/test.log
: >"$log"
status=0
suite() { # suite PACKAGE TEST-ARGS...: one cargo test run, output in $log
    local pkg=$1
    shift
    echo "== $pkg $*" | tee -a "$log"
    cargo test --release -q -p "$pkg" --features cuda "$@" -- --nocapture --test-threads=2 \
        --skip every_kernel_source_compiles_with_nvrtc "${extra[@]}" >>"$log" 2>&1 || status=1
    grep -E "^test result|panicked|^---- " "$log" | sed -n '/./p' | tail -n +"$((shown + 1))"
    shown=$(grep -cE "^test result|panicked|^---- " "$log")
}
shown=0
extra=("$@")
suite moe-tensor --lib --test cuda_ops --test cuda_optim
suite moe-router --test cuda_router
suite moe-train --test cuda_train
# A test that found no device skips and passes: here that is a failure.
if grep -q "no CUDA device" "$log"; then
    grep -m3 "no CUDA device" "$log"
    echo "== the emulated device did not start (see $log)"
    status=1
fi
((status == 0)) && echo "== every CUDA suite passed on the emulated device (log: $log)" || echo "== FAILED (log: $log)"
exit $status
