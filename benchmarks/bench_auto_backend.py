"""Where the multiscale soft-min beats the lazy one: the measurements behind ``backend="auto"``'s thresholds
(:data:`monge.geometry.pointcloud.MULTISCALE_MIN_ENTRIES`, ``MULTISCALE_MAX_DIM``, ``MULTISCALE_MAX_BLUR``).

Each case is one entropic solve on points uniform in [0, 1]^d, float32, squared Euclidean cost, ``eps = blur^2``,
eps-scaling by :class:`~monge.EpsScaling` (factor 0.5, one iteration per stage, as in the Sinkhorn divergence)
followed by a fixed number of iterations at ``eps`` (``fixed_iters``: every backend runs the same iterations, so
the time compares the reductions, not the stop test), on the ``lazy`` and the ``multiscale`` backend, then on
``auto`` (whatever it resolves to at that ``eps``), in one process on the same points. Printed per case: CPU time
(``time.process_time``, all threads: the compiled kernels run their own) and wall time of each, the CPU ratio
lazy / multiscale, the winner, what ``auto`` picks, and the relative difference of the dual values.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_auto_backend.py                    # the default grid (~10 CPU-min)
    OMP_NUM_THREADS=2 python benchmarks/bench_auto_backend.py --n 20000 --d 3 --blur 0.05 --iters 10
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import monge
from monge.geometry import PointCloud
from monge.problems import LinearProblem
from monge.solvers.sinkhorn import Sinkhorn

__all__ = ["run_case", "main"]

#: (n, d, blurs): d = 3 to 5e4 points, d = 2, and d = 10 (where uniform data leaves little to truncate).
GRID = [
    (10000, 3, (0.02, 0.05, 0.1, 0.2)),
    (20000, 3, (0.02, 0.05, 0.1, 0.2)),
    (50000, 3, (0.02, 0.05, 0.1)),
    (20000, 2, (0.02, 0.05, 0.1, 0.2)),
    (10000, 10, (0.1, 0.3, 0.6)),
    (20000, 10, (0.1, 0.3)),
]


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - t0, out


def _solve(x, y, backend, eps, iters, steady):
    """The first solve (eps-scaling + ``iters`` iterations at ``eps``) and a warm ``steady`` solve on the same
    geometry (its caches, e.g. multiscale block lists, kept): ``(first cpu, first wall, steady cpu per iteration,
    value, geometry)``."""
    geom = PointCloud(x, y, backend=backend)
    prob = LinearProblem(geom)
    stages = len(monge.EpsScaling(0.5).temperatures(eps, geom.cost_scale())) - 1
    first = Sinkhorn(eps=eps, schedule=monge.EpsScaling(0.5), max_iter=stages + iters, fixed_iters=True)
    cpu, wall, res = _timed(lambda: first(prob))
    more = Sinkhorn(eps=eps, max_iter=steady, fixed_iters=True)
    cpu2, _, res2 = _timed(lambda: more(prob, init=(res.f, res.g)))
    return cpu, wall, cpu2 / steady, float(res2.value), geom


def run_case(n: int, d: int, blur: float, iters: int, steady: int, seed: int = 0, auto: bool = True) -> dict:
    """One case: ``{backend: (first cpu s, first wall s, steady cpu s per iteration, value)}`` for lazy,
    multiscale and (``auto=True``) auto, and ``pick``: the backend ``auto`` picks at ``eps``."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, d, generator=g), torch.rand(n, d, generator=g)
    eps = blur * blur
    out = {}
    for be in ("lazy", "multiscale", "auto") if auto else ("lazy", "multiscale"):
        out[be] = _solve(x, y, be, eps, iters, steady)[:4]
    geom = PointCloud(x, y)
    pick = getattr(geom, "backend_for", None)  # the eps-dependent choice (older trees: the construction-time one)
    out["pick"] = pick(eps) if pick is not None else geom.backend
    return out


def projected(r, iters: int, total: int) -> float:
    """CPU seconds of eps-scaling + ``total`` iterations at eps: the first solve + the steady rate beyond it."""
    return r[0] + (total - iters) * r[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", help="sizes (with --d and --blur: a grid of your own)")
    ap.add_argument("--d", type=int, nargs="*", default=[3])
    ap.add_argument("--blur", type=float, nargs="*", default=[0.02, 0.05, 0.1])
    ap.add_argument("--iters", type=int, default=10, help="iterations at eps after the annealing stages")
    ap.add_argument("--steady", type=int, default=10, help="warm iterations timed for the per-iteration rate")
    ap.add_argument("--total", type=int, default=100, help="iterations at eps of the projected solve (winner)")
    ap.add_argument("--no-auto", action="store_true", help="time lazy and multiscale only (auto: its pick only)")
    ap.add_argument("--min-entries", type=float, help="try another MULTISCALE_MIN_ENTRIES (auto's n m threshold)")
    ap.add_argument("--max-blur", type=float, help="try another MULTISCALE_MAX_BLUR (auto's sqrt(eps) / diam)")
    args = ap.parse_args()
    from monge.geometry import pointcloud

    if args.min_entries is not None:
        pointcloud.MULTISCALE_MIN_ENTRIES = args.min_entries
    if args.max_blur is not None:
        pointcloud.MULTISCALE_MAX_BLUR = args.max_blur
    print(f"auto: multiscale from n m >= {pointcloud.MULTISCALE_MIN_ENTRIES:.3g}, d <= "
          f"{pointcloud.MULTISCALE_MAX_DIM}, at sqrt(eps) <= {pointcloud.MULTISCALE_MAX_BLUR} diam", flush=True)
    grid = [(n, d, tuple(args.blur)) for n in args.n for d in args.d] if args.n else GRID
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32, uniform [0,1]^d, eps = blur^2; "
          f"first = EpsScaling(0.5) + {args.iters} iterations, it = CPU per steady iteration, proj = CPU of "
          f"EpsScaling + {args.total} iterations", flush=True)
    print(f"{'n':>6} {'d':>3} {'blur':>5} {'b/diam':>6} | {'lazy first CPU/wall':>19} {'it':>6} | "
          f"{'multisc. first CPU/wall':>23} {'it':>6} | {'proj lazy/ms':>12} {'winner':>10} | {'auto':>10} "
          f"{'first':>6} {'it':>6} {'lazy/auto':>7} | value diff", flush=True)
    for n, d, blurs in grid:
        for blur in blurs:
            r = run_case(n, d, blur, args.iters, args.steady, auto=not args.no_auto)
            lz, ms, au = r["lazy"], r["multiscale"], r.get("auto", (math.nan,) * 3 + (r["lazy"][3],))
            pl, pm = projected(lz, args.iters, args.total), projected(ms, args.iters, args.total)
            pa = projected(au, args.iters, args.total)
            win = "multiscale" if pm < pl else "lazy"
            diff = max(abs(ms[3] - lz[3]), abs(au[3] - lz[3])) / abs(lz[3])
            print(f"{n:>6} {d:>3} {blur:>5.2f} {blur / math.sqrt(d):>6.3f} | {lz[0]:>8.2f} / {lz[1]:>8.2f} "
                  f"{lz[2]:>6.3f} | {ms[0]:>10.2f} / {ms[1]:>10.2f} {ms[2]:>6.3f} | {pl / pm:>11.2f}x {win:>10} | "
                  f"{r['pick']:>10} {au[0]:>6.2f} {au[2]:>6.3f} {pl / pa:>6.2f}x | {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
