"""Sinkhorn divergence, forward + backward, on the multiscale backend vs GeomLoss ``SamplesLoss("sinkhorn",
backend="multiscale")``: points uniform in [0,1]^d (or ``--data blobs``), float32, blur 0.05 (``--blur``), scaling 0.5
(GeomLoss's cost is |x-y|^2/2 with eps = blur^2; monge runs |x - y|^2 at eps = 2 blur^2, halves its value, and anneals by EpsScaling(0.25)).
Each run in its own process (peak RSS); no warm-up call is timed. The marginal error of the cross term is that of
monge's returned potentials (its ``convergence.error``) and, for GeomLoss, of its returned potentials measured by
the exact lazy soft-min (l1, both marginals).

Usage:
    python benchmarks/bench_multiscale_sinkhorn.py [--n 50000] [--d 3] [--peers geomloss lazy] [--tol 2e-5]
        [--blur 0.05] [--data uniform|blobs]

monge's three OT problems are solved one by one (as ``monge.sinkhorn_divergence`` does), each term's time,
iterations and returned error printed on stderr as it ends.

(``lazy``: monge's exact lazy backend, the reference; GeomLoss's multiscale backend needs pykeops, which compiles
its CPU kernels with g++ at run time: ``pip install --target /tmp/keops --no-deps pykeops keopscore pybind11``
and run with ``PYTHONPATH=/tmp/keops``. GeomLoss runs a fixed schedule: compare at its measured marginal error
by passing ``--tol`` equal to it, and compare values with the lazy run's converged one.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, warnings
import torch
warnings.simplefilter("ignore")
lib, n, d, tol, blur, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), \
    sys.argv[6]
g = torch.Generator().manual_seed(0)
if data == "blobs":  # 20 Gaussian blobs (sigma 0.02), the same centres and masses for both clouds
    centres = 0.1 + 0.8 * torch.rand(20, d, generator=g)
    x = centres[torch.arange(n) % 20] + 0.02 * torch.randn(n, d, generator=g)
    y = centres[torch.arange(n) % 20] + 0.02 * torch.randn(n, d, generator=g)
    x.requires_grad_()
else:
    x = torch.rand(n, d, generator=g).requires_grad_()
    y = torch.rand(n, d, generator=g)
import monge
from monge.geometry._backends.lazy import lazy_softmin
from monge.geometry.costs import SqEuclidean
a = torch.full((n,), 1.0 / n)
t0, c0 = time.perf_counter(), time.process_time()
if lib in ("monge", "lazy"):
    # the three OT problems of monge.sinkhorn_divergence, solved one by one so that the timed run reports the
    # returned errors (no second, untimed solve)
    be = "multiscale" if lib == "monge" else "lazy"
    solver = monge.Sinkhorn(eps=2 * blur**2, schedule=monge.EpsScaling(0.25), tol=tol)
    terms = {}
    for name, geom in (("xy", monge.PointCloud(x, y, backend=be)), ("xx", monge.PointCloud(x, backend=be)),
                       ("yy", monge.PointCloud(y, backend=be))):
        s0 = time.perf_counter()
        terms[name] = solver(monge.LinearProblem(geom, a, a))
        print(f"  {name}: {time.perf_counter() - s0:.1f} s, {int(terms[name].convergence.n_iters)} iterations, error "
              f"{float(terms[name].convergence.error):.1e}", file=sys.stderr, flush=True)
    v = (terms["xy"].value - 0.5 * terms["xx"].value - 0.5 * terms["yy"].value) / 2
    v.backward()
    t, cpu = time.perf_counter() - t0, time.process_time() - c0
    err, value = float(terms["xy"].convergence.error), float(terms["xy"].value) / 2
    extra = {"self_errors": [float(terms[k].convergence.error) for k in ("xx", "yy")],
             "iterations": [int(terms[k].convergence.n_iters) for k in ("xy", "xx", "yy")]}
else:
    from geomloss import SamplesLoss
    v = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.5, backend="multiscale")(x, y)
    v.backward()
    t, cpu = time.perf_counter() - t0, time.process_time() - c0
    # the cross term's marginal error (untimed), from GeomLoss's potentials and the exact lazy soft-min
    F, G = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.5, backend="multiscale", debias=False,
                       potentials=True)(x.detach(), y)
    eps, c = blur**2, SqEuclidean(0.5)
    lw = a.log()
    row = a * torch.exp((F - lazy_softmin(x.detach(), y, G + eps * lw, eps, 1, c)) / eps)
    col = a * torch.exp((G - lazy_softmin(x.detach(), y, F + eps * lw, eps, 0, c)) / eps)
    err = float((row - a).abs().sum() + (col - a).abs().sum())
    value = float((a * F).sum() + (a * G).sum())
    extra = {}
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"time": t, "cpu": cpu, "value": float(v), "grad_norm": float(x.grad.norm()), "rss_mb": rss,
                  "cross_error": err, "cross_value": value, **extra}))
"""


def run(lib, n, d, tol, blur, data):
    out = subprocess.run([sys.executable, "-c", CHILD, lib, str(n), str(d), str(tol), str(blur), data],
                         stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": f"exit status {out.returncode} (its stderr is above)"}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[50000])
    ap.add_argument("--d", type=int, default=3)
    ap.add_argument("--tol", type=float, default=2e-5)
    ap.add_argument("--blur", type=float, default=0.05, help="GeomLoss blur; monge runs eps = 2 blur^2")
    ap.add_argument("--data", default="uniform", choices=["uniform", "blobs"],
                    help="uniform in [0,1]^d, or 20 Gaussian blobs (sigma 0.02), the same centres and masses for x, y")
    ap.add_argument("--peers", nargs="*", default=["geomloss", "lazy"], choices=["geomloss", "lazy"])
    args = ap.parse_args()
    for n in args.n:
        rows = [("monge multiscale", run("monge", n, args.d, args.tol, args.blur, args.data))]
        names = {"geomloss": "geomloss multiscale", "lazy": "monge lazy"}
        rows += [(names[p], run(p, n, args.d, args.tol, args.blur, args.data)) for p in args.peers]
        base = rows[0][1].get("time")
        for name, r in rows:
            ratio = f"ratio {r['time'] / base:5.2f}x" if base and "time" in r and name != rows[0][0] else ""
            print(f"n={n} d={args.d} blur={args.blur} {name:20s} fwd+bwd {r.get('time', float('nan')):8.2f} s (CPU "
                  f"{r.get('cpu', float('nan')):8.2f} s)  value "
                  f"{r.get('value', 0):.6e}  |grad| {r.get('grad_norm', 0):.4e}  cross-term l1 marginal error "
                  f"{r.get('cross_error', float('nan')):.1e} (value {r.get('cross_value', 0):.6e})  peak RSS "
                  f"{r.get('rss_mb', 0):6.0f} MB  {ratio} {r.get('error', '')}", flush=True)
            if "iterations" in r:
                print(f"    iterations (xy, xx, yy) {r['iterations']}, self-term errors "
                      f"{', '.join(f'{e:.1e}' for e in r['self_errors'])}", flush=True)


if __name__ == "__main__":
    main()
