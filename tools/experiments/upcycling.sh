#!/usr/bin/env bash
# Upcycling experiment on the built-in corpus: a dense model pre-trained on
# English, then for the same tokens on English + German:
#   dense-continued   the dense model continued
#   naive-upcycled    8 experts top-2, each a copy of the dense FFN
#   drop-upcycled     the same with Drop-Upcycling r = 0.5
#   scratch-moe       the same MoE from random initialisation
# and `moe report` over the four (loss curves in OUT/report).
# Usage: tools/experiments/upcycling.sh [OUT] [PRETRAIN_TOKENS] [TOKENS]
set -euo pipefail
OUT=${1:-upcycling-experiment}
PRE=${2:-393216}
TOK=${3:-393216}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MOE=${MOE:-"$ROOT/target/release/moe"}
[ -x "$MOE" ] || (cd "$ROOT" && cargo build --release -p moe-train --bin moe)
mkdir -p "$OUT" && cd "$OUT"

[ -f data/manifest.json ] || "$MOE" data builtin --out data --domains english,german --docs-per-domain 8000 --vocab-size 1024

run_cfg() { # name tokens mixture [model section]
cat <<TOML
name = "$1"
seed = 0
$4
[data]
dir = "data"
mixture = $3
seq_len = 128
micro_batch = 8
val_domains = ["english", "german"]
val_windows = 32
[train]
tokens = $2
[schedule]
kind = "cosine"
max_lr = 3e-3
min_lr = 3e-4
[eval]
interval = 48
[checkpoint]
keep_last = 1
TOML
}

# The target MoE: the tiny dense model with 8 full-width experts, top-2 renormalised (Mixtral's rule).
cat > moe.toml <<'TOML'
vocab_size = 1024
hidden_size = 64
num_layers = 2
num_heads = 4
num_kv_heads = 4
intermediate_size = 176
activation = "geglu"
max_position_embeddings = 512
[moe]
expert_intermediate_size = 176
[moe.router]
num_experts = 8
top_k = 2
aux_loss_coef = 0.01
z_loss_coef = 0.001
[moe.router.kind]
type = "softmax_top_k"
renormalize = true
scaling_factor = 1.0
[moe.router.capacity]
type = "dropless"
[moe.router.aux_loss]
type = "switch"
TOML

AB='{ english = 0.5, german = 0.5 }'
if [ ! -d runs/dense-pretrain/checkpoints ]; then
  run_cfg dense-pretrain "$PRE" '{ english = 1.0 }' $'[model]\npreset = "tiny-dense"' > pre.toml
  "$MOE" train --config pre.toml --out runs/dense-pretrain --quiet
fi
DENSE=$(ls -d runs/dense-pretrain/checkpoints/step-* | tail -1)
for m in naive drop; do
  [ -d "up-$m" ] || "$MOE" upcycle --from "$DENSE" --config moe.toml --method "$m" --seed 0 --out "up-$m"
done
run_cfg dense-continued "$TOK" "$AB" "" > cont.toml
run_cfg scratch-moe "$TOK" "$AB" $'[model.config]\n'"$(cat moe.toml | sed 's/^\[moe/[model.config.moe/')" > scratch.toml
[ -d runs/dense-continued ] || "$MOE" train --config cont.toml --init-from "$DENSE" --out runs/dense-continued --quiet
for m in naive drop; do
  run_cfg "$m-upcycled" "$TOK" "$AB" "" > "$m.toml"
  [ -d "runs/$m-upcycled" ] || "$MOE" train --config "$m.toml" --init-from "up-$m" --out "runs/$m-upcycled" --quiet
done
[ -d runs/scratch-moe ] || "$MOE" train --config scratch.toml --out runs/scratch-moe --quiet
"$MOE" report runs/dense-continued runs/naive-upcycled runs/drop-upcycled runs/scratch-moe \
  --out report --title "Upcycling: dense continued vs naive / Drop-Upcycling (r = 0.5) vs MoE from scratch" --no-routing
