#!/usr/bin/env python3
"""Golden files for moe-tensor's ops, computed with PyTorch.

For each op: seeded inputs (drawn in float32, stored as F32, std ~1, no ties), an
upstream gradient `gy`, and the forward output and input gradients computed in
float64 from those same f32 values (stored as F64). The Rust test
`moe-tensor/tests/golden_ops.rs` runs our ops in f64 (tight tolerance) and in f32
(f32 tolerance) against them. Where the reference is a transformers module that
computes in f32 internally (LlamaRMSNorm, LlamaRotaryEmbedding), the f64 formula is
checked against the module here before anything is written.

Usage: python tools/goldens/gen_ops.py [--out moe-tensor/tests/goldens]
"""

import argparse
import math
import os

import json
import struct

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

SEED = 20250305


class Golden:
    """Collects the tensors and string attributes of one golden file."""

    def __init__(self, name):
        self.name = name
        self.tensors = {}
        self.meta = {"generator": "tools/goldens/gen_ops.py", "torch": torch.__version__}

    def inp(self, key, t):
        """An input: stored as drawn (F32 floats, I64 indices)."""
        self.tensors[key] = t.detach().contiguous().clone()

    def ref(self, key, t):
        """A reference result: stored in f64."""
        self.tensors[key] = t.detach().to(torch.float64).contiguous().clone()

    def attr(self, key, value):
        self.meta[key] = repr(value) if isinstance(value, float) else str(value)

    def save(self, out_dir):
        path = os.path.join(out_dir, self.name + ".safetensors")
        write_safetensors(path, self.tensors, self.meta)
        back = load_file(path)
        assert back.keys() == self.tensors.keys() and all(torch.equal(back[k], v) for k, v in self.tensors.items())
        return path


DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """A safetensors file with sorted metadata and tensors in name order, so that
    regenerating gives byte-identical files (safetensors.torch orders metadata by hash)."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def randn(gen, *shape, std=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * std


def grads(fn, inputs, gy):
    """Forward `fn` on f64 copies of `inputs` (each requiring grad), backward with `gy`."""
    xs = [x.detach().to(torch.float64).requires_grad_(True) for x in inputs]
    y = fn(*xs)
    y.backward(gy.to(torch.float64))
    return y, [x.grad for x in xs]


def check_close(name, a, b, tol):
    err = (a.double() - b.double()).abs().max().item()
    if not err <= tol:
        raise SystemExit(f"{name}: f64 reference and torch/transformers differ by {err} > {tol}")


def gen_matmul(gen):
    g = Golden("matmul")
    # case: (a stored, b stored, how a is used, how b is used)
    cases = {
        "mm": ((5, 7), (7, 3), False, False),
        "bmm": ((2, 3, 4, 5), (2, 3, 5, 6), False, False),
        "bcast": ((2, 3, 4, 5), (5, 6), False, False),
        "tt": ((7, 5), (3, 7), True, True),
        "bt": ((2, 5, 4), (2, 6, 5), True, True),
    }
    for case, (sa, sb, ta, tb) in cases.items():
        a, b = randn(gen, *sa), randn(gen, *sb)
        fn = lambda a, b: (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
        y_shape = fn(a, b).shape
        gy = randn(gen, *y_shape)
        y, (ga, gb) = grads(fn, [a, b], gy)
        g.inp(f"{case}.a", a)
        g.inp(f"{case}.b", b)
        g.inp(f"{case}.gy", gy)
        g.ref(f"{case}.y", y)
        g.ref(f"{case}.grad_a", ga)
        g.ref(f"{case}.grad_b", gb)
        g.attr(f"{case}.transpose_a", ta)
        g.attr(f"{case}.transpose_b", tb)
    return g


def gen_softmax(gen, name, fn):
    g = Golden(name)
    for case, shape, dim in [("last", (3, 4, 10), -1), ("mid", (3, 7, 5), 1)]:
        x = randn(gen, *shape, std=1.5)
        gy = randn(gen, *shape)
        y, (gx,) = grads(lambda x: fn(x, dim=dim), [x], gy)
        check_close(f"{name}.{case}", y, fn(x, dim=dim), 1e-5)
        g.inp(f"{case}.x", x)
        g.inp(f"{case}.gy", gy)
        g.ref(f"{case}.y", y)
        g.ref(f"{case}.grad_x", gx)
        g.attr(f"{case}.dim", dim)
    return g


def rms_norm(x, w, eps):
    # LlamaRMSNorm's formula, in the input's dtype.
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def gen_rms_norm(gen):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    g = Golden("rms_norm")
    for case, shape, eps in [("d16", (2, 5, 16), 1e-6), ("d64", (3, 64), 1e-5)]:
        x = randn(gen, *shape)
        w = 1.0 + 0.3 * randn(gen, shape[-1])
        gy = randn(gen, *shape)
        y, (gx, gw) = grads(lambda x, w: rms_norm(x, w, eps), [x, w], gy)
        hf = LlamaRMSNorm(shape[-1], eps=eps)
        with torch.no_grad():
            hf.weight.copy_(w)
            check_close(f"rms_norm.{case}", y, hf(x), 1e-5)
        g.inp(f"{case}.x", x)
        g.inp(f"{case}.w", w)
        g.inp(f"{case}.gy", gy)
        g.ref(f"{case}.y", y)
        g.ref(f"{case}.grad_x", gx)
        g.ref(f"{case}.grad_w", gw)
        g.attr(f"{case}.eps", eps)
    return g


def rope_cos_sin(positions, dim, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype) / dim))
    freqs = positions.to(dtype)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def gen_rope(gen):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    g = Golden("rope")
    # x is [B, H, T, D] as in HF attention; positions start at `start`.
    for case, (b, h, t, d), theta, start in [("d8", (2, 3, 5, 8), 10000.0, 3), ("d16", (1, 2, 7, 16), 1e6, 0)]:
        x = randn(gen, b, h, t, d)
        gy = randn(gen, b, h, t, d)
        positions = torch.arange(start, start + t, dtype=torch.int64)
        cos, sin = rope_cos_sin(positions, d, theta, torch.float64)
        cfg = LlamaConfig(hidden_size=h * d, num_attention_heads=h, head_dim=d, rope_theta=theta)
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": theta}
        hf_cos, hf_sin = LlamaRotaryEmbedding(cfg)(x, positions[None, :])
        check_close(f"rope.{case}.cos", cos, hf_cos[0], 1e-5)
        check_close(f"rope.{case}.sin", sin, hf_sin[0], 1e-5)
        fn = lambda x: apply_rotary_pos_emb(x, x, cos[None], sin[None])[0]
        y, (gx,) = grads(fn, [x], gy)
        g.inp(f"{case}.x", x)
        g.inp(f"{case}.gy", gy)
        g.inp(f"{case}.positions", positions)
        g.ref(f"{case}.cos", cos)
        g.ref(f"{case}.sin", sin)
        g.ref(f"{case}.y", y)
        g.ref(f"{case}.grad_x", gx)
        g.attr(f"{case}.theta", theta)
        g.attr(f"{case}.start", start)
    return g


def gen_activations(gen):
    g = Golden("activations")
    x = randn(gen, 257, std=2.0)
    gy = randn(gen, 257)
    g.inp("x", x)
    g.inp("gy", gy)
    fns = {
        "silu": F.silu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_erf": lambda x: F.gelu(x, approximate="none"),
    }
    for name, fn in fns.items():
        y, (gx,) = grads(fn, [x], gy)
        g.ref(f"{name}.y", y)
        g.ref(f"{name}.grad_x", gx)
    return g


def repeat_kv(x, n_rep):
    b, hkv, t, d = x.shape
    return x[:, :, None].expand(b, hkv, n_rep, t, d).reshape(b, hkv * n_rep, t, d)


def gen_attention(gen):
    g = Golden("attention")
    # q: [B, H, T, D]; k, v: [B, Hkv, T, D]; query head h reads kv head h / (H / Hkv).
    for case, (b, h, hkv, t, d) in [("gqa", (2, 4, 2, 6, 8)), ("mha", (1, 3, 3, 5, 4)), ("mqa", (1, 4, 1, 9, 16))]:
        q, k, v = randn(gen, b, h, t, d), randn(gen, b, hkv, t, d), randn(gen, b, hkv, t, d)
        gy = randn(gen, b, h, t, d)
        fn = lambda q, k, v: F.scaled_dot_product_attention(
            q, repeat_kv(k, h // hkv), repeat_kv(v, h // hkv), is_causal=True
        )
        y, (gq, gk, gv) = grads(fn, [q, k, v], gy)
        explicit = torch.softmax(
            (q.double() @ repeat_kv(k.double(), h // hkv).transpose(-1, -2) / math.sqrt(d)).masked_fill(
                torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf")
            ),
            dim=-1,
        ) @ repeat_kv(v.double(), h // hkv)
        check_close(f"attention.{case}", y, explicit, 1e-12)
        for key, val in [("q", q), ("k", k), ("v", v), ("gy", gy)]:
            g.inp(f"{case}.{key}", val)
        g.ref(f"{case}.y", y)
        g.ref(f"{case}.grad_q", gq)
        g.ref(f"{case}.grad_k", gk)
        g.ref(f"{case}.grad_v", gv)
        g.attr(f"{case}.scale", 1.0 / math.sqrt(d))
    return g


def gen_cross_entropy(gen):
    g = Golden("cross_entropy")
    n, vocab = 13, 11
    logits = randn(gen, n, vocab, std=2.0)
    targets = torch.randint(0, vocab, (n,), generator=gen, dtype=torch.int64)
    targets[[2, 7, 11]] = -100
    gy = torch.tensor(0.75, dtype=torch.float32)
    g.inp("logits", logits)
    g.inp("targets", targets)
    g.inp("gy", gy)
    g.attr("ignore_index", -100)
    for red in ["mean", "sum"]:
        loss, (gl,) = grads(lambda l: F.cross_entropy(l, targets, ignore_index=-100, reduction=red), [logits], gy)
        g.ref(f"{red}.loss", loss)
        g.ref(f"{red}.grad_logits", gl)
    return g


def gen_embedding(gen):
    g = Golden("embedding")
    vocab, d = 11, 6
    w = randn(gen, vocab, d)
    ids = torch.tensor([[3, 0, 10, 3, 5, 3, 9], [1, 5, 5, 2, 10, 7, 0]], dtype=torch.int64)
    gy = randn(gen, 2, 7, d)
    y, (gw,) = grads(lambda w: F.embedding(ids, w), [w], gy)
    g.inp("weight", w)
    g.inp("ids", ids)
    g.inp("gy", gy)
    g.ref("y", y)
    g.ref("grad_weight", gw)
    return g


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "moe-tensor", "tests", "goldens"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)
    goldens = [
        gen_matmul(gen),
        gen_softmax(gen, "softmax", torch.softmax),
        gen_softmax(gen, "log_softmax", torch.log_softmax),
        gen_rms_norm(gen),
        gen_rope(gen),
        gen_activations(gen),
        gen_attention(gen),
        gen_cross_entropy(gen),
        gen_embedding(gen),
    ]
    for golden in goldens:
        path = golden.save(args.out)
        size = os.path.getsize(path)
        assert size < 1 << 20, f"{path} is {size} bytes; goldens must stay under 1 MiB"
        print(f"{path}: {len(golden.tensors)} tensors, {size} bytes")


if __name__ == "__main__":
    main()
