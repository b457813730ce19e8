"""Per-call latency of small problems (n = 16..256): what a loop of many small solves (particle flows,
minibatch OT in flow matching) feels.

monge.solve(C) (exact) vs POT's ot.emd2, monge.assignment(C) vs scipy's linear_sum_assignment, and entropic
monge.solve(C, eps) vs ot.sinkhorn2 at the same eps and marginal tolerance. Same inputs (float64 costs between
uniform points in [0, 1]^2, uniform weights), one process; each figure is the best over ``--repeat`` rounds of
the mean time of ``--calls`` back-to-back calls, the libraries interleaved round-robin. ``--clock cpu`` times
the calling thread's CPU time instead of the wall clock: on a machine shared with other jobs it leaves out the
time the benchmark waits for a core (every solver here runs on the calling thread for one problem). Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_latency.py [--sizes 16 32 64 128 256] [--calls 200] [--repeat 7]
        [--clock wall|cpu] [--only exact assignment entropic]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import ot
import scipy.optimize
import torch
from _common import machine

import monge


CLOCK = time.perf_counter


def per_call(fns: dict, calls: int, repeat: int) -> dict:
    """Best (over ``repeat`` interleaved rounds) mean seconds per call of each callable."""
    for f in fns.values():  # warm-up: imports, first-call caches
        f()
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = CLOCK()
            for _ in range(calls):
                f()
            best[k] = min(best[k], (CLOCK() - t0) / calls)
    return best


def line(name: str, t_monge: float, t_peer: float, peer: str, extra: str = "") -> str:
    return (f"{name:<30} monge {t_monge * 1e3:8.4f} ms   {peer:<10} {t_peer * 1e3:8.4f} ms   "
            f"ratio {t_peer / t_monge:5.2f}x  {extra}")


def problem(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    C = ot.dist(rng.random((n, 2)), rng.random((n, 2)))
    a = np.full(n, 1.0 / n)
    return C, a, torch.from_numpy(C), torch.from_numpy(a)


def bench_exact(n, calls, repeat):
    C, a, Ct, _ = problem(n)
    t = per_call({"monge": lambda: monge.solve(Ct), "pot": lambda: ot.emd2(a, a, C)}, calls, repeat)
    rel = abs(float(monge.solve(Ct).value) - ot.emd2(a, a, C)) / ot.emd2(a, a, C)
    print(line(f"exact n={n}", t["monge"], t["pot"], "ot.emd2", f"rel.diff {rel:.1e}"))


def bench_assignment(n, calls, repeat):
    C, _, Ct, _ = problem(n)
    lsa = scipy.optimize.linear_sum_assignment
    t = per_call({"monge": lambda: monge.assignment(Ct), "scipy": lambda: lsa(C)}, calls, repeat)
    r, c = lsa(C)
    rel = abs(float(monge.assignment(Ct).value) - C[r, c].sum()) / C[r, c].sum()
    print(line(f"assignment n={n}", t["monge"], t["scipy"], "scipy lsa", f"rel.diff {rel:.1e}"))


def bench_entropic(n, calls, repeat, eps, tol):
    C, a, Ct, at = problem(n)
    # POT's stopThr is the l2 norm of the column-marginal error, checked every 10 iterations; monge's tol the
    # l1 marginal error: the same number asks for at least as accurate a plan from monge.
    mon = lambda: monge.solve(Ct, at, at, eps=eps, tol=tol)  # noqa: E731
    pot = lambda: ot.sinkhorn2(a, a, C, eps, stopThr=tol, numItermax=100000)  # noqa: E731
    t = per_call({"monge": mon, "pot": pot}, max(1, calls // 4), repeat)
    res = mon()
    rel = abs(float(res.transport_cost) - float(pot())) / float(pot())
    its = int(res.convergence.n_iters)
    print(line(f"entropic n={n} eps={eps:g}", t["monge"], t["pot"], "sinkhorn2",
               f"rel.diff {rel:.1e}, monge {its} iterations"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--only", nargs="+", choices=["exact", "assignment", "entropic"],
                    default=["exact", "assignment", "entropic"])
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    warnings.simplefilter("ignore", UserWarning)
    print(f"# per-call latency ({args.clock} clock) on {machine()}")
    for family, bench in (("exact", bench_exact), ("assignment", bench_assignment), ("entropic", bench_entropic)):
        for n in args.sizes if family in args.only else ():
            bench(n, args.calls, args.repeat, *((args.eps, args.tol) if family == "entropic" else ()))


if __name__ == "__main__":
    main()
