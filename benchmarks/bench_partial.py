"""Partial OT (exact and entropic) against POT's ``ot.partial``, same process, same inputs.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_partial.py --sizes 500 2000`` (about a minute). CPU time
(best of ``--repeat``, interleaved) next to wall; ratios are POT / monge (above 1: monge faster). Both sides are
checked to agree before anything is timed.
"""

from __future__ import annotations

import argparse

import numpy as np
import ot
import torch

from _common import cpu_best, machine

import monge



def case(n: int, eps: float | None, repeat: int) -> None:
    g = torch.Generator().manual_seed(n)
    x, y = torch.rand(n, 2, generator=g, dtype=torch.float64), torch.rand(n, 2, generator=g, dtype=torch.float64)
    y[: n // 10] += 1.0  # 10% outliers that partial OT should leave out
    C = torch.cdist(x, y) ** 2
    a = b = np.full(n, 1.0 / n)
    Cn, mass = C.numpy(), 0.8
    if eps is None:
        fns = {"monge partial_wasserstein": lambda: monge.partial_wasserstein(C, mass=mass),
               "POT ot.partial.partial_wasserstein": lambda: ot.partial.partial_wasserstein(a, b, Cn, m=mass)}
        mine, ref = float(monge.partial_wasserstein(C, mass=mass).value), float(
            (ot.partial.partial_wasserstein(a, b, Cn, m=mass) * Cn).sum())
    else:
        # POT's multiplicative loop divides underflowed kernel entries (0/0) at this eps: its log-domain loop is
        # the one a user gets a plan from. It checks its change every 10 iterations; monge its KKT residual (l1).
        fns = {"monge partial_wasserstein": lambda: monge.partial_wasserstein(C, mass=mass, eps=eps, tol=1e-9),
               "POT entropic_partial_wasserstein (log)": lambda: ot.partial.entropic_partial_wasserstein(
                   a, b, Cn, reg=eps, m=mass, numItermax=100000, stopThr=1e-12, method="sinkhorn_log")}
        P = monge.partial_wasserstein(C, mass=mass, eps=eps, tol=1e-9).plan.numpy()
        Q = ot.partial.entropic_partial_wasserstein(a, b, Cn, reg=eps, m=mass, numItermax=100000, stopThr=1e-12,
                                                    method="sinkhorn_log")
        mine, ref = float((P * Cn).sum()), float((Q * Cn).sum())
        print(f"  n = {n}: max |P_monge - P_POT| = {np.abs(P - Q).max():.2e}; row excess monge "
              f"{np.clip(P.sum(1) - a, 0, None).sum():.1e}, POT {np.clip(Q.sum(1) - a, 0, None).sum():.1e}")
    times = cpu_best(fns, repeat)
    mk = "monge partial_wasserstein"
    print(f"\n## n = {n}, {'exact' if eps is None else f'eps = {eps}'}: <P, C> monge {mine:.10e}, POT {ref:.10e}")
    for k, (c, w) in times.items():
        print(f"  {k:<40s} cpu {c * 1e3:10.2f} ms  wall {w * 1e3:10.2f} ms  POT/monge {c / times[mk][0]:6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(machine())
    for n in args.sizes:
        case(n, None, args.repeat)
        case(n, args.eps, args.repeat)


if __name__ == "__main__":
    main()
