#!/usr/bin/env python3
"""Peer GEMM throughput: torch.matmul or numpy `@` on square f32 matrices.

Prints one line per (library, threads, size) with the median GFLOP/s
(2·n³ FLOP per product) over --repeats timed runs after warm-up, plus the
BLAS the library uses, so the numbers sit next to
`cargo bench -p moe-kernels --bench gemm` in BENCHMARKS.md.

Usage (from the repository root):
    python tools/bench/matmul_peer.py --lib torch --threads 1 2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python tools/bench/matmul_peer.py --lib numpy --threads 2

numpy's thread count is set through threadpoolctl when it is installed,
otherwise through OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS
before numpy is imported (then only one --threads value is allowed).
"""

import argparse
import json
import os
import statistics
import time


def time_runs(fn, repeats, min_seconds=1.0):
    """Median seconds of `fn()` over at least `repeats` runs and `min_seconds` total."""
    fn()  # warm-up (allocations, thread pool start)
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def bench_torch(sizes, threads, repeats):
    import torch

    info = {"torch": torch.__version__, "blas": "mkl" if torch.backends.mkl.is_available() else "other"}
    print(f"# torch {torch.__version__}, MKL available: {torch.backends.mkl.is_available()}, "
          f"CPU capability: {torch.backends.cpu.get_cpu_capability()}")
    torch.manual_seed(0)
    for t in threads:
        torch.set_num_threads(t)
        for n in sizes:
            a = torch.randn(n, n, dtype=torch.float32)
            b = torch.randn(n, n, dtype=torch.float32)
            out = torch.empty(n, n, dtype=torch.float32)
            sec, runs = time_runs(lambda: torch.matmul(a, b, out=out), repeats)
            report("torch", t, n, sec, runs, info)


def numpy_blas_info(np):
    try:
        from threadpoolctl import threadpool_info

        return [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
                for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        np.show_config()
        return "see numpy.show_config() output above"


def bench_numpy(sizes, threads, repeats):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
        if len(threads) != 1:
            raise SystemExit("without threadpoolctl, pass a single --threads value")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads[0])
    import numpy as np

    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    info = {"numpy": np.__version__, "blas": numpy_blas_info(np), "env": env}
    print(f"# numpy {np.__version__}, BLAS: {json.dumps(info['blas'])}, env: {env}")
    rng = np.random.default_rng(0)
    for t in threads:
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            out = np.empty((n, n), dtype=np.float32)
            if threadpool_limits is not None:
                with threadpool_limits(limits=t, user_api="blas"):
                    sec, runs = time_runs(lambda: np.matmul(a, b, out=out), repeats)
            else:
                sec, runs = time_runs(lambda: np.matmul(a, b, out=out), repeats)
            report("numpy", t, n, sec, runs, {"numpy": np.__version__})


def report(lib, threads, n, sec, runs, info):
    gflops = 2 * n**3 / sec / 1e9
    print(json.dumps({"lib": lib, "threads": threads, "n": n, "median_s": sec, "runs": runs,
                      "gflops": round(gflops, 1), **info}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", choices=["torch", "numpy"], required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    if args.lib == "torch":
        bench_torch(args.sizes, args.threads, args.repeats)
    else:
        bench_numpy(args.sizes, args.threads, args.repeats)


if __name__ == "__main__":
    main()
