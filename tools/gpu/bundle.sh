#!/usr/bin/env bash
# Builds, on a machine with the Rust toolchain, everything the GPU checks run
# into target/gpu-bundle: the `moe` binary and the CUDA test binaries, release,
# with the `cuda` feature, stripped. cudarc loads the CUDA libraries at run
# time, so the GPU machine needs the NVIDIA driver and CUDA 13 runtime
# libraries (cuBLAS, NVRTC; a toolkit or PyTorch's nvidia-* wheels) but no
# Rust toolchain and no network. Then, on the GPU machine, from the
# repository root:
#   tools/gpu/run_checks.sh target/gpu-bundle RESULTS_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/gpu-bundle
rm -rf "$out"
mkdir -p "$out/tests"
# Test executables of `cargo test --no-run`, read from cargo's JSON messages
# (test artifacts only: integration tests also build the `moe` binary).
tests() { # cargo test arguments...
    cargo test --release --no-run --message-format=json "$@" | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
}
for exe in $(tests -p moe-tensor --features cuda --test cuda_ops --test cuda_optim) \
    $(tests -p moe-tensor --features cuda --lib) \
    $(tests -p moe-router --features cuda --test cuda_router) \
    $(tests -p moe-train --features cuda --test cuda_train); do
    name=$(basename "$exe" | sed 's/-[0-9a-f]*$//')
    cp "$exe" "$out/tests/$name"
done
cargo build --release -p moe-train --bin moe --features cuda
cp target/release/moe "$out/moe"
strip "$out/moe" "$out"/tests/*
du -sh "$out"/moe "$out"/tests/*
