#!/usr/bin/env python3
"""Fixtures for moe-tensor's safetensors reader, written by the upstream Python
writers: `safetensors.torch.save_file` for one file of every dtype we support, and a
sharded checkpoint split with `huggingface_hub.split_torch_state_dict_into_shards`
plus an index written as transformers' `save_pretrained` writes it.

Every value follows a formula that `moe-tensor/tests/safetensors.rs` recomputes, and
the float values are exact in every float dtype, so the test compares bit for bit.

Usage: python tools/goldens/gen_io.py [--out moe-tensor/tests/goldens/hf_io]
"""

import argparse
import json
import os
import shutil

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file


def dtypes_file(out):
    k = torch.arange(12, dtype=torch.float64) - 5
    tensors = {
        "f32": (k * 0.125).to(torch.float32).reshape(3, 4),
        "f16": (k * 0.125).to(torch.float16),
        "bf16": (k * 0.125).to(torch.bfloat16).reshape(2, 6),
        "f64": (torch.arange(5, dtype=torch.float64) - 2) * 0.1,
        "i64": torch.arange(4, dtype=torch.int64) * 2**40 - 7,
        "u8": torch.arange(0, 256, 37, dtype=torch.uint8),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
    }
    save_file(tensors, os.path.join(out, "torch_dtypes.safetensors"), metadata={"format": "pt"})


def sharded(out):
    d = os.path.join(out, "sharded")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    # Ten 128-byte tensors, at most 300 bytes per shard: five shards of two.
    state = {
        f"layers.{i}.weight": ((torch.arange(32, dtype=torch.float32) + 100 * i) * 0.5).reshape(8, 4)
        for i in range(10)
    }
    split = split_torch_state_dict_into_shards(state, max_shard_size=300)
    for file, names in split.filename_to_tensors.items():
        save_file({n: state[n] for n in names}, os.path.join(d, file), metadata={"format": "pt"})
    index = {"metadata": {"total_parameters": 320, **split.metadata}, "weight_map": split.tensor_to_filename}
    with open(os.path.join(d, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "moe-tensor", "tests", "goldens", "hf_io"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dtypes_file(args.out)
    sharded(args.out)
    for root, _, files in os.walk(args.out):
        for f in sorted(files):
            print(os.path.join(root, f), os.path.getsize(os.path.join(root, f)), "bytes")


if __name__ == "__main__":
    main()
