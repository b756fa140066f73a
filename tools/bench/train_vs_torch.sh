#!/usr/bin/env bash
# Training-step throughput of `moe bench` against the same model in PyTorch
# (tools/bench/train_peer.py: eager, and torch.compile unless COMPILE=0), for
# the dense and the MoE bench config, on the same THREADS threads, in ROUNDS
# interleaved rounds so that each implementation sees the same quiet and busy
# moments of a shared machine. Prints every run and a table: per
# implementation the best round's median step time as tokens/s, and our
# ratio to each PyTorch mode. Raw JSON lines go to $OUT (default
# target/train-bench/runs.jsonl, appended).
#
# Usage (repository root):
#   PYTHON=/work/venv/bin/python ROUNDS=3 STEPS=10 tools/bench/train_vs_torch.sh
set -euo pipefail
PY=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
COMPILE=${COMPILE:-1}
CONFIGS=${CONFIGS:-bench-dense bench-moe}
target=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$target/train-bench/runs.jsonl}
mkdir -p "$(dirname "$OUT")"
cargo build --release -q -p moe-train --bin moe
moe=$target/release/moe
stamp=$(date -u +"%Y-%m-%dT%H:%M:%SZ")
echo "# $stamp $(lscpu | grep 'Model name' | sed 's/ \+/ /g'); $(nproc) CPUs; torch $("$PY" -c 'import torch; print(torch.__version__)')"
run() { # label, command...
    local label=$1
    shift
    local line
    if line=$("$@" --json 2>/dev/null | tail -1) && [ -n "$line" ]; then
        echo "{\"round\": $r, \"stamp\": \"$stamp\", \"label\": \"$label\", \"result\": $line}" | tee -a "$OUT"
    else
        echo "{\"round\": $r, \"stamp\": \"$stamp\", \"label\": \"$label\", \"error\": true}" | tee -a "$OUT"
    fi
}
for r in $(seq 1 "$ROUNDS"); do
    echo "# round $r/$ROUNDS: $(uptime)"
    for cfg in $CONFIGS; do
        run "moe $cfg" env RAYON_NUM_THREADS="$THREADS" "$moe" bench --config "$cfg" --steps "$STEPS" --warmup "$WARMUP"
        run "torch-eager $cfg" "$PY" tools/bench/train_peer.py --config "$cfg" --steps "$STEPS" --warmup "$WARMUP" \
            --threads "$THREADS"
        if [ "$COMPILE" = 1 ]; then
            run "torch-compile $cfg" "$PY" tools/bench/train_peer.py --config "$cfg" --steps "$STEPS" \
                --warmup "$WARMUP" --threads "$THREADS" --compile
        fi
    done
done
"$PY" - "$OUT" "$stamp" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r["stamp"] == sys.argv[2] and "result" in r]
best = {}
for r in rows:
    tps = r["result"]["tokens_per_s"]
    best[r["label"]] = max(best.get(r["label"], 0.0), tps)
print(f"\n{'implementation':<26} {'tokens/s (best round)':>22}  ratio of moe to it")
for cfg in sorted({l.split()[1] for l in best}):
    ours = best.get(f"moe {cfg}")
    for impl in ("moe", "torch-eager", "torch-compile"):
        v = best.get(f"{impl} {cfg}")
        if v is None:
            continue
        ratio = f"{ours / v:.2f}x" if ours and impl != "moe" else ""
        print(f"{impl + ' ' + cfg:<26} {v:>22.0f}  {ratio}")
EOF
