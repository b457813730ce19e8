"""Exact OT between point clouds without a dense cost: the multiscale solver vs the dense network simplex and
POT's ot.emd2 (where the dense cost fits), uniform points in [0,1]^2, squared Euclidean cost.

Prints wall and CPU time (time.process_time: the machine is shared), peak RSS, the certificate (rounds, arcs
priced by the blocked scans against the n m arcs it certifies) and the ratios against the peers, run in the
same process on the same inputs.

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
from monge.solvers.exact import multiscale


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


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
        (res, st), t, c = _timed(lambda: multiscale._multiscale(x, y, None, None, 2.0, 256, 8, 100, 4, 0.25))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        lv = ", ".join(f"{k}: {int(v.n_iters)}" for k, v in res.convergence.levels)
        cert = res.convergence.level("certificate")
        print(f"n = m = {n:<7} multiscale {t:8.2f} s wall {c:8.2f} s CPU  value {float(res.value):.15g}  status "
              f"{res.convergence.status[0]}  gap {float(res.convergence.duality_gap):.1e}  peak RSS {rss:.2f} GB\n"
              f"{'':<16} certificate: {int(cert.n_iters)} add-back rounds, {st['priced']:.3g} arcs priced of "
              f"{float(n) * n:.3g} ({st['priced'] / (float(n) * n) / max(int(cert.n_iters) + 1, 1):.2%} per scan), "
              f"{st['arcs']} candidate arcs; pivots per level [{lv}]", flush=True)
        if n > args.dense_max:
            continue
        C = torch.cdist(x, y) ** 2
        ref, td, cd = _timed(lambda: monge.solve(C))
        rel = abs(float(ref.value) - float(res.value)) / float(ref.value)
        print(f"{'':<16} dense simplex {td:8.2f} s wall {cd:8.2f} s CPU  rel. diff {rel:.1e}  ratio dense/multiscale "
              f"{td / t:5.2f}x wall, {cd / c:5.2f}x CPU", flush=True)
        try:
            import ot
        except ImportError:
            continue
        a = np.full(n, 1.0 / n)
        Cn = C.numpy()
        v, tp, cp = _timed(lambda: ot.emd2(a, a, Cn, numItermax=10**9))
        print(f"{'':<16} POT emd2      {tp:8.2f} s wall {cp:8.2f} s CPU  rel. diff {abs(v - float(res.value)) / v:.1e}"
              f"  ratio POT/multiscale {tp / t:5.2f}x wall, {cp / c:5.2f}x CPU", flush=True)


if __name__ == "__main__":
    main()
