"""Round trip: models exported by moe-model (examples/export_hf.rs) load in
transformers with from_pretrained and give our logits. Writes roundtrip.json.

Run from the repository root:
  cargo run -p moe-model --release --example export_hf -- /tmp/moe_roundtrip
  venv/bin/python tools/goldens/model/roundtrip.py /tmp/moe_roundtrip
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

root = sys.argv[1]
result = {"torch": torch.__version__}
import transformers
result["transformers"] = transformers.__version__
for name in sorted(os.listdir(root)):
    d = os.path.join(root, name)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ours = load_file(os.path.join(d, "ours.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=ours["input_ids"]).logits
    diff = (logits - ours["logits"]).abs().max().item()
    result[name] = {"class": type(model).__name__, "max_abs_logit_diff": diff, "ok": diff <= 1e-4}
    print(name, result[name])
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "roundtrip.json")
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
sys.exit(0 if all(v["ok"] for k, v in result.items() if isinstance(v, dict)) else 1)
