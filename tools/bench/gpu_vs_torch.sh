#!/usr/bin/env bash
# GPU training throughput and MFU of `moe bench --device cuda` against the
# same models in PyTorch on the same GPU (tools/bench/train_peer.py: eager,
# and torch.compile unless COMPILE=0), for the GPU bench models gpu-dense,
# gpu-moe and gpu-granular (moe-model presets) at sequence 1024. Both sides
# use bf16 matrix products with f32 master weights: ours MatmulPrecision::Bf16
# (`--precision bf16`), PyTorch autocast(bfloat16). MFU is the model's
# training FLOPs per step (`moe bench`'s model_gflop_per_step: 6 x active
# parameters plus attention, per token) over the step time and PEAK_TFLOPS
# (default 989: H100/H200 SXM dense bf16). Builds nothing: MOE names a
# `moe` binary built with `--features moe-train/cuda`. For the MoE models a
# third run of ours (`moe-bf16-cublas`) uses cuBLAS's grouped GEMM with the
# segment counts read back (MOE_GROUPED_GEMM=cublas) instead of the default
# device-side routing. Each run's stderr is appended to RESULTS.jsonl.stderr.
#
# Usage (repository root):
#   MOE=target/release/moe PYTHON=python3 tools/bench/gpu_vs_torch.sh [RESULTS.jsonl]
set -euo pipefail
PY=${PYTHON:-python3}
MOE=${MOE:-target/release/moe}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
BATCH=${BATCH:-8}
SEQ=${SEQ:-1024}
COMPILE=${COMPILE:-1}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
CONFIGS=${CONFIGS:-gpu-dense gpu-moe gpu-granular}
OUT=${1:-target/gpu-bench/runs.jsonl}
mkdir -p "$(dirname "$OUT")"
stamp=$(date -u +"%Y-%m-%dT%H:%M:%SZ")
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo "no nvidia-smi")
echo "# $stamp $gpu; torch $("$PY" -c 'import torch; print(torch.__version__)')"
run() { # label, command...
    local label=$1
    shift
    local line
    local err=$OUT.stderr
    echo "== $label" >>"$err"
    if line=$("$@" --json 2>>"$err" | tail -1) && [ -n "$line" ]; then
        echo "{\"stamp\": \"$stamp\", \"label\": \"$label\", \"result\": $line}" | tee -a "$OUT"
    else
        echo "{\"stamp\": \"$stamp\", \"label\": \"$label\", \"error\": true}" | tee -a "$OUT"
        tail -3 "$err" >&2 || true
    fi
}
common=(--steps "$STEPS" --warmup "$WARMUP" --batch-size "$BATCH" --seq-len "$SEQ")
for cfg in $CONFIGS; do
    run "moe-bf16_$cfg" "$MOE" bench --config "$cfg" --device cuda --precision bf16 "${common[@]}"
    run "moe-f32_$cfg" "$MOE" bench --config "$cfg" --device cuda "${common[@]}"
    if [ "$cfg" != gpu-dense ]; then
        # The experts through cuBLAS's grouped GEMM, segment counts read back
        # per layer, against the default device-side routing above.
        run "moe-bf16-cublas_$cfg" env MOE_GROUPED_GEMM=cublas "$MOE" bench --config "$cfg" --device cuda \
            --precision bf16 "${common[@]}"
    fi
    run "torch-eager-bf16_$cfg" "$PY" tools/bench/train_peer.py --config "$cfg" --device cuda --amp bf16 "${common[@]}"
    if [ "$COMPILE" = 1 ]; then
        run "torch-compile-bf16_$cfg" "$PY" tools/bench/train_peer.py --config "$cfg" --device cuda --amp bf16 \
            --compile "${common[@]}"
    fi
done
"$PY" - "$OUT" "$stamp" "$PEAK_TFLOPS" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r["stamp"] == sys.argv[2] and "result" in r]
peak = float(sys.argv[3]) * 1e12
res = {r["label"]: r["result"] for r in rows}
print(f"\n{'implementation':<36} {'tokens/s':>9} {'vs eager':>8} {'MFU':>6}")
for cfg in dict.fromkeys(l.split("_", 1)[1] for l in res):
    ours = res.get(f"moe-bf16_{cfg}")
    gflop = ours and ours.get("model_gflop_per_step")
    eager = res.get(f"torch-eager-bf16_{cfg}")
    for impl in ("moe-bf16", "moe-bf16-cublas", "moe-f32", "torch-eager-bf16", "torch-compile-bf16"):
        x = res.get(f"{impl}_{cfg}")
        if x is None:
            continue
        ratio = f"{x['tokens_per_s'] / eager['tokens_per_s']:.2f}x" if eager else ""
        mfu = f"{gflop * 1e9 / (x['step_ms_median'] / 1e3) / peak:.1%}" if gflop else ""
        print(f"{impl + ' ' + cfg:<36} {x['tokens_per_s']:>9.0f} {ratio:>8} {mfu:>6}")
PYEOF
