#!/usr/bin/env python3
"""Markdown tables for the GEMM section of BENCHMARKS.md.

From tools/bench/gemm_rounds.sh (if it ran): square f32 GEMM of moe-kernels,
torch and numpy as "best round (median over rounds)" of each round's median.
From tools/bench/gemm_all.sh: criterion's saved estimates (median time of the
samples) for every bench, plus its single-round torch / numpy / fma_peak logs.

Usage (repository root, same CARGO_TARGET_DIR as the run):
    python3 tools/bench/gemm_table.py
"""

import json
import os
import pathlib
import re
import statistics

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target"))
CRIT = TARGET / "criterion"
LOGS = TARGET / "gemm-bench"


def criterion(baseline):
    """{(group, function, parameter): GFLOP/s} for one saved baseline."""
    out = {}
    for est in CRIT.glob(f"gemm_*/*/*/{baseline}/estimates.json"):
        bench = json.loads((est.parent / "benchmark.json").read_text())
        flop = bench["throughput"]["Elements"]
        median_ns = json.loads(est.read_text())["median"]["point_estimate"]
        group, function, parameter = est.parts[-5], est.parts[-4], est.parts[-3]
        out[(group, function, parameter)] = flop / median_ns  # FLOP/ns = GFLOP/s
    return out


def peers(name):
    """{(threads, n): GFLOP/s} from a matmul_peer.py log."""
    out = {}
    path = LOGS / f"{name}.txt"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                out[(r["threads"], r["n"])] = r["gflops"]
    return out


def fma_peaks():
    """Best 1- and 2-thread FMA peak over the fma_peak runs of the log."""
    best = {}
    for m in re.finditer(r"(\d) thread\(s\):\s+([\d.]+) GFLOP/s", (LOGS / "fma_peak.txt").read_text()):
        t, g = int(m.group(1)), float(m.group(2))
        best[t] = max(best.get(t, 0.0), g)
    return best


def rounds():
    """({(lib, threads, n): [GFLOP/s per round]}, {threads: [FMA peak per round]})."""
    runs, peak = {}, {}
    d = LOGS / "rounds"
    for path in d.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                runs.setdefault((r["lib"], r["threads"], r["n"]), []).append(r["gflops"])
    if (d / "fma_peak.txt").exists():
        for m in re.finditer(r"(\d) thread\(s\):\s+([\d.]+) GFLOP/s", (d / "fma_peak.txt").read_text()):
            peak.setdefault(int(m.group(1)), []).append(float(m.group(2)))
    return runs, peak


def best_median(values):
    if not values:
        return "–"
    return f"{max(values):.1f} ({statistics.median(values):.1f})"


def rounds_table():
    runs, peak = rounds()
    if not runs:
        return
    n_rounds = max(len(v) for v in runs.values())
    p1, p2 = max(peak.get(1, [0])), max(peak.get(2, [0]))
    print(f"Interleaved rounds: {n_rounds}; FMA peak best round: {p1:.1f} GFLOP/s on 1 thread, {p2:.1f} on 2\n")
    libs = [("moe-kernels", 1), ("moe-kernels", 2), ("torch", 1), ("torch", 2), ("numpy", 1), ("numpy", 2)]
    print("| size (f32) | ours 1t | ours 2t | torch 1t | torch 2t | numpy 1t | numpy 2t | ours best 2t, % of 2t FMA peak |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sorted({k[2] for k in runs}):
        cells = [best_median(runs.get((lib, t, n), [])) for lib, t in libs]
        ours2 = runs.get(("moe-kernels", 2, n))
        pct = f"{100 * max(ours2) / p2:.0f}%" if ours2 and p2 else "–"
        print(f"| {n}³ | " + " | ".join(cells) + f" | {pct} |")
    print("\n| size (f32) | moe-kernels 1t | moe-kernels 2t | gemm crate 1t | gemm crate 2t | matrixmultiply 1t | matrixmultiply 2t |")
    print("|---|---|---|---|---|---|---|")
    for n in sorted({k[2] for k in runs}):
        libs = [(lib, t) for lib in ("moe-kernels", "gemm-crate", "matrixmultiply") for t in (1, 2)]
        print(f"| {n}³ | " + " | ".join(best_median(runs.get((lib, t, n), [])) for lib, t in libs) + " |")
    print()


def fmt(x):
    return "–" if x is None else f"{x:.1f}"


def main():
    rounds_table()
    one, two = criterion("gemm_1t"), criterion("gemm_2t")
    torch, numpy = peers("torch"), peers("numpy")
    peak = fma_peaks()
    print(f"FMA peak (fma_peak, best run): {fmt(peak.get(1))} GFLOP/s on 1 thread, {fmt(peak.get(2))} on 2\n")
    print("| size (f32) | ours 1t | ours 2t | torch 1t | torch 2t | numpy 1t | numpy 2t | ours 2t, % of 2-thread FMA peak |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (256, 512, 1024, 2048):
        o1 = one.get(("gemm_square", "f32_1t", str(n)))
        o2 = two.get(("gemm_square", "f32_2t", str(n)))
        pct = None if o2 is None or not peak.get(2) else 100 * o2 / peak[2]
        print(f"| {n}³ | {fmt(o1)} | {fmt(o2)} | {fmt(torch.get((1, n)))} | {fmt(torch.get((2, n)))} "
              f"| {fmt(numpy.get((1, n)))} | {fmt(numpy.get((2, n)))} | {fmt(pct)} |")
    print("\n| problem | ours 1t | ours 2t |")
    print("|---|---|---|")
    rows = sorted({(g, f.rsplit("_", 1)[0], p) for (g, f, p) in {**one, **two}
                   if g in ("gemm_square", "gemm_transformer", "gemm_batched") and not f.startswith("f32")})
    for g, f, p in rows:
        print(f"| {g.removeprefix('gemm_')} {f} {p} | {fmt(one.get((g, f + '_1t', p)))} | {fmt(two.get((g, f + '_2t', p)))} |")
    print("\n| 1024³ / 2048³ f32 | 1t | 2t |")
    print("|---|---|---|")
    for lib in ("moe_kernels", "gemm_crate", "matrixmultiply"):
        for n in (1024, 2048):
            v1 = one.get(("gemm_backends", f"{lib}_1t", str(n)))
            v2 = two.get(("gemm_backends", f"{lib}_2t", str(n)))
            print(f"| {lib} {n}³ | {fmt(v1)} | {fmt(v2)} |")


if __name__ == "__main__":
    main()
