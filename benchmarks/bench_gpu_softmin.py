"""GPU Sinkhorn: monge's fused Triton soft-min against KeOps online, FlashSinkhorn and monge's torch lazy path.

Issue 14, part 2. Balanced entropic OT between two clouds of ``n`` points in dimension ``d = 64`` (uniform
in [0, 1]^d, float32, uniform weights), cost ``|x - y|^2 / 2`` (the GeomLoss / FlashSinkhorn convention),
``eps = blur^2``. Every contender runs 100 plain log-domain Sinkhorn iterations
``f <- softmin_y(g + eps log b)``, ``g <- softmin_x(f + eps log a)`` from zero potentials, and the script
prints the time and the l1 marginal error ``|P 1 - a|_1 + |P^T 1 - b|_1`` of the returned potentials, measured
by one and the same reduction, so that the errors of the same iterations must agree:

- ``monge-triton``: the loop on ``PointCloud(x, y, backend="triton").softmin`` (the fused kernels);
- ``monge-solver``: ``Sinkhorn(eps, max_iter=100, fixed_iters=True, omega=1.0)`` on the same geometry (the
  library's driver: its checks every 10 iterations included);
- ``torch-lazy``: the loop on monge's chunked torch reduction (``LazySoftmin``, what ``"lazy"`` is without
  triton);
- ``keops``: the loop on a pykeops ``LazyTensor`` log-sum-exp (GeomLoss's ``online`` backend), if it imports;
- ``flash-sinkhorn``: ``flash_sinkhorn.SamplesLoss(potentials=True)`` with its own eps-scaling schedule of
  ~100 steps from the diameter down to ``blur`` (it has no fixed-eps loop in its public API), if it imports;
  its marginal error is printed next to ours, so compare at that error.

Goals (issue 14): at least FlashSinkhorn's speed (61 ms at n = 1e4, 1.45 s at 5e4 on an A100) and at least
10x KeOps online. Without CUDA the script says so and exits 0.

Run: ``.venv/bin/python benchmarks/bench_gpu_softmin.py [--sizes 10000 50000] [--blur 0.5] [--repeat 3]``
(``pip install triton pykeops flash-sinkhorn`` first; none is needed by monge itself).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from monge.geometry import PointCloud
from monge.geometry._backends.lazy import LazySoftmin
from monge.geometry.costs import SqEuclidean
from monge.problems import LinearProblem
from monge.solvers import Sinkhorn


def _sync_time(fn, repeat: int):
    """Best wall time of ``repeat`` runs after one warm-up (compilation), with CUDA synchronisation."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def loop(softmin, n: int, m: int, eps: float, iters: int, like: torch.Tensor):
    """100 plain iterations on a reduction ``softmin(h, dim)``; uniform weights; returns (f, g)."""
    la, lb = -math.log(n), -math.log(m)
    f, g = like.new_zeros(n), like.new_zeros(m)
    for _ in range(iters):
        f = softmin(g + eps * lb, 1)
        g = softmin(f + eps * la, 0)
    return f, g


def marginal_error(geom, f, g, eps: float) -> float:
    """``|P 1 - a|_1 + |P^T 1 - b|_1`` with ``P = a b exp((f + g - C)/eps)``, by the fused reduction."""
    n, m = geom.shape
    row = torch.exp((f - geom.softmin(g - eps * math.log(m), eps, 1)) / eps) / n
    col = torch.exp((g - geom.softmin(f - eps * math.log(n), eps, 0)) / eps) / m
    return float((row - 1.0 / n).abs().sum() + (col - 1.0 / m).abs().sum())


def _keops(x, y, eps):
    try:
        from pykeops.torch import LazyTensor
    except ImportError:
        return None
    xi, yj = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    C = ((xi - yj) ** 2).sum(-1) / 2  # (n, m) symbolic
    Ct = ((LazyTensor(y[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1) / 2

    def softmin(h, dim):
        K = C if dim == 1 else Ct
        return -eps * ((LazyTensor(h[None, :, None]) - K) / eps).logsumexp(dim=1).view(-1)

    return softmin


def _flash(x, y, blur, iters):
    try:
        from flash_sinkhorn import SamplesLoss
    except ImportError:
        return None
    diam = float((torch.cat([x, y]).max(0).values - torch.cat([x, y]).min(0).values).norm())
    scaling = (blur / diam) ** (1.0 / max(1, iters - 2))  # ~iters eps values from diam^2 down to blur^2
    kw = dict(loss="sinkhorn", p=2, blur=blur, scaling=scaling, diameter=diam, debias=False, potentials=True)
    try:  # |x - y|^2 / 2, as here (its documented GeomLoss-parity switch)
        loss = SamplesLoss(half_cost=True, **kw)
    except TypeError:
        loss = SamplesLoss(**kw)
    return lambda: loss(x, y)


def run(n: int, d: int, blur: float, iters: int, repeat: int):
    g = torch.Generator(device="cuda").manual_seed(n)
    x = torch.rand(n, d, device="cuda", generator=g)
    y = torch.rand(n, d, device="cuda", generator=g)
    eps = blur ** 2
    cost = SqEuclidean(scale=0.5)
    geom = PointCloud(x, y, cost=cost, backend="triton")
    torch_lazy = LazySoftmin(cost, x)
    runs = {
        "monge-triton": lambda: loop(lambda h, dim: geom.softmin(h, eps, dim), n, n, eps, iters, x),
        "monge-solver": lambda: (lambda r: (r.f, r.g))(
            Sinkhorn(eps=eps, max_iter=iters, fixed_iters=True, omega=1.0)(LinearProblem(geom))),
        "torch-lazy": lambda: loop(lambda h, dim: torch_lazy.softmin(x, y, h, eps, dim), n, n, eps, iters, x),
    }
    keops = _keops(x, y, eps)
    if keops is not None:
        runs["keops"] = lambda: loop(keops, n, n, eps, iters, x)
    flash = _flash(x, y, blur, iters)
    if flash is not None:
        runs["flash-sinkhorn"] = flash
    times = {}
    for name, fn in runs.items():
        with torch.no_grad():
            t, (f, gg) = _sync_time(fn, repeat)
        f, gg = f.reshape(-1).float(), gg.reshape(-1).float()
        times[name] = t
        print(f"  n = {n:6d}  {name:15s} {t * 1e3:10.1f} ms   marginal error {marginal_error(geom, f, gg, eps):.2e}",
              flush=True)
    base = times["monge-triton"]
    for name, t in times.items():
        if name != "monge-triton":
            print(f"  n = {n:6d}  monge-triton vs {name:15s} {t / base:8.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000])
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--blur", type=float, default=0.5)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu_softmin: no CUDA device here; the GPU figures stay open (run it on a GPU machine)")
        return
    import triton

    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  "
          f"d = {args.d}, blur = {args.blur} (eps = {args.blur ** 2:g}), {args.iters} iterations, float32")
    for n in args.sizes:
        run(n, args.d, args.blur, args.iters, args.repeat)


if __name__ == "__main__":
    main()
