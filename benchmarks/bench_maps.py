"""Issue 16 (maps, peers' expectations): 1-D plan + duals, max-sliced W, domain adaptation, against POT.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_maps.py`` (about 30 s). CPU time (``process_time``,
best of ``--repeat``, interleaved) next to wall time; ratios are POT / monge (above 1: monge faster).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import ot
import torch

from _common import cpu_best, machine

import monge
from monge.apps.domain_adaptation import OTDomainAdapter
from monge.solvers.exact.one_d import solve_1d
from monge.solvers.exact.sliced import max_sliced_wasserstein



def show(title, times, ref="monge"):
    print(f"\n## {title}")
    for k, (c, w) in times.items():
        print(f"  {k:<46s} cpu {c * 1e3:9.2f} ms  wall {w * 1e3:9.2f} ms  peer/monge "
              f"{c / times[ref][0]:6.2f}x")


def one_d(repeat):
    rng = np.random.default_rng(0)
    for n in (1000, 100_000):
        x, y = rng.normal(size=n), rng.normal(size=n) * 2
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
        tx, ty, ta, tb = map(torch.from_numpy, (x, y, a, b))
        show(f"1-D plan and duals, n = m = {n}, random weights", cpu_best({
            "monge": lambda: solve_1d(tx, ty, ta, tb, p=2),
            "POT ot.emd_1d(dense=False) (plan only)": lambda: ot.emd_1d(x, y, a, b, metric="sqeuclidean", dense=False),
            "POT ot.lp.emd_1d_dual_backprop (duals only)": lambda: ot.lp.emd_1d_dual_backprop(tx, ty, ta, tb, p=2),
        }, repeat))
        print(f"  monge duality gap {float(solve_1d(tx, ty, ta, tb).convergence.duality_gap):.1e}")
    B, n = 200, 500
    X, Y = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    show(f"1-D plans, batch B = {B}, n = m = {n}", cpu_best({
        "monge": lambda: solve_1d(tX, tY, p=2),
        "POT emd_1d loop": lambda: [ot.emd_1d(X[i], Y[i], metric="sqeuclidean", dense=False) for i in range(B)],
    }, repeat))


def max_sliced(repeat):
    rng = np.random.default_rng(1)
    print("\n## max-sliced W2, n = 300, 50 projections (value: monge >= POT, both <= exact W2)")
    for d in (2, 10, 50):
        x = rng.normal(size=(300, d))
        y = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) * 0.5 + 0.2
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        t = cpu_best({"monge": lambda: max_sliced_wasserstein(tx, ty, n_projections=50, seed=0),
                      "POT": lambda: ot.max_sliced_wasserstein_distance(x, y, n_projections=50, seed=0)}, repeat)
        v = float(max_sliced_wasserstein(tx, ty, n_projections=50, seed=0))
        pv = ot.max_sliced_wasserstein_distance(x, y, n_projections=50, seed=0)
        print(f"  d = {d:3d}: monge {v:.4f} (cpu {t['monge'][0] * 1e3:.0f} ms)  POT {pv:.4f} "
              f"(cpu {t['POT'][0] * 1e3:.0f} ms)  exact W2 {float(monge.wasserstein(tx, ty)):.4f}")


def domain_adaptation(repeat):
    rng = np.random.default_rng(2)
    xs, xt = rng.normal(size=(1000, 5)), rng.normal(size=(800, 5)) + 1.0
    txs, txt = torch.from_numpy(xs), torch.from_numpy(xt)
    new = xs[:200] + 0.01
    show("domain adaptation, exact, 1000 x 800, d = 5: fit + transform(200 new)", cpu_best({
        "monge": lambda: OTDomainAdapter().fit(txs, txt).transform(torch.from_numpy(new)),
        "POT ot.da.EMDTransport": lambda: ot.da.EMDTransport().fit(Xs=xs, Xt=xt).transform(Xs=new),
    }, repeat))
    show("domain adaptation, sinkhorn eps = 0.5: fit + transform(200 new)", cpu_best({
        "monge": lambda: OTDomainAdapter(method="sinkhorn", eps=0.5).fit(txs, txt).transform(torch.from_numpy(new)),
        "POT ot.da.SinkhornTransport": lambda: ot.da.SinkhornTransport(reg_e=0.5).fit(Xs=xs, Xt=xt).transform(Xs=new),
    }, repeat))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(machine())
    one_d(args.repeat)
    max_sliced(args.repeat)
    domain_adaptation(args.repeat)
