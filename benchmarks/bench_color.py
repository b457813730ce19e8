"""Colour transfer of a 512 x 512 image at full resolution: monge against POT's sampled-pixel approach.

POT's documented colour-transfer example fits ``ot.da.EMDTransport`` / ``ot.da.SinkhornTransport`` on ~1000
sampled pixels of each image and maps every pixel with ``transform`` (the barycentric map of the sample,
extended to the other pixels through their nearest sampled pixel). monge: ``color_transfer`` with the exact
palette method and the entropic colour-grid method. Quality: sliced W_2 between the output's colours and the
reference's (50,000 pixels each, 200 directions, same for every method; smaller is better).

Run: ``.venv/bin/python benchmarks/bench_color.py`` (about a minute). Times are the best of ``--repeat`` runs,
interleaved round-robin.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import ot
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from _common import best_of, machine

import monge
from monge.apps.color import color_transfer, image_colors


def load(name: str, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(load_sample_image(name)).resize((side, side), Image.BICUBIC))


def sliced(u, v) -> float:
    g = torch.Generator().manual_seed(0)
    cu, cv = image_colors(u), image_colors(v)
    iu = torch.randperm(len(cu), generator=g)[:50_000]
    iv = torch.randperm(len(cv), generator=g)[:50_000]
    return float(monge.sliced_wasserstein(cu[iu], cv[iv], n_projections=200, seed=0))


def pot_transfer(src, ref, cls, n_samples: int, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    xs, xt = src.reshape(-1, 3) / 255.0, ref.reshape(-1, 3) / 255.0
    da = cls(**kw)
    da.fit(Xs=xs[rng.choice(len(xs), n_samples, replace=False)], Xt=xt[rng.choice(len(xt), n_samples, replace=False)])
    out = da.transform(Xs=xs)
    return np.rint(np.clip(out, 0, 1) * 255).reshape(src.shape).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    src, ref = load("china.jpg", args.side), load("flower.jpg", args.side)
    runs = {
        "monge exact (grid palettes 20^3, kernel map, LUT)": lambda: color_transfer(src, ref, method="exact"),
        "monge sinkhorn (grid 20^3, eps 1e-3, lazy, LUT)": lambda: color_transfer(src, ref, method="sinkhorn"),
        f"POT EMDTransport ({args.samples} sampled px)": lambda: pot_transfer(src, ref, ot.da.EMDTransport,
                                                                              args.samples),
        f"POT SinkhornTransport ({args.samples} px, reg 1e-1)": lambda: pot_transfer(
            src, ref, ot.da.SinkhornTransport, args.samples, reg_e=1e-1),
    }
    outs = {k: f() for k, f in runs.items()}  # warm-up, and the images whose quality is measured
    times = best_of(runs, args.repeat)
    cpu = {}
    for k, f in runs.items():  # CPU seconds of this process (all threads): less sensitive to other processes' load
        c0 = time.process_time()
        f()
        cpu[k] = time.process_time() - c0
    print(f"# colour transfer, {args.side} x {args.side} (china -> flower), {machine()}")
    print(f"  input: sliced W_2(src, ref) = {sliced(src, ref):.4f}")
    for k in runs:
        print(f"  {k:<52s} wall {times[k]:7.2f} s  cpu {cpu[k]:7.2f} s   sliced W_2(out, ref) = "
              f"{sliced(outs[k], ref):.4f}")
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
