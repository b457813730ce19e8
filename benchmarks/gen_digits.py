"""Recorded runs of the generative models on digits (default) or MNIST, with fixed seeds, and their metrics table.

Each model is trained by its recipe (``monge.apps.generative.recipes``), then scored on the held-out split: exact W_2 between
n generated and n held-out samples, next to the floor (n real training samples) and a fitted Gaussian, and a
digit classifier trained on real data (classes found with confidence > 0.5, mean confidence). Targets (digits,
CPU, <= 10 min each): the Sinkhorn model and WGAN-GP within 1.3x of the floor, far below the Gaussian, and all
10 classes found. Samples, curves and metrics.json of every run are written under ``--out``.

Usage: python benchmarks/gen_digits.py [--data digits|mnist] [--models sinkhorn wgan-gp learned-cost]
       [--steps N] [--n-train N] [--latent-dim 2] [--device auto] [--out gen_runs]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from _common import machine

from monge.apps.generative import run_experiment

TARGET_RATIO = 1.3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits", choices=["digits", "mnist"])
    ap.add_argument("--models", nargs="+", default=["sinkhorn", "wgan-gp", "learned-cost"])
    ap.add_argument("--steps", type=int, default=None, help="override every recipe's number of steps")
    ap.add_argument("--n-train", type=int, default=None, help="MNIST: training images (default: all 60000)")
    ap.add_argument("--latent-dim", type=int, default=None, help="2 also draws the latent manifold (latent.png)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for samples/curves/metrics (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="gen_runs_"))
    print(f"# generative models on {args.data}, seed {args.seed}, on {machine()}; outputs in {out}")
    head = (f"{'model':<13} {'steps':>6} {'time':>8} {'W2 gen':>8} {'floor':>7} {'Gauss':>7} {'ratio':>6} "
            f"{'S_eps gen':>9} {'floor':>7} {'classes':>7} {'conf':>5}  target")
    print(head)
    for model in args.models:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inner-solver notes at training tolerances
            res, m, _ = run_experiment(model, args.data, out=out / f"{args.data}_{model}", seed=args.seed,
                                       device=args.device, n_train=args.n_train, steps=args.steps,
                                       latent_dim=args.latent_dim)
        wall = time.perf_counter() - t0
        ok = m.ratio <= TARGET_RATIO and m.w2 < m.w2_gaussian and m.coverage == 10 and wall <= 600
        print(f"{model:<13} {res.steps:>6} {wall:>7.0f}s {m.w2:>8.4f} {m.w2_floor:>7.4f} {m.w2_gaussian:>7.4f} "
              f"{m.ratio:>6.3f} {m.sinkhorn:>9.4f} {m.sinkhorn_floor:>7.4f} {m.coverage:>4}/10 {m.confidence:>5.2f}  "
              f"{'met' if ok else 'MISSED'} ({res.status}, {res.device})", flush=True)
    print(f"# real data: classifier held-out accuracy {m.classifier_accuracy:.3f}, {m.coverage_real}/10 classes, "
          f"confidence {m.confidence_real:.2f} on n = {m.n}")


if __name__ == "__main__":
    main()
