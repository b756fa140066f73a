#!/usr/bin/env bash
# Regenerates the tokenizer check: trains a byte-level BPE with the `moe`
# binary, encodes edge-case texts with moe-data (Rust), then loads the same
# tokenizer.json in transformers and compares. Run from anywhere:
#   PYTHON=/path/to/venv/bin/python tools/goldens/tokenizer/run.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
ROOT=$(git rev-parse --show-toplevel)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
"$PY" make_inputs.py
cargo build -q --release --manifest-path "$ROOT/Cargo.toml" -p moe-train --bin moe -p moe-data --example encode_jsonl
"$TARGET/release/moe" tokenizer train --vocab-size 1000 --out tokenizer.json corpus.jsonl
"$TARGET/release/examples/encode_jsonl" tokenizer.json texts.jsonl rust_ids.jsonl
"$PY" check.py
