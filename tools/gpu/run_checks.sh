#!/usr/bin/env bash
# The GPU verification of the CUDA backend in one run (about 10 minutes on an
# H100): every CUDA op test (each op forward and backward against the CPU),
# the backend's unit tests, the training tests on CUDA (tiny dense and MoE
# models tracking the CPU loss curve), and the throughput/MFU comparison with
# PyTorch. Runs the binaries of tools/gpu/bundle.sh; needs no Rust toolchain.
# Every log and the benchmark's JSON lines go to RESULTS_DIR (six files:
# machine.txt, tests.log, bench.jsonl, bench.jsonl.stderr, bench.txt).
# PHASE=tests or PHASE=bench runs only that half (default: both), so the
# two can go to separate calls where one call's time is limited.
#   tools/gpu/run_checks.sh target/gpu-bundle RESULTS_DIR
#   PHASE=bench tools/gpu/run_checks.sh target/gpu-bundle RESULTS_DIR
set -uo pipefail
bundle=${1:?bundle folder (tools/gpu/bundle.sh)}
res=${2:?results folder}
phase=${PHASE:-all}
case $phase in
all | tests | bench) ;;
*)
    echo "PHASE must be all, tests or bench, not '$phase'" >&2
    exit 2
    ;;
esac
mkdir -p "$res"
# The CUDA 13 runtime libraries: a toolkit, or the nvidia-* wheels of the
# Python that holds PyTorch.
py=${PYTHON:-python3}
wheels=$("$py" -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"))' 2>/dev/null || true)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib "$wheels"; do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
{
    date -u
    nvidia-smi
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} >"$res/machine.txt" 2>&1
status=0
if [ "$phase" != bench ]; then
    log=$res/tests.log
    : >"$log"
    for t in "$bundle"/tests/*; do
        name=$(basename "$t")
        echo "===== $name" >>"$log"
        # One test at a time: the tests share one device and its stream.
        if ! timeout 300 "$t" --test-threads=1 --nocapture >>"$log" 2>&1; then
            status=1
            echo "$name: FAILED"
        fi
        skipped=$(sed -n "/^===== $name\$/,/^===== /p" "$log" | grep -c "skipping" || true)
        echo "$name: $(sed -n "/^===== $name\$/,/^===== /p" "$log" | grep "^test result" | tail -1) ($skipped skipped)"
    done
    grep -E "^test .* FAILED|panicked" "$log" | head -20
fi
if [ "$phase" != tests ]; then
    MOE=$bundle/moe PYTHON=$py tools/bench/gpu_vs_torch.sh "$res/bench.jsonl" 2>&1 | tee "$res/bench.txt"
fi
exit $status
