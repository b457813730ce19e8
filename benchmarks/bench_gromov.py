"""Gromov-Wasserstein: monge's exact CG vs POT's ot.gromov.gromov_wasserstein, a 2-D spiral against a 3-D Swiss roll.

Square loss, uniform weights, both from the product start, one process, float64, best of ``--repeat``. POT gets its
dense intra-domain costs precomputed (outside the timing); monge starts from the points (low-rank costs, O(n d)).
``--starts spectral`` adds a row per case for ``starts="spectral"`` (CG also from the principal-axis sorted couplings;
the lowest stationary point returned). ``--batch B:n ...`` compares batched entropic GW (one call on ``(B, n, d)``)
with the loop of single calls and with POT's ``entropic_gromov_wasserstein`` in a loop, same process, CPU time.
Usage:
    python benchmarks/bench_gromov.py [--sizes 1000 2000] [--repeat 2] [--big 4000 5000] [--entropic 0]
        [--starts product spectral] [--batch 32:64 8:256] [--dtype float64]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import ot
import torch
from _common import machine, row, settle

from monge.solvers.gromov import gromov_wasserstein


def spiral(n, rng):
    """A noisy 2-D spiral, about unit size."""
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    return np.stack([t * np.cos(t), t * np.sin(t)], 1) / 10 + 0.01 * rng.normal(size=(n, 2))


def swiss_roll(n, rng, height=0.2):
    """A 3-D Swiss roll of the spiral's shape, about unit size, ``height`` deep (the spiral's radius is ~0.94)."""
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    return np.stack([t * np.cos(t) / 10, height * rng.random(n), t * np.sin(t) / 10], 1)


CPU = {}  # the CPU seconds (time.process_time) of the best run of each timed function, by id


def best(fn, repeat):
    """Best wall time of ``repeat`` runs, and the output; the CPU time of that run goes in ``CPU[id(fn)]`` (wall
    times on a shared, loaded machine are inflated; single-threaded CPU time is not)."""
    times, out = [], None
    for _ in range(repeat):
        settle(0.2)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(times)
    CPU[id(fn)] = cpu
    return wall, out


def bench_exact(n, m, repeat, height, peer=True, starts=("product",)):
    rng = np.random.default_rng(0)
    x, y = spiral(n, rng), swiss_roll(m, rng, height)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gromov_wasserstein(xt[:50], yt[:50])  # warm-up (imports, first compiled call)
    runs = {}
    for st in starts:
        run = lambda st=st: gromov_wasserstein(xt, yt, starts=st)  # noqa: E731
        t_m, res = best(run, repeat)
        c = res.convergence
        runs[st] = (t_m, CPU[id(run)], res, f"monge value {float(res.value):.10g} steps {int(c.n_iters)} fw_gap "
                    f"{float(c.error):.1e} {c.status[0]}")
    if not peer:
        for st, (t_m, _, _, info) in runs.items():
            print(f"{'GW ' + str(n) + 'x' + str(m) + ' (monge only, ' + st + ')':<44} monge {t_m:8.3f} s   {info}")
        return
    Cx, Cy = ot.dist(x, x), ot.dist(y, y)
    p, q = np.full(n, 1 / n), np.full(m, 1 / m)
    peer = lambda: ot.gromov.gromov_wasserstein(Cx, Cy, p, q, "square_loss", log=True)  # noqa: E731
    t_p, (_, log) = best(peer, repeat)
    cpu_p = CPU[id(peer)]
    v_p = log["gw_dist"]
    for st, (t_m, cpu_m, res, info) in runs.items():
        rel = (float(res.value) - v_p) / v_p
        print(row(f"GW {n}x{m} spiral vs roll h={height:g} (CG, {st})", t_m, t_p, "POT", f"{info}; POT {v_p:.10g} "
                  f"(monge - POT) / POT = {rel:.1e}; CPU monge {cpu_m:.3f} s POT {cpu_p:.3f} s = "
                  f"{cpu_p / cpu_m:.1f}x"))


def bench_batch(B, n, height, dtype, rel_eps=5e-3):
    """Batched entropic GW (one call) vs the loop of single calls vs POT in a loop: CPU seconds and ratios."""
    rng = np.random.default_rng(0)
    xs = np.stack([spiral(n, rng) for _ in range(B)])
    ys = np.stack([swiss_roll(n, rng, height) for _ in range(B)])
    Cx, Cy = [ot.dist(x, x) for x in xs], [ot.dist(y, y) for y in ys]
    eps = rel_eps * max(max(c.max() for c in Cx), max(c.max() for c in Cy)) ** 2
    xt, yt = torch.from_numpy(xs).to(dtype), torch.from_numpy(ys).to(dtype)
    gromov_wasserstein(xt[:2, :20], yt[:2, :20], eps=eps, max_iter=2)  # warm-up
    p = np.full(n, 1 / n)
    fns = {"batched": lambda: gromov_wasserstein(xt, yt, eps=eps),
           "loop": lambda: [gromov_wasserstein(xt[k], yt[k], eps=eps) for k in range(B)],
           "POT loop": lambda: [ot.gromov.entropic_gromov_wasserstein(Cx[k], Cy[k], p, p, "square_loss", epsilon=eps)
                                for k in range(B)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {k: best(f, 1) for k, f in fns.items()}
    cpu = {k: CPU[id(f)] for k, f in fns.items()}
    res, loop, pot = out["batched"][1], out["loop"][1], out["POT loop"][1]
    gap = max(float((res.plan[k] - loop[k].plan).abs().max()) for k in range(B))
    e_p = [ot.gromov.gwloss(*ot.gromov.init_matrix(Cx[k], Cy[k], p, p, "square_loss"), pot[k]) for k in range(B)]
    rel = np.median([abs(float(res.quadratic_term[k]) - e_p[k]) / e_p[k] for k in range(B)])
    print(f"entropic GW batch B={B} n={n} {str(dtype)[6:]} eps {eps:.2e}: CPU batched {cpu['batched']:.3f} s, "
          f"loop {cpu['loop']:.3f} s, POT loop {cpu['POT loop']:.3f} s; loop / batched {cpu['loop'] / cpu['batched']:.2f}x, "
          f"POT / batched {cpu['POT loop'] / cpu['batched']:.2f}x (wall {out['batched'][0]:.2f} / {out['loop'][0]:.2f} / "
          f"{out['POT loop'][0]:.2f} s); converged {int(res.convergence.converged.sum())}/{B}, outer steps "
          f"{res.convergence.n_iters.min().item()}-{res.convergence.n_iters.max().item()}; max |batched - loop| plan "
          f"{gap:.1e}; median GW term rel. diff to POT {rel:.1e}")


def bench_entropic(n, repeat, height, rel_eps=5e-3):
    rng = np.random.default_rng(0)
    x, y = spiral(n, rng), swiss_roll(n, rng, height)
    Cx, Cy = ot.dist(x, x), ot.dist(y, y)
    p = np.full(n, 1 / n)
    eps = rel_eps * max(Cx.max(), Cy.max()) ** 2
    t_p, T = best(lambda: ot.gromov.entropic_gromov_wasserstein(Cx, Cy, p, p, "square_loss", epsilon=eps), repeat)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gromov_wasserstein(xt[:50], yt[:50], eps=eps)  # warm-up (imports, first calls)
    t_m, res = best(lambda: gromov_wasserstein(xt, yt, eps=eps), repeat)  # from the points: low-rank costs
    e_p = ot.gromov.gwloss(*ot.gromov.init_matrix(Cx, Cy, p, p, "square_loss"), T)
    print(row(f"entropic GW {n}x{n}, eps {eps:.2e}", t_m, t_p, "POT",
              f"GW term monge {float(res.quadratic_term):.6g} POT {e_p:.6g}; plan l1 diff "
              f"{np.abs(res.plan.numpy() - T).sum():.1e}; monge {res.convergence.status[0]}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--big", type=int, nargs=2, default=None, metavar=("N", "M"))
    ap.add_argument("--entropic", type=int, default=0, help="n for the entropic comparison (0: skip)")
    ap.add_argument("--heights", type=float, nargs="+", default=[0.2, 2.0], help="depths of the Swiss roll")
    ap.add_argument("--starts", nargs="+", default=["product"], choices=["product", "spectral"])
    ap.add_argument("--batch", nargs="*", default=[], metavar="B:n", help="batched entropic GW cases, e.g. 32:64")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="of the batched cases")
    args = ap.parse_args()
    print(f"# Gromov-Wasserstein benchmarks on {machine()}")
    for h in args.heights:
        for n in args.sizes:
            bench_exact(n, n, args.repeat, h, starts=args.starts)
    if args.big:
        bench_exact(*args.big, 1, args.heights[0], peer=False, starts=args.starts)
    for case in args.batch:
        B, n = map(int, case.split(":"))
        bench_batch(B, n, args.heights[0], getattr(torch, args.dtype))
    if args.entropic:
        bench_entropic(args.entropic, 1, args.heights[0])


if __name__ == "__main__":
    main()
