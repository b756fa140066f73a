"""Peer of `moe bench`: the same decoder trained in PyTorch with random tokens,
clip_grad_norm_ and AdamW, timed per step: on the CPU with the same thread
count, or on a CUDA GPU (optionally bf16 autocast).

Models (as `moe bench --config NAME`): Llama-style, RoPE theta 1e4, RMSNorm
eps 1e-5, SwiGLU, no GQA, untied LM head.
  bench-dense   D 256, 4 layers, 8 heads, FFN 512, vocab 8192
  bench-moe     bench-dense with every FFN 8 experts of width 512, top-2
  gpu-dense     D 768, 12 layers, 12 heads, FFN 2048, vocab 32000
  gpu-moe       gpu-dense with 8 experts of width 1024, top-2
  gpu-granular  gpu-dense with 31 experts of width 512, top-3, and one
                always-on shared expert of width 512
MoE layers: softmax router (weights = the chosen probabilities, not
renormalised), Switch aux loss (Megatron normalisation) x 0.01 and z-loss x
0.001, tokens sorted by expert and run expert by expert (the usual eager
formulation). Attention is
F.scaled_dot_product_attention(is_causal=True), RMSNorm F.rms_norm, the loss
F.cross_entropy. AdamW: lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1
on matrices, 0 on norms; global-norm clipping at 1.0.

Usage: python tools/bench/train_peer.py --config bench-dense [--compile]
       [--steps 10] [--warmup 2] [--threads 2] [--json]
       [--device cuda [--amp bf16]] [--batch-size B] [--seq-len T]
"""
import argparse
import json
import math
import resource
import sys
import time

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

THETA, EPS, AUX_COEF, Z_COEF = 10_000.0, 1e-5, 0.01, 0.001


@dataclass(frozen=True)
class Cfg:
    vocab: int
    d: int
    layers: int
    heads: int
    ffn: int
    experts: int = 0  # 0: dense
    top_k: int = 0
    width: int = 0  # expert width
    shared: int = 0  # always-on shared expert width (0: none)


DENSE_CPU = Cfg(8192, 256, 4, 8, 512)
DENSE_GPU = Cfg(32_000, 768, 12, 12, 2048)
CONFIGS = {
    "bench-dense": DENSE_CPU,
    "bench-moe": Cfg(8192, 256, 4, 8, 512, experts=8, top_k=2, width=512),
    "gpu-dense": DENSE_GPU,
    "gpu-moe": Cfg(32_000, 768, 12, 12, 2048, experts=8, top_k=2, width=1024),
    "gpu-granular": Cfg(32_000, 768, 12, 12, 2048, experts=31, top_k=3, width=512, shared=512),
}


def rope_tables(t, dh):
    inv = 1.0 / THETA ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh)
    ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    ang = torch.cat([ang, ang], -1)
    return ang.cos(), ang.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c.d
        self.heads = c.heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for p in (self.q, self.k, self.v))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate = nn.Linear(d, f, bias=False)
        self.up = nn.Linear(d, f, bias=False)
        self.down = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x)), None


class Moe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.router = nn.Linear(c.d, c.experts, bias=False)
        self.gate_up = nn.Parameter(torch.randn(c.experts, 2 * c.width, c.d) * 0.02)
        self.down = nn.Parameter(torch.randn(c.experts, c.d, c.width) * 0.02)
        self.shared = Mlp(c.d, c.shared) if c.shared else None

    def forward(self, x):
        shape, c = x.shape, self.c
        E, K, W = c.experts, c.top_k, c.width
        x = x.reshape(-1, c.d)
        n = x.shape[0]
        logits = self.router(x).float()
        probs = logits.softmax(-1)
        w, ids = probs.topk(K, -1)  # [N, K]
        flat = ids.reshape(-1)
        order = flat.argsort(stable=True)
        token = order // K
        counts = torch.bincount(flat, minlength=E)
        out = torch.zeros_like(x)
        start = 0
        for e, c in enumerate(counts.tolist()):
            if c == 0:
                continue
            sel = order[start:start + c]
            tok = token[start:start + c]
            h = x[tok] @ self.gate_up[e].t()
            h = F.silu(h[:, :W]) * h[:, W:]
            y = (h @ self.down[e].t()) * w.reshape(-1)[sel, None]
            out.index_add_(0, tok, y.to(out.dtype))
            start += c
        f = counts.detach().float() / (K * n)
        aux = E * (f * probs.mean(0)).sum()
        z = torch.logsumexp(logits, -1).pow(2).mean()
        if self.shared is not None:
            out = out + self.shared(x)[0]
        return out.view(shape), AUX_COEF * aux + Z_COEF * z


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.d = c.d
        self.n1 = nn.Parameter(torch.ones(c.d))
        self.attn = Attention(c)
        self.n2 = nn.Parameter(torch.ones(c.d))
        self.ffn = Moe(c) if c.experts else Mlp(c.d, c.ffn)

    def forward(self, x, cos, sin):
        x = x + self.attn(F.rms_norm(x, (self.d,), self.n1, EPS), cos, sin)
        f, router_loss = self.ffn(F.rms_norm(x, (self.d,), self.n2, EPS))
        return x + f, router_loss


