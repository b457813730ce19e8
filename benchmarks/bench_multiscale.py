"""Exact OT between point clouds without a dense cost: solve_points(method="multiscale") vs the dense network
simplex and POT's ot.emd2 (where the dense cost fits), uniform points in [0,1]^2, squared Euclidean cost.

Usage:
    python benchmarks/bench_multiscale.py [--sizes 2000 10000 100000] [--dense-max 10000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from _common import machine

import monge


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="*", default=[2000, 10000])
    p.add_argument("--dense-max", type=int, default=10000)
    p.add_argument("--d", type=int, default=2)
    args = p.parse_args()
    print(machine())
    for n in args.sizes:
        g = torch.Generator().manual_seed(n)
        x = torch.rand(n, args.d, generator=g, dtype=torch.float64)
        y = torch.rand(n, args.d, generator=g, dtype=torch.float64)
        t0 = time.perf_counter()
        res = monge.solve_points(x, y, method="multiscale")
        t = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        lv = ", ".join(f"{k}: {int(c.n_iters)}" for k, c in res.convergence.levels)
        print(f"n = m = {n:<7} multiscale {t:8.2f} s  value {float(res.value):.15g}  status {res.convergence.status[0]}  "
              f"gap {float(res.convergence.duality_gap):.1e}  peak RSS {rss:.2f} GB  [{lv}]", flush=True)
        if n > args.dense_max:
            continue
        C = torch.cdist(x, y) ** 2
        t0 = time.perf_counter()
        ref = monge.solve(C)
        td = time.perf_counter() - t0
        rel = abs(float(ref.value) - float(res.value)) / float(ref.value)
        print(f"{'':<16} dense simplex {td:8.2f} s  rel. diff {rel:.1e}  ratio {td / t:5.2f}x", flush=True)
        try:
            import ot
        except ImportError:
            continue
        a = np.full(n, 1.0 / n)
        Cn = C.numpy()
        t0 = time.perf_counter()
        v = ot.emd2(a, a, Cn, numItermax=10**9)
        tp = time.perf_counter() - t0
        print(f"{'':<16} POT emd2      {tp:8.2f} s  rel. diff {abs(v - float(res.value)) / v:.1e}  ratio {tp / t:5.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
