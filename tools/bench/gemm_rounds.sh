#!/usr/bin/env bash
# Square f32 GEMM of moe-kernels (and the gemm / matrixmultiply crates),
# torch.matmul and numpy `@` (and the FMA peak)
# in ROUNDS interleaved rounds on 1 and 2 threads. On a machine shared with
# other work, each library gets the same quiet and busy moments; the table
# (tools/bench/gemm_table.py) reports the best round's median and the median
# over rounds for each. Results are appended to $CARGO_TARGET_DIR/gemm-bench/rounds
# (delete it to start afresh), so rounds can also be taken one at a time
# whenever the machine is idle.
#
# Usage (repository root):
#   PYTHON=/path/to/venv/bin/python ROUNDS=5 SIZES="256 512 1024 2048" tools/bench/gemm_rounds.sh
set -euo pipefail
PY=${PYTHON:-python3}
ROUNDS=${ROUNDS:-5}
SIZES=${SIZES:-256 512 1024 2048}
target=${CARGO_TARGET_DIR:-target}
out=$target/gemm-bench/rounds
mkdir -p "$out"
cargo build --release -q -p moe-kernels --example fma_peak --example gemm_square
bin=$target/release/examples
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r/$ROUNDS: $(uptime)" | tee -a "$out/machine.txt"
    "$bin/fma_peak" | tee -a "$out/fma_peak.txt"
    for backend in moe-kernels gemm-crate matrixmultiply; do
        for t in 1 2; do
            GEMM_BACKEND=$backend RAYON_NUM_THREADS=$t MATMUL_NUM_THREADS=$t \
                "$bin/gemm_square" $SIZES | tee -a "$out/$backend.jsonl"
        done
    done
    "$PY" tools/bench/matmul_peer.py --lib torch --threads 1 2 --sizes $SIZES | tee -a "$out/torch.jsonl"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        "$PY" tools/bench/matmul_peer.py --lib numpy --threads 1 2 --sizes $SIZES | tee -a "$out/numpy.jsonl"
done
