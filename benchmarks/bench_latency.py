"""Per-call latency of small problems (n = 16..256): what a loop of many small solves (particle flows,
minibatch OT in flow matching) feels.

monge.solve(C) (exact) vs POT's ot.emd2, monge.assignment(C) vs scipy's linear_sum_assignment, entropic
monge.solve(C, eps) vs ot.sinkhorn2 at the same eps and marginal tolerance (with both final l1 marginal errors),
and monge.sinkhorn_divergence (forward, and forward + backward) vs GeomLoss and POT. Same inputs (float64 costs
between uniform points in [0, 1]^2, uniform weights), one process; each figure is the best over ``--repeat``
rounds of the mean time of ``--calls`` back-to-back calls, the libraries interleaved round-robin. ``--clock cpu``
times the calling thread's CPU time instead of the wall clock: on a machine shared with other jobs it leaves out
the time the benchmark waits for a core (every solver here runs on the calling thread for one problem). Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_latency.py [--sizes 16 32 64 128 256] [--calls 200] [--repeat 7]
        [--clock wall|cpu] [--only exact assignment entropic divergence]
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
    P = ot.sinkhorn(a, a, C, eps, stopThr=tol, numItermax=100000)  # POT's plan: its l1 marginal error
    pot_err = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - a).sum()
    print(line(f"entropic n={n} eps={eps:g}", t["monge"], t["pot"], "sinkhorn2",
               f"rel.diff {rel:.1e}, monge {its} iterations, l1 marginal error monge "
               f"{float(res.convergence.error):.1e} / POT {pot_err:.1e}"))


def _l1_marginals(P, a, b) -> float:
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def _geomloss_error(X, Y, eps, scaling) -> float:
    """l1 marginal error of the OT(x, y) plan of GeomLoss's tensorized solve (its schedule, no debiasing: the
    potentials f_xy, g_xy; cost |x - y|^2 / 2 and temperature blur^2 = eps / 2)."""
    import geomloss

    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    pot = geomloss.SamplesLoss("sinkhorn", p=2, blur=(eps / 2) ** 0.5, scaling=scaling, backend="tensorized",
                               potentials=True, debias=False)
    F, G = (t.reshape(-1).numpy() for t in pot(x, y))
    C = ot.dist(X, Y) / 2
    w = np.full(len(X), 1.0 / len(X))
    return _l1_marginals(w[:, None] * w[None] * np.exp((F[:, None] + G[None] - C) / (eps / 2)), w, w)


def _monge_error(x, y, eps, tol) -> float:
    """l1 marginal error of monge's OT(x, y) term at ``tol`` (the divergence's defaults otherwise)."""
    from monge.problems import LinearProblem
    from monge.solvers import EpsScaling, Sinkhorn

    res = Sinkhorn(eps=eps, tol=tol, schedule=EpsScaling(0.5))(LinearProblem(monge.PointCloud(x, y)))
    return float(res.convergence.error)


def bench_divergence(n, calls, repeat, eps, tol):
    """monge.sinkhorn_divergence forward and forward + backward (w.r.t. x) against GeomLoss's tensorized
    SamplesLoss (cost |x - y|^2 / 2: blur = sqrt(eps / 2) and scaling sqrt(0.5) give the same plans and
    temperatures, and half the value) and POT's empirical divergence (no gradient, no eps-scaling), at equal or
    better accuracy: GeomLoss runs a fixed schedule (one iteration per temperature), whose OT(x, y) plan misses
    its marginals by ``err`` (l1, measured): monge is timed at ``tol = err`` against it ("matched"), and at its
    default tol (1e-7); POT stops on the l2 norm of a marginal error at ``--tol``, monge is timed at the same
    number as its l1 tol (at least as accurate). POT's figure is <P, C> of each plan (no entropy term): not the
    same quantity (its value is printed too)."""
    rng = np.random.default_rng(1)
    X, Y = rng.random((n, 2)), rng.random((n, 2))
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    xg = x.clone().requires_grad_()
    w = np.full(n, 1.0 / n)
    have_geomloss = True
    try:
        import geomloss
    except ImportError:
        have_geomloss = False
    err_g = _geomloss_error(X, Y, eps, 0.5 ** 0.5) if have_geomloss else 1e-7

    def fwd(t):
        return lambda: monge.sinkhorn_divergence(x, y, eps=eps, tol=t)

    def bwd(t):
        def run():
            xg.grad = None
            monge.sinkhorn_divergence(xg, y, eps=eps, tol=t).backward()
        return run

    fns = {"monge": fwd(None), "monge_bwd": bwd(None), "monge_pot": fwd(tol), "monge_m": fwd(err_g),
           "monge_m_bwd": bwd(err_g),
           "pot": lambda: ot.bregman.empirical_sinkhorn_divergence(X, Y, eps, w, w, stopThr=tol, numIterMax=100000)}
    if have_geomloss:
        loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=(eps / 2) ** 0.5, scaling=0.5 ** 0.5, backend="tensorized")

        def geo_bwd():
            xg.grad = None
            loss(xg, y).backward()

        fns["geomloss"], fns["geomloss_bwd"] = (lambda: loss(x, y)), geo_bwd
    t = per_call(fns, max(1, calls // 8), repeat)
    ref = float(monge.sinkhorn_divergence(x, y, eps=eps, tol=1e-13))
    P = ot.bregman.empirical_sinkhorn(X, Y, eps, w, w, stopThr=tol, numIterMax=100000)
    print(line(f"divergence n={n} eps={eps:g}", t["monge_pot"], t["pot"], "POT div",
               f"tol {tol:g}; OT(x, y) l1 marginal error monge {_monge_error(x, y, eps, tol):.1e} / POT "
               f"{_l1_marginals(P, w, w):.1e}; values (converged {ref:.8f}) monge "
               f"{float(fns['monge_pot']()):.8f}, POT <P, C> form {float(fns['pot']()):.8f}"))
    if have_geomloss:
        e_m, v_m, v_g = _monge_error(x, y, eps, err_g), float(fns["monge_m"]()), 2 * float(loss(x, y))
        acc = (f"OT(x, y) l1 marginal error monge {e_m:.1e} / GeomLoss {err_g:.1e}; values (x2 for GeomLoss) "
               f"monge {v_m:.8f}, GeomLoss {v_g:.8f}, converged {ref:.8f}")
        print(line(f"divergence n={n} matched", t["monge_m"], t["geomloss"], "geomloss", acc))
        print(line(f"divergence+grad n={n} matched", t["monge_m_bwd"], t["geomloss_bwd"], "geomloss"))
        print(line(f"divergence n={n} tol 1e-7", t["monge"], t["geomloss"], "geomloss",
                   f"monge error {_monge_error(x, y, eps, None):.1e}"))
        print(line(f"divergence+grad n={n} tol 1e-7", t["monge_bwd"], t["geomloss_bwd"], "geomloss"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--only", nargs="+", choices=["exact", "assignment", "entropic", "divergence"],
                    default=["exact", "assignment", "entropic", "divergence"])
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    warnings.simplefilter("ignore", UserWarning)
    print(f"# per-call latency ({args.clock} clock) on {machine()}")
    for family, bench in (("exact", bench_exact), ("assignment", bench_assignment), ("entropic", bench_entropic),
                          ("divergence", bench_divergence)):
        for n in args.sizes if family in args.only else ():
            bench(n, args.calls, args.repeat, *((args.eps, args.tol) if family in ("entropic", "divergence") else ()))


if __name__ == "__main__":
    main()
