"""Exact OT: monge's network simplex / assignment vs POT's ot.emd2 and scipy's linear_sum_assignment.

Same inputs, one process, best of ``--repeat`` runs. Usage:
    python benchmarks/bench_exact.py [--sizes 1000 4000] [--big 8000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import scipy.optimize
import torch
from _common import machine, row, timeit

import monge


def points(n, m, seed=0, layout="uniform"):
    """Costs between clouds: ``uniform`` in [0,1]^2, or ``spread``: a standard Gaussian to a 1.9x wider one,
    shifted (each row's partners lie beyond its cheapest columns: the case that defeats cost shortlists)."""
    rng = np.random.default_rng(seed)
    if layout == "spread":
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) * 1.9 + 1.0
    else:
        x, y = rng.random((n, 2)), rng.random((m, 2))
    return ot.dist(x, y), rng


def bench_emd(n, m, weights, repeat, layout="uniform"):
    C, rng = points(n, m, layout=layout)
    if weights == "uniform":
        a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    else:
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    Ct, at, bt = map(torch.from_numpy, (C, a, b))
    t_pot, v_pot = timeit(lambda: ot.emd2(a, b, C, numItermax=10**8), repeat)
    t_ns, r_ns = timeit(lambda: monge.solve(Ct, at, bt, method="network_simplex"), repeat)
    rel = abs(float(r_ns.value) - v_pot) / v_pot
    where = "" if layout == "uniform" else f", {layout}"
    print(row(f"emd {n}x{m} {weights}{where} (network simplex)", t_ns, t_pot, "POT emd2", f"rel.diff {rel:.1e}"))
    if weights == "uniform" and n == m and layout == "uniform":
        t_as, r_as = timeit(lambda: monge.solve(Ct, method="assignment"), repeat)
        rel = abs(float(r_as.value) - v_pot) / v_pot
        print(row(f"emd {n}x{m} uniform (method=assignment)", t_as, t_pot, "POT emd2", f"rel.diff {rel:.1e}"))


def bench_big(n):
    C, _ = points(n, n)
    a = np.full(n, 1 / n)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            v_pot = ot.emd2(a, a, C)  # POT's default numItermax=100000
    t_pot = time.perf_counter() - t0
    warned = any("numItermax" in str(x.message) or "max" in str(x.message).lower() for x in w)
    Ct = torch.from_numpy(C)
    t_ns, r = timeit(lambda: monge.solve(Ct, torch.from_numpy(a), torch.from_numpy(a), method="network_simplex"), 1)
    print(row(f"emd {n}x{n} uniform, POT default cap", t_ns, t_pot, "POT emd2",
              f"monge {r.convergence.status[0]} value {float(r.value):.8f} gap {float(r.convergence.duality_gap):.1e};"
              f" POT value {v_pot:.8f} (warned: {warned})"))


def bench_assignment(n, repeat):
    C, _ = points(n, n)
    Ct = torch.from_numpy(C)
    t_sp, (r, c) = timeit(lambda: scipy.optimize.linear_sum_assignment(C), repeat)
    t_m, res = timeit(lambda: monge.assignment(Ct), repeat)
    rel = abs(float(res.value) - C[r, c].sum()) / C[r, c].sum()
    print(row(f"assignment {n}x{n} (points in [0,1]^2)", t_m, t_sp, "scipy lsa", f"rel.diff {rel:.1e}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--big", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"# exact OT benchmarks on {machine()}")
    for n in args.sizes:
        bench_emd(n, n, "uniform", args.repeat)
        bench_emd(n, n, "dirichlet", args.repeat)
    bench_emd(3000, 5000, "dirichlet", 1)
    for n in args.sizes:
        bench_emd(n, n, "dirichlet", 1, layout="spread")
    for n in args.sizes:
        bench_assignment(n, args.repeat)
    if args.big:
        bench_big(args.big)


if __name__ == "__main__":
    main()