class Decoder(nn.Module):
    def __init__(self, c, t):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab, c.d)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = nn.Parameter(torch.ones(c.d))
        self.head = nn.Linear(c.d, c.vocab, bias=False)
        cos, sin = rope_tables(t, c.d // c.heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * c.layers) if name.endswith(("o.weight", "down.weight", "down")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        t = ids.shape[1]
        h = self.embed(ids)
        extra = 0.0
        for blk in self.blocks:
            h, r = blk(h, self.cos[:t], self.sin[:t])
            if r is not None:
                extra = extra + r
        logits = self.head(F.rms_norm(h, (self.c.d,), self.norm, EPS))
        v = self.c.vocab
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), ids[:, 1:].reshape(-1))
        return ce + extra, ce


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--amp", choices=["none", "bf16"], default="none",
                   help="bf16: torch.autocast(bfloat16) around the forward (f32 master weights)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    b, t = a.batch_size, a.seq_len
    c = CONFIGS[a.config]
    model = Decoder(c, t).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    fwd = torch.compile(model) if a.compile else model
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp == "bf16")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times, losses = [], []
    cpu0 = None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            cpu0 = time.process_time()
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
        ids = torch.randint(0, c.vocab, (b, t), device=dev)
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with amp:
            total, ce = fwd(ids)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(ce.item())  # also waits for the GPU
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
    cpu_step = (time.process_time() - cpu0) / a.steps
    s = sorted(times)
    med = s[len(s) // 2]
    peak = torch.cuda.max_memory_allocated(dev) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mode = "compile" if a.compile else "eager"
    res = {
        "impl": f"torch-{mode}", "torch": torch.__version__, "config": a.config, "batch_size": b, "seq_len": t,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu", "amp": a.amp,
        "threads": torch.get_num_threads(), "params_total": sum(p.numel() for p in model.parameters()),
        "steps": a.steps, "warmup": a.warmup, "step_ms_median": med * 1e3, "step_ms_mean": sum(times) / len(times) * 1e3,
        "step_ms_min": s[0] * 1e3, "tokens_per_s": b * t / med, "cpu_ms_per_step": cpu_step * 1e3,
        "tokens_per_cpu_s": b * t / cpu_step, "peak_rss_bytes" if not cuda else "peak_device_bytes": peak,
        "first_loss": losses[0], "last_loss": losses[-1],
    }
    if a.json:
        print(json.dumps(res))
    else:
        where = res["device"] if cuda else f"{res['threads']} threads"
        mem = "peak GPU memory" if cuda else "peak RSS"
        print(f"torch {torch.__version__} {mode} {a.config}: B={b} T={t}, {res['params_total'] / 1e6:.2f}M params, "
              f"{where}, amp {a.amp}, {a.steps} steps after {a.warmup} warmup")
        print(f"step median {med * 1e3:.1f} ms (mean {res['step_ms_mean']:.1f}, min {s[0] * 1e3:.1f}): "
              f"{b * t / med:.0f} tokens/s; CPU time {cpu_step * 1e3:.0f} ms/step; {mem} {peak / 2**20:.0f} MiB; "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
