"""Free-support barycenter vs POT, and k-means vs scikit-learn, on the same inputs and initialisations.

1. Free-support W_2 barycenter of K = 4 clouds of 1000-2000 points in 2-D (k support points): monge
   ``free_support_barycenter`` vs ``ot.lp.free_support_barycenter``, same init, same weights, the same number of
   support updates (both stop only at ``--iters`` or a fixed point). monge also solves once more at the returned
   support (its ``value``); both objectives are then evaluated by monge's exact solver, outside the timings.
2. k-means on 10^5 points, k = 50: monge ``kmeans`` (Lloyd) vs scikit-learn ``KMeans(algorithm="lloyd")``, same
   k-means++ init, ``tol=0``, time per Lloyd iteration and inertia (sklearn's inertia / n = monge's W_2^2).

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_free_support.py [--iters 10] [--k 1000] [--n-kmeans 100000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _common import machine

from monge.solvers.free_support import free_support_barycenter
from monge.apps.kmeans import kmeans, kmeans_plusplus


def objective(X, xs, as_, lam):
    import monge

    Xt = torch.as_tensor(X)
    return sum(float(lk) * float(monge.solve(monge.PointCloud(Xt, torch.as_tensor(x)), None, torch.as_tensor(a)).value)
               for x, a, lk in zip(xs, as_, lam))


def bench_barycenter(iters: int, k: int):
    import ot

    rng = np.random.default_rng(0)
    sizes = (1000, 1400, 1700, 2000)
    xs = [rng.normal(size=(n, 2)) * (1 + 0.3 * i) + np.array([i, -i]) for i, n in enumerate(sizes)]
    as_ = [rng.dirichlet(np.ones(n) * 5) for n in sizes]
    lam = np.full(4, 0.25)
    X0 = np.concatenate(xs)[rng.choice(sum(sizes), k, replace=False)]
    t0 = time.perf_counter()
    Xp = ot.lp.free_support_barycenter(xs, as_, X0, weights=lam, numItermax=iters, stopThr=0.0)
    t_pot = time.perf_counter() - t0
    tt = [torch.from_numpy(v) for v in (*xs, *as_, lam, X0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = free_support_barycenter(tt[:4], tt[4:8], tt[8], init=tt[9], max_iter=iters, tol=1e-300)
        t_monge = time.perf_counter() - t0
    n_it = int(res.convergence.n_iters)
    print(f"free-support barycenter, K=4 clouds of {sizes}, k={k}, {n_it} updates (POT: <= {iters})")
    print(f"  monge {t_monge:7.2f} s ({t_monge / (n_it + 1):.3f} s per OT round, incl. the final value) | "
          f"POT {t_pot:7.2f} s | ratio POT/monge {t_pot / t_monge:5.2f}x")
    print(f"  objective sum_k lam_k W2^2: monge {objective(res.support.numpy(), xs, as_, lam):.8f} | "
          f"POT {objective(Xp, xs, as_, lam):.8f} | max |X_monge - X_POT| {np.abs(res.support.numpy() - Xp).max():.1e}")


def bench_kmeans(n: int, k: int, iters: int):
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(1)
    centers = rng.uniform(-10, 10, size=(k, 2))
    X = centers[rng.integers(0, k, n)] + rng.normal(size=(n, 2))
    x = torch.from_numpy(X)
    c0 = kmeans_plusplus(x, k, seed=0)
    print(f"k-means, n={n}, d=2, k={k}, same k-means++ init, at most {iters} Lloyd iterations")
    for dtype in (torch.float64, torch.float32):
        xd = x.to(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            res = kmeans(xd, k, init=c0.to(dtype), max_iter=iters, tol=1e-300)
            t_m = time.perf_counter() - t0
        Xs = X.astype(np.float64 if dtype == torch.float64 else np.float32)
        t0 = time.perf_counter()
        sk = KMeans(k, init=c0.numpy().astype(Xs.dtype), n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(Xs)
        t_s = time.perf_counter() - t0
        pm, ps = t_m / max(1, res.n_iters), t_s / max(1, sk.n_iter_)
        print(f"  {str(dtype)[6:]:<8} monge {t_m:6.2f} s, {res.n_iters} its, {pm * 1e3:7.1f} ms/it, inertia "
              f"{float(res.inertia):.8f} | sklearn {t_s:6.2f} s, {sk.n_iter_} its, {ps * 1e3:7.1f} ms/it, inertia/n "
              f"{sk.inertia_ / n:.8f} | ratio per it sklearn/monge {ps / pm:5.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--n-kmeans", type=int, default=100_000)
    ap.add_argument("--k-kmeans", type=int, default=50)
    ap.add_argument("--kmeans-iters", type=int, default=30)
    args = ap.parse_args()
    print(f"# free-support barycenter and k-means, on {machine()}")
    bench_barycenter(args.iters, args.k)
    bench_kmeans(args.n_kmeans, args.k_kmeans, args.kmeans_iters)


if __name__ == "__main__":
    main()
