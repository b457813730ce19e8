"""Convolutional (grid) Sinkhorn between two 256x256 images: monge.solve_grid vs the kernel-mode convolution.

POT has convolutional barycenters but no convolutional OT between two images; the peer here is the kernel-mode
Sinkhorn loop a POT user writes with POT's own construction (``ot.bregman.convolutional_barycenter2d``): grid
``linspace(0, 1, n)``, separable Gibbs kernel ``K1 = exp(-(x_i - x_j)^2 / reg)``, applied as ``K1 @ img @ K1``.
monge uses the same grid (``spacing = 1/(n-1)``) and ``eps = reg``. Both stop on the same l1 marginal error,
checked every 10 iterations; each side is timed as the best of ``--repeat`` runs, after a pause that lets the
other library's idle threads stop spinning (on 2 cores they otherwise steal one from the side being timed).
Usage: python benchmarks/bench_grid_sinkhorn.py [--n 256] [--eps 1e-2 2e-3 2e-4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _common import machine, settle

import monge


def images(n):
    t = np.linspace(0, 1, n)
    X, Y = np.meshgrid(t, t, indexing="ij")
    a = np.exp(-((X - 0.3) ** 2 + (Y - 0.35) ** 2) / 0.01) + 0.5 * np.exp(-((X - 0.7) ** 2 + (Y - 0.6) ** 2) / 0.005)
    b = ((np.sqrt((X - 0.55) ** 2 + (Y - 0.5) ** 2) - 0.25) ** 2 < 0.003).astype(float) + 1e-3
    return a / a.sum(), b / b.sum()


def kernel_mode(a, b, reg, tol, max_iter=20000):
    """Kernel-mode convolutional Sinkhorn with POT's kernel; returns (seconds, iterations, l1 error)."""
    n = a.shape[0]
    t = np.linspace(0, 1, n)
    K1 = np.exp(-((t[:, None] - t[None, :]) ** 2) / reg)
    conv = lambda img: K1 @ img @ K1  # noqa: E731
    v = np.ones_like(b)
    settle()
    t0 = time.perf_counter()
    err = np.inf
    with np.errstate(all="ignore"):
        for it in range(max_iter):
            u = a / conv(v)
            if it % 10 == 0:
                err = np.abs(u * conv(v) - a).sum() + np.abs(v * conv(u) - b).sum()
                if not np.isfinite(err) or err < tol:
                    break
            v = b / conv(u)
    return time.perf_counter() - t0, it, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-2, 2e-3, 2e-4])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case; the best is reported (both sides)")
    args = ap.parse_args()
    print(f"# grid Sinkhorn, {args.n}x{args.n}, tol {args.tol:g} (l1 marginal), on {machine()}")
    a, b = images(args.n)
    spacing = (1 / (args.n - 1),) * 2
    monge.solve_grid(torch.from_numpy(a[:8, :8] / a[:8, :8].sum()), torch.from_numpy(b[:8, :8] / b[:8, :8].sum()),
                     eps=0.1)  # warm-up
    for eps in args.eps:
        runs = [kernel_mode(a, b, eps, args.tol) for _ in range(args.repeat)]
        t_k, it_k, err_k = min(runs)
        ok = np.isfinite(err_k) and err_k < args.tol
        peer = f"kernel mode {t_k:7.2f} s, {it_k} its, err {err_k:.1e}" + ("" if ok else " (FAILED: underflow/NaN)")
        for dtype in (torch.float64, torch.float32):
            at, bt = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
            tol = max(args.tol, 1e-5) if dtype == torch.float32 else args.tol
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_m = float("inf")
                for _ in range(args.repeat):
                    settle()
                    t0 = time.perf_counter()
                    res = monge.solve_grid(at, bt, eps=eps, spacing=spacing, tol=tol, max_iter=20000)
                    t_m = min(t_m, time.perf_counter() - t0)
            ratio = f"{t_k / t_m:5.2f}x" if ok else "  n/a"
            print(f"eps={eps:<7g} monge {str(dtype)[6:]:<8} {t_m:7.2f} s, {int(res.convergence.n_iters)} its, "
                  f"err {float(res.convergence.error):.1e}, {res.convergence.status[0]:<17} | {peer} | "
                  f"ratio {ratio}")


if __name__ == "__main__":
    main()
