"""Peer of `cargo bench -p moe-tensor --bench mlp`: the same SwiGLU MLP block,
forward + backward, in PyTorch on the CPU with the same thread count.

Usage: python tools/bench/mlp_step.py [--threads 2]
"""
import argparse
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for tokens, d, f in [(2048, 512, 1376), (4096, 1024, 2816)]:
        x = torch.randn(tokens, d)
        wg = (torch.randn(d, f) * 0.02).requires_grad_()
        wu = (torch.randn(d, f) * 0.02).requires_grad_()
        wd = (torch.randn(f, d) * 0.02).requires_grad_()

        def step():
            h = torch.nn.functional.silu(x @ wg) * (x @ wu)
            loss = (h @ wd).pow(2).mean()
            loss.backward()
            for w in (wg, wu, wd):
                w.grad = None

        step()
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        print(f"torch {torch.__version__} threads={args.threads} T{tokens}_d{d}_f{f}: "
              f"median {med * 1e3:.1f} ms, {tokens / med:.0f} tokens/s (min {times[0] * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
