"""1-D exact W_p: monge against scipy, POT and a bare numpy sort, in one process on the same inputs.

Run: ``.venv/bin/python benchmarks/bench_1d.py`` (about 20 s). Each timing is the best of ``--repeat`` runs,
interleaved (monge, peer, monge, peer, ...) so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import ot
import scipy.stats
import torch

from _common import best_of

from monge.solvers.exact.one_d import wasserstein_1d


def report(title: str, times: dict, ref: str = "monge") -> None:
    print(f"\n## {title}")
    for k, t in times.items():
        ratio = t / times[ref]
        print(f"  {k:<44s} {t * 1e3:9.2f} ms   {ratio:7.2f}x monge")


def single(n: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    xn, yn = rng.normal(size=n), rng.normal(1.0, 2.0, size=n)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    w = float(wasserstein_1d(x, y, p=1))
    ws = scipy.stats.wasserstein_distance(xn, yn)
    wo = float(ot.wasserstein_1d(x, y, p=1))
    print(f"\nvalues (p=1, n=m={n}): monge {w:.12g}  scipy {ws:.12g}  POT {wo:.12g}")

    def fwd_bwd():
        wasserstein_1d(xg, yg, p=1).backward()

    times = best_of(
        {
            "monge": lambda: wasserstein_1d(x, y, p=1),
            "numpy sort (np.sort(x); np.sort(y))": lambda: (np.sort(xn), np.sort(yn)),
            "torch.sort(x); torch.sort(y)": lambda: (torch.sort(x), torch.sort(y)),
            "scipy.stats.wasserstein_distance": lambda: scipy.stats.wasserstein_distance(xn, yn),
            "POT ot.wasserstein_1d (torch, W_p^p)": lambda: ot.wasserstein_1d(x, y, p=1),
            "monge forward+backward (grad x, y)": fwd_bwd,
        },
        repeat,
    )
    report(f"n = m = {n}, uniform weights, p = 1, float64, CPU", times)

    an, bn = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    a, b = torch.from_numpy(an), torch.from_numpy(bn)
    times = best_of(
        {
            "monge": lambda: wasserstein_1d(x, y, a, b, p=1),
            "scipy.stats.wasserstein_distance": lambda: scipy.stats.wasserstein_distance(xn, yn, an, bn),
            "POT ot.wasserstein_1d (torch, W_p^p)": lambda: ot.wasserstein_1d(x, y, a, b, p=1),
        },
        max(2, repeat // 2),
    )
    report(f"n = m = {n}, Dirichlet weights, p = 1, float64, CPU", times)


def batched(batch: int, n: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    xn, yn = rng.normal(size=(batch, n)), rng.normal(0.5, 1.5, size=(batch, n))
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)
    w = wasserstein_1d(x, y, p=1).numpy()
    ws = np.array([scipy.stats.wasserstein_distance(xn[i], yn[i]) for i in range(batch)])
    print(f"\nbatched max |monge - scipy| = {np.abs(w - ws).max():.2e}")
    times = best_of(
        {
            "monge": lambda: wasserstein_1d(x, y, p=1),
            "scipy loop over the batch": lambda: [scipy.stats.wasserstein_distance(xn[i], yn[i]) for i in range(batch)],
            # POT's 1-D routine works along axis 0: samples are rows, problems are columns
            "POT ot.wasserstein_1d (torch, batched)": lambda: ot.wasserstein_1d(x.T, y.T, p=1),
            "numpy sort (np.sort(x, -1); np.sort(y, -1))": lambda: (np.sort(xn, -1), np.sort(yn, -1)),
        },
        repeat,
    )
    report(f"batch {batch} x n = m = {n}, uniform, p = 1, float64, CPU", times)


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="ot")  # POT's internal x.T on 3-D tensors
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10**6)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, numpy {np.__version__}, POT {ot.__version__}, threads {torch.get_num_threads()}")
    single(args.n, args.repeat)
    batched(100, 10**4, args.repeat)


if __name__ == "__main__":
    main()
