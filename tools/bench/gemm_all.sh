#!/usr/bin/env bash
# Every GEMM measurement behind the GEMM section of BENCHMARKS.md, in one run on
# the same cores: the FMA peak, our criterion bench on 2 and 1 threads (with
# the gemm/matrixmultiply crates), torch.matmul and numpy `@`. Logs go to
# $CARGO_TARGET_DIR/gemm-bench/ (default target/); tools/bench/gemm_table.py
# turns them into the tables. On a shared machine, a private CARGO_TARGET_DIR
# keeps the run from waiting on other builds' cargo lock.
#
# Usage (repository root): PYTHON=/path/to/venv/bin/python tools/bench/gemm_all.sh
set -euo pipefail
PY=${PYTHON:-python3}
out=${CARGO_TARGET_DIR:-target}/gemm-bench
mkdir -p "$out"
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    lscpu | grep -E "Model name|^CPU\(s\)|Thread\(s\) per core"
    uptime
} | tee "$out/machine.txt"
# Build everything first so compilation does not overlap the timings.
cargo build --release -q -p moe-kernels --example fma_peak
cargo bench -q -p moe-kernels --bench gemm --no-run
cargo run --release -q -p moe-kernels --example fma_peak | tee "$out/fma_peak.txt"
for t in 2 1; do
    RAYON_NUM_THREADS=$t MATMUL_NUM_THREADS=$t \
        cargo bench -q -p moe-kernels --bench gemm -- --save-baseline "gemm_${t}t" 2>&1 | tee "$out/criterion_${t}t.txt"
done
"$PY" tools/bench/matmul_peer.py --lib torch --threads 1 2 | tee "$out/torch.txt"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    "$PY" tools/bench/matmul_peer.py --lib numpy --threads 1 2 | tee "$out/numpy.txt"
cargo run --release -q -p moe-kernels --example fma_peak | tee -a "$out/fma_peak.txt"
uptime | tee -a "$out/machine.txt"
