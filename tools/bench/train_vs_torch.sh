#!/usr/bin/env bash
# Training-step throughput of `moe bench` against the same model in PyTorch
# (tools/bench/train_peer.py: eager, and torch.compile unless COMPILE=0), for
# the dense and the MoE bench config, on the same THREADS threads, in ROUNDS
# interleaved rounds so that each implementation sees the same quiet and busy
# moments of a shared machine. Prints every run and a table: per
# implementation the best round's median step time as tokens/s, and our
# ratio to each PyTorch mode. Raw JSON lines go to $OUT (default
# target/train-bench/runs.jsonl, appended). PRECISION=bf16 runs both in
# mixed precision: ours with `--precision bf16` (matmul operands rounded to
# bf16, f32 accumulation), PyTorch under bf16 autocast.
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
PRECISION=${PRECISION:-f32}
case $PRECISION in
f32) ours_prec=(--precision f32) peer_prec=(--amp none) ;;
bf16) ours_prec=(--precision bf16) peer_prec=(--amp bf16) ;;
*) echo "PRECISION must be f32 or bf16, not '$PRECISION'" >&2; exit 2 ;;
esac
CONFIGS=${CONFIGS:-bench-dense bench-moe}
target=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$target/train-bench/runs.jsonl}
mkdir -p "$(dirname "$OUT")"
cargo build --release -q -p moe-train --bin moe
moe=$target/release/moe
stamp=$(date -u +"%Y-%m-%dT%H:%M:%SZ")
echo "# $stamp precision $PRECISION; $(lscpu | grep 'Model name' | sed 's/ \+/ /g'); $(nproc) CPUs; torch $("$PY" -c 'import torch; print(torch.__version__)')"
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
        run "moe $cfg" env RAYON_NUM_THREADS="$THREADS" "$moe" bench --config "$cfg" --steps "$STEPS" --warmup "$WARMUP" "${ours_prec[@]}"
        run "torch-eager $cfg" "$PY" tools/bench/train_peer.py --config "$cfg" --steps "$STEPS" --warmup "$WARMUP" \
            --threads "$THREADS" "${peer_prec[@]}"
        # OpenMP's default spin-waiting collapses when another process takes a
        # core (steps 5-10x slower); passive waiting shows torch's throughput
        # on a shared machine.
        run "torch-eager-passive $cfg" env OMP_WAIT_POLICY=PASSIVE "$PY" tools/bench/train_peer.py --config "$cfg" \
            --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" "${peer_prec[@]}"
        if [ "$COMPILE" = 1 ]; then
            run "torch-compile $cfg" "$PY" tools/bench/train_peer.py --config "$cfg" --steps "$STEPS" \
                --warmup "$WARMUP" --threads "$THREADS" --compile "${peer_prec[@]}"
        fi
    done
done
"$PY" - "$OUT" "$stamp" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r["stamp"] == sys.argv[2] and "result" in r]
best, cpu = {}, {}
for r in rows:
    x = r["result"]
    best[r["label"]] = max(best.get(r["label"], 0.0), x["tokens_per_s"])
    cpu[r["label"]] = max(cpu.get(r["label"], 0.0), x.get("tokens_per_cpu_s") or 0.0)
print(f"\n{'implementation':<32} {'tokens/s':>9} {'ratio':>6}  {'tokens/CPU-s':>12} {'ratio':>6}  (best round)")
for cfg in sorted({l.split()[1] for l in best}):
    ours, ours_cpu = best.get(f"moe {cfg}"), cpu.get(f"moe {cfg}")
    for impl in ("moe", "torch-eager", "torch-eager-passive", "torch-compile"):
        v = best.get(f"{impl} {cfg}")
        if v is None:
            continue
        c = cpu[f"{impl} {cfg}"]
        ratio = f"{ours / v:.2f}x" if ours and impl != "moe" else ""
        cratio = f"{ours_cpu / c:.2f}x" if ours_cpu and c and impl != "moe" else ""
        print(f"{impl + ' ' + cfg:<32} {v:>9.0f} {ratio:>6}  {c:>12.0f} {cratio:>6}")
# Ours against each peer within the same round (the two ran back to back,
# so they saw much the same load): steadier than best against best when
# the machine's load moves between rounds.
by_round = {(r["label"], r["round"]): r["result"]["tokens_per_s"] for r in rows}
print("\nper-round ratios (ours / peer, same round), and their median")
for cfg in sorted({l.split()[1] for l in best}):
    for impl in ("torch-eager", "torch-eager-passive", "torch-compile"):
        pairs = sorted(
            (rd, by_round[(f"moe {cfg}", rd)] / t)
            for (label, rd), t in by_round.items()
            if label == f"{impl} {cfg}" and (f"moe {cfg}", rd) in by_round
        )
        if pairs:
            ratios = sorted(x for _, x in pairs)
            med = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1]) / 2
            shown = " / ".join(f"{x:.2f}x" for _, x in pairs)
            print(f"{impl + ' ' + cfg:<32} {shown}   median {med:.2f}x")
EOF
