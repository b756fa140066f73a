#!/usr/bin/env bash
# `moe prepare` throughput next to the Python `tokenizers` library encoding
# the same files with the same tokenizer.json, in the same run.
#   PYTHON=/path/to/venv/bin/python moe-data/benches/prepare_vs_hf.sh [DOCS_PER_DOMAIN]
# Input: the built-in corpus (english, german, code) written as JSONL, so
# the run needs no download. The tokenizer is a byte-level BPE trained on
# part of it with `moe tokenizer train`.
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
PY=${PYTHON:-python3}
N=${1:-100000}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q --release -p moe-train --bin moe -p moe-data --example builtin_jsonl
MOE=$TARGET/release/moe
"$TARGET"/release/examples/builtin_jsonl "$W/corpus.jsonl" "$N"
"$TARGET"/release/examples/builtin_jsonl "$W/tok_train.jsonl" 5000 1
"$MOE" tokenizer train --vocab-size 8192 --out "$W/tokenizer.json" "$W/tok_train.jsonl" >/dev/null
echo "input: $(du -h "$W/corpus.jsonl" | cut -f1) JSONL, $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
# Other work on the machine slows both sides alike; the load average and
# the CPU seconds each side used are printed so runs can be compared.
T='%e s wall, %U s user + %S s sys CPU, max RSS %M KiB'
for run in 1 2; do
  rm -rf "$W/out"
  echo "-- run $run, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "moe prepare: $T" \
    "$MOE" prepare --tokenizer "$W/tokenizer.json" --domain mix --out "$W/out" "$W/corpus.jsonl"
  /usr/bin/time -f "python tokenizers: $T" \
    "$PY" "$(dirname "$0")/hf_encode.py" "$W/tokenizer.json" "$W/corpus.jsonl"
done
