"""Entropic OT: monge's log-domain Sinkhorn vs POT's kernel-mode and log-domain Sinkhorn.

Same points (uniform in [0,1]^2), squared Euclidean cost, float64, one process. POT's kernel mode runs with its
defaults; monge is then asked for the same l1 marginal error that POT reached (``tol``), so both stop at equal
accuracy. Usage: python benchmarks/bench_sinkhorn.py [--n 4000] [--eps 1e-2 1e-3] [--n-log 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import ot
import torch
from _common import machine, row, timeit

import monge


def l1_marginal_error(P, a, b):
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def bench_kernel_mode(n, eps, backends):
    rng = np.random.default_rng(0)
    x, y = rng.random((n, 2)), rng.random((n, 2))
    a = np.full(n, 1 / n)
    C = ot.dist(x, y)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), time.process_time()
        P, log = ot.sinkhorn(a, a, C, eps, method="sinkhorn", log=True, numItermax=10**5)
        t_pot, c_pot = time.perf_counter() - t0, time.process_time() - c0
    err_pot = l1_marginal_error(P, a, a)
    warned = sorted({str(m.message)[:40] for m in w})
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    tol = max(err_pot, 1e-9)
    monge.solve_points(xt[:10], yt[:10], eps=1.0)  # warm-up: one-time imports inside torch
    for backend in backends:
        t0, c0 = time.perf_counter(), time.process_time()
        if backend == "matrix":  # the user hands over the cost matrix: DenseCost, compiled dense soft-min
            res = monge.solve(torch.from_numpy(C), eps=eps, tol=tol, max_iter=10**5)
        else:
            res = monge.solve_points(xt, yt, eps=eps, tol=tol, backend=backend, max_iter=10**5)
        t_m, c_m = time.perf_counter() - t0, time.process_time() - c0
        P_m = res.plan.numpy()
        extra = (f"l1 err: POT {err_pot:.1e} ({log['niter']} its), monge {l1_marginal_error(P_m, a, a):.1e} "
                 f"({int(res.convergence.n_iters)} its); <P,C> rel.diff "
                 f"{abs((P_m * C).sum() - (P * C).sum()) / (P * C).sum():.1e}; POT warnings: {warned or 'none'}; "
                 f"CPU s monge {c_m:.3f} POT {c_pot:.3f} ratio {c_pot / c_m:.2f}x")
        print(row(f"sinkhorn n={n} eps={eps:g} ({backend})", t_m, t_pot, "POT kernel", extra))


def bench_log_domain(n, eps):
    """Time to the same accuracy against POT's log-domain solver (both log-stable)."""
    rng = np.random.default_rng(1)
    x, y = rng.random((n, 2)), rng.random((n, 2))
    a = np.full(n, 1 / n)
    C = ot.dist(x, y)
    t0 = time.perf_counter()
    P, log = ot.sinkhorn(a, a, C, eps, method="sinkhorn_log", log=True, numItermax=10**5)
    t_pot = time.perf_counter() - t0
    err = l1_marginal_error(P, a, a)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for backend in ("lazy", "dense"):
        t_m, res = timeit(lambda: monge.solve_points(xt, yt, eps=eps, tol=max(err, 1e-9), backend=backend), 2, 1)
        print(row(f"log-domain n={n} eps={eps:g} ({backend})", t_m, t_pot, "POT sinkhorn_log",
                  f"its POT {log['niter']} monge {int(res.convergence.n_iters)}; l1 err POT {err:.1e} monge "
                  f"{l1_marginal_error(res.plan.numpy(), a, a):.1e}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-2, 1e-3])
    ap.add_argument("--n-log", type=int, default=1000)
    ap.add_argument("--backends", nargs="+", default=["lazy"], help="monge backends: lazy, dense (point cloud, materialised), matrix (a given cost matrix)")
    args = ap.parse_args()
    print(f"# entropic OT benchmarks on {machine()}")
    bench_log_domain(args.n_log, 1e-2)
    for eps in args.eps:
        bench_kernel_mode(args.n, eps, args.backends)


if __name__ == "__main__":
    main()
