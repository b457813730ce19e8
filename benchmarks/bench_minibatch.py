"""Minibatch OT for flow matching: B problems of n x n (squared Euclidean between Gaussian batches), solved

- by monge's batched auction (``monge.assignment(C, method="auction")``: the torch bidding loop on CUDA, the
  compiled LAPJV batch on the CPU; ``--torch-auction`` also times the bidding loop on the CPU),
- by the flow-matching sampler ``ot_match(x0, x1, batch_dims=1)`` (cost matrix included; fastest exact path),
- by monge's compiled LAPJV on the whole batch (``monge.assignment(C)``, CPU threads),
- by POT's ``ot.emd`` in a Python loop over the batch (what flow-matching code does today).

Same inputs, one process; the ratio is POT-loop time / monge time. The GPU target (B = 64, n = 1024 under 10 ms)
is measured only where CUDA is available (the auction then runs on the GPU, the others on the CPU).
Usage:
    python benchmarks/bench_minibatch.py [--B 64] [--sizes 128 256 1024] [--dtype float32] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import torch
from _common import machine, row

import monge
from monge.apps.minibatch import ot_match


def batch_costs(B, n, d=2, seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(B, n, d, generator=g), torch.randn(B, n, d, generator=g)
    return (torch.cdist(x0, x1) ** 2).to(dtype=dtype, device=device)


def _best(fn, repeat, sync=None):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def pot_loop(C64):
    u = np.full(C64.shape[-1], 1.0 / C64.shape[-1])
    return np.array([ot.emd2(u, u, c) * len(u) for c in C64])


def run(B, n, dtype, repeat, device, torch_auction=False):
    C = batch_costs(B, n, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(0)
    x0, x1 = (torch.randn(B, n, 2, generator=g).to(dtype=dtype, device=device) for _ in range(2))
    C64 = C.double().cpu().numpy()
    sync = torch.cuda.synchronize if C.is_cuda else None
    monge.assignment(C[:2], method="auction")  # warm-up (allocator, kernels)
    t_auc, res = _best(lambda: monge.assignment(C, method="auction"), repeat, sync)
    t_pair, _ = _best(lambda: ot_match(x0, x1, batch_dims=1), repeat, sync)
    t_lap, lap = _best(lambda: monge.assignment(C.cpu().double()), repeat)
    t_pot, ref = _best(lambda: pot_loop(C64), repeat)
    rel = float(np.abs(res.value.double().cpu().numpy() - ref).max() / np.abs(ref).max())
    gap = float(res.convergence.duality_gap.max())
    where = f"{device}, {str(dtype).split('.')[-1]}"
    engine = "compiled LAPJV" if not C.is_cuda else "torch bidding"
    print(row(f"auction B={B} n={n} ({where}, {engine})", t_auc, t_pot, "POT emd loop",
              f"rel.diff {rel:.1e}, max gap {gap:.1e}, rounds {int(res.convergence.n_iters.max())}"))
    print(row(f"ot_match B={B} n={n} ({where}, cost incl.)", t_pair, t_pot, "POT emd loop", "method='auto'"))
    if torch_auction:
        t_bid, bid = _best(lambda: monge.assignment(C, method="auction", engine="torch"), 1, sync)
        print(row(f"torch auction B={B} n={n} ({where})", t_bid, t_pot, "POT emd loop",
                  f"max gap {float(bid.convergence.duality_gap.max()):.1e}"))
    rel_l = float(np.abs(lap.value.double().numpy() - ref).max() / np.abs(ref).max())
    print(row(f"LAPJV batch B={B} n={n} (cpu, float64)", t_lap, t_pot, "POT emd loop", f"rel.diff {rel_l:.1e}"))
    if C.is_cuda and n == 1024 and B == 64:
        print(f"GPU target B=64 n=1024 < 10 ms: {'met' if t_auc < 0.01 else 'NOT met'} ({t_auc * 1e3:.1f} ms, "
              f"{torch.cuda.get_device_name()})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 1024])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--torch-auction", action="store_true", help="also time the torch bidding loop on the CPU")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"# minibatch OT on {machine()}; auction on {device}")
    for n in args.sizes:
        run(args.B, n, getattr(torch, args.dtype), args.repeat, device, args.torch_auction or device != "cpu")


if __name__ == "__main__":
    main()
