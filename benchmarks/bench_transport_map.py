"""Out-of-sample entropic transport map: monge's ``SinkhornResult.transport(x)`` vs POT's ``SinkhornTransport``.

Same points (uniform in [0,1]^2, targets shifted), squared Euclidean cost, float64, one process. Both fit the
entropic plan between ``n`` sources and ``n`` targets at ``eps``; then ``k`` new points are mapped. monge maps
with the entropic barycentric map :math:`T(x) = \\sum_j \\mathrm{softmax}_j((g_j + \\varepsilon \\log b_j -
|x - y_j|^2)/\\varepsilon)\\, y_j`, by tiles of query points (never a (k, m) matrix beyond a tile); POT's
``transform`` moves each new point by the displacement of its nearest training source (batches of 128). Only the
mapping is timed (the fit is the same Sinkhorn problem on both sides).
Usage: python benchmarks/bench_transport_map.py [--n 1000] [--k 200000] [--eps 0.05]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import ot
import torch
from _common import best_of, machine, row, settle

import monge


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--k", type=int, default=200_000)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x, y = rng.random((args.n, 2)), rng.random((args.n, 2)) + 0.5
    new = rng.random((args.k, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = ot.da.SinkhornTransport(reg_e=args.eps, max_iter=10_000, tol=1e-9).fit(Xs=x, Xt=y)
    res = monge.solve_points(torch.from_numpy(x), torch.from_numpy(y), eps=args.eps, tol=1e-9)
    new_t = torch.from_numpy(new)
    settle()
    times = best_of({"monge": lambda: res.transport(new_t), "pot": lambda: pot.transform(Xs=new)}, args.repeat)
    print(machine())
    print(row(f"transport map n={args.n} k={args.k} eps={args.eps:g}", times["monge"], times["pot"], "POT"))
    on_train = float((res.transport(torch.from_numpy(x)) - res.transport()).abs().max())
    print(f"check: map at the training sources equals (P y) / (P 1) to {on_train:.1e}")


if __name__ == "__main__":
    main()
