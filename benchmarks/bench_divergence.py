"""Sinkhorn divergence forward + backward: monge (lazy, compiled CPU kernel) vs GeomLoss (KeOps ``online``,
``multiscale``, ``tensorized`` where it fits). Also reports the peak resident memory of each run.

Points uniform in [0,1]^3, float32, blur 0.05, scaling 0.5 (GeomLoss conventions: its p=2 cost is |x-y|^2/2 and
eps = blur^2; monge uses |x-y|^2, so the same problem is monge's eps = 2 blur^2 and its value is twice
GeomLoss's). Each library runs in its own subprocess so that the peak RSS is its own.
Usage: python benchmarks/bench_divergence.py [--n 10000 50000] [--peers online multiscale]
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
lib, n, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
g = torch.Generator().manual_seed(0)
x = torch.rand(n, 3, generator=g).requires_grad_()
y = torch.rand(n, 3, generator=g)
blur = 0.05
if lib == "monge":
    import monge
    fn = lambda: monge.sinkhorn_divergence(x, y, eps=2 * blur**2, schedule=monge.EpsScaling(0.25), backend="lazy") / 2
else:
    from geomloss import SamplesLoss
    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.5, backend=backend)
    fn = lambda: loss(x, y)
fn(); x.grad = None  # warm-up (KeOps compiles its formulas on first use)
t0 = time.perf_counter()
v = fn()
v.backward()
t = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"time": t, "value": float(v), "grad_norm": float(x.grad.norm()), "rss_mb": rss}))
"""


def run(lib, n, backend):
    out = subprocess.run([sys.executable, "-c", CHILD, lib, str(n), backend], capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[10000])
    ap.add_argument("--peers", nargs="+", default=["online", "multiscale"])
    args = ap.parse_args()
    for n in args.n:
        m = run("monge", n, "lazy")
        print(f"n={n:>6} monge lazy kernel     fwd+bwd {m.get('time', float('nan')):8.2f} s  value {m.get('value', 0):.6e}"
              f"  |grad| {m.get('grad_norm', 0):.4e}  peak RSS {m.get('rss_mb', 0):7.0f} MB {m.get('error', '')}")
        for peer in args.peers:
            r = run("geomloss", n, peer)
            if "error" in r:
                print(f"n={n:>6} geomloss {peer:<13} failed: {r['error']}")
                continue
            ratio = r["time"] / m["time"] if "time" in m else float("nan")
            print(f"n={n:>6} geomloss {peer:<13} fwd+bwd {r['time']:8.2f} s  value {r['value']:.6e}"
                  f"  |grad| {r['grad_norm']:.4e}  peak RSS {r['rss_mb']:7.0f} MB   ratio {ratio:5.2f}x")


if __name__ == "__main__":
    main()
