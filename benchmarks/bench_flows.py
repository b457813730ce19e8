"""Gradient flows and the multi-label Wasserstein loss.

(a) One entropic JKO step (Fokker-Planck: potential + entropy) on a 256x256 grid: time per step and per inner
    iteration. No peer has JKO; the reference is one kernel application ``K1 @ img @ K1`` in numpy with POT's
    convolutional construction (``ot.bregman.convolutional_barycenter2d``), the unit of work of a kernel-mode
    inner iteration (which needs two of them, as monge's log-domain iteration needs two soft-mins).
(b) A particle flow of 2000 particles, 50 Euler steps of the Sinkhorn divergence: monge ``SinkhornLoss`` vs GeomLoss
    ``SamplesLoss("sinkhorn", p=2)``. GeomLoss's cost is |x-y|^2 / 2 with eps = blur^2, monge's is |x-y|^2 with
    eps = blur^2: the same problem is monge blur = sqrt(2) * GeomLoss blur, monge loss = 2 x GeomLoss loss, monge lr =
    GeomLoss lr / 2. Same scaling ratio. The final divergence is reported in GeomLoss units.
(c) The multi-label loss, B = 256, L = 100, forward + backward: ``monge.nn.multilabel.WassersteinLoss`` (one batched
    Sinkhorn) vs a loop of POT ``ot.sinkhorn2(..., method="sinkhorn_log")`` on torch tensors (autograd through POT).

Usage: python benchmarks/bench_flows.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
from _common import machine, timeit

from monge.apps.flows import (
    Entropy,
    PotentialEnergy,
    grid_coordinates,
    jko_step,
    particle_flow,
)
from monge.geometry.grid import Grid
from monge.nn.multilabel import WassersteinLoss


def bench_jko(n: int):
    for dtype in (torch.float64, torch.float32):
        geom = Grid((n, n), dtype=dtype)
        x, y = grid_coordinates(geom)
        mu = torch.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2) / 0.01) + 1e-3
        mu = mu / mu.sum()
        F = PotentialEnergy((x - 0.6) ** 2 + (y - 0.6) ** 2) + Entropy(0.01)
        t, out = timeit(lambda mu=mu, geom=geom, F=F: jko_step(mu, geom, F, 0.05, 1e-3), repeat=2)
        it = out[2]
        print(f"(a) JKO step {n}x{n} {str(dtype)[6:]:<8} {t:7.3f} s/step, {it} inner its, "
              f"{1e3 * t / it:6.2f} ms/inner it, final error {float(out[3]):.1e}")
    t1 = np.linspace(0, 1, n)
    K1 = np.exp(-((t1[:, None] - t1[None, :]) ** 2) / 1e-3)
    img = np.random.default_rng(0).random((n, n))
    tk, _ = timeit(lambda: K1 @ img @ K1, repeat=5)
    print(f"(a) peer: one kernel application K1 @ img @ K1 (numpy float64, POT's construction): {1e3 * tk:6.2f} ms; "
          f"a kernel-mode inner iteration = 2 of them = {2e3 * tk:6.2f} ms")


def bench_particles(n: int, steps: int):
    from geomloss import SamplesLoss

    g = torch.Generator().manual_seed(0)
    x0 = 0.2 + 0.3 * torch.rand(n, 2, generator=g)
    y = 0.5 + 0.3 * torch.rand(n, 2, generator=g)
    blur_g, scaling, lr_g = 0.05, 0.5, 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = particle_flow(x0, y, "sinkhorn", lr=lr_g / 2, n_steps=steps, blur=math.sqrt(2) * blur_g, scaling=scaling)
        t_m = time.perf_counter() - t0
    loss_g = SamplesLoss("sinkhorn", p=2, blur=blur_g, scaling=scaling, backend="tensorized")
    x = x0.clone()
    t0 = time.perf_counter()
    for _ in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_g(x, y), x)
        x = (x - lr_g * n * grad).detach()
    t_g = time.perf_counter() - t0
    final_g = float(loss_g(x, y))
    print(f"(b) particle flow n={n}, {steps} steps: monge {1e3 * t_m / steps:7.1f} ms/step, final S = "
          f"{float(res.losses[-1]) / 2:.2e} | GeomLoss {1e3 * t_g / steps:7.1f} ms/step, final S = {final_g:.2e} | "
          f"ratio {t_g / t_m:5.2f}x")


def bench_multilabel(B: int, L: int, eps: float):
    import ot

    g = torch.Generator().manual_seed(0)
    phi = torch.arange(L, dtype=torch.float64) * (2 * math.pi / L)
    E = torch.stack([phi.cos(), phi.sin()], -1)
    M = torch.cdist(E, E)
    M = M / M.max()
    logits = torch.randn(B, L, generator=g, dtype=torch.float64)
    target = (torch.rand(B, L, generator=g, dtype=torch.float64) < 0.05).double()
    target[:, 0] = 1.0
    loss = WassersteinLoss(M, eps=eps, p=1)

    def monge_fb():
        z = logits.clone().requires_grad_()
        v = loss(z, target)
        v.backward()
        return float(v)

    def pot_fb():
        z = logits.clone().requires_grad_()
        a = torch.softmax(z, -1)
        b = target / target.sum(-1, keepdim=True)
        vals = [ot.sinkhorn2(a[i], b[i], M, eps, method="sinkhorn_log", stopThr=1e-7, numItermax=5000)
                for i in range(B)]
        v = torch.stack(vals).mean()
        v.backward()
        return float(v)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_m, v_m = timeit(monge_fb, repeat=3, warmup=1)
        t_p, v_p = timeit(pot_fb, repeat=1)
    print(f"(c) multi-label loss B={B}, L={L}, eps={eps:g}, forward+backward: monge {t_m:6.3f} s (value {v_m:.5f}, "
          f"entropic objective) | POT loop {t_p:6.3f} s (value {v_p:.5f}, <P, M>) | ratio {t_p / t_m:5.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    args = ap.parse_args()
    print(f"# gradient flows and the multi-label loss, on {machine()}")
    bench_jko(64 if args.quick else 256)
    bench_particles(300 if args.quick else 2000, 5 if args.quick else 50)
    bench_multilabel(32 if args.quick else 256, 100, 0.05)


if __name__ == "__main__":
    main()
