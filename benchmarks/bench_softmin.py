"""Lazy squared-Euclidean soft-min: compiled kernel vs monge's chunked torch vs dense torch vs KeOps.

One reduction ``out_i = -eps log sum_j exp((h_j - |x_i - y_j|^2) / eps)`` on points in [0, 1]^3, float32,
eps = 0.0025 (blur 0.05), forward alone and forward + backward (gradients of ``sum(u * out)`` with respect
to x, y and h). Contenders, all in this process on the same data:

- ``kernel``: ``monge._core.softmin_sqeuclid`` / ``softmin_sqeuclid_backward`` (all cores);
- ``torch``: ``monge.geometry._backends.lazy.lazy_softmin`` with ``SqEuclidean()`` (chunked torch, autograd);
- ``dense``: ``-eps * torch.logsumexp((h - cdist**2)/eps)`` on the full matrix (only where it fits);
- ``keops``: a pykeops ``LazyTensor`` logsumexp (only if ``pykeops`` imports; compiled at first use, which
  the warm-up absorbs).

Errors are max |out - ref| / eps against the float64 kernel on the same (float32) inputs.

Run: ``.venv/bin/python benchmarks/bench_softmin.py`` (a few minutes; ``--sizes 10000`` for a quick one).
Timings are the best of ``--repeat`` interleaved runs (kernel, torch, dense, keops, kernel, ...).
"""

from __future__ import annotations

import argparse
import time

import torch

try:
    from _common import machine
except ImportError:  # run from elsewhere
    from benchmarks._common import machine

from monge.geometry.costs import SqEuclidean
from monge.geometry._backends.lazy import lazy_softmin

try:
    from monge._core import softmin_sqeuclid, softmin_sqeuclid_backward
except ImportError:  # a development build of the kernel alone, on PYTHONPATH
    from _smdev import softmin_sqeuclid, softmin_sqeuclid_backward

try:
    from pykeops.torch import LazyTensor
except ImportError:  # pragma: no cover - optional peer
    LazyTensor = None


def kernel_fwd(x, y, h, eps):
    return torch.from_numpy(softmin_sqeuclid(x[None].numpy(), y[None].numpy(), h[None].numpy(), eps, 0))[0]


def kernel_fwd_bwd(x, y, h, u, eps):
    xb, yb, hb = x[None].numpy(), y[None].numpy(), h[None].numpy()
    out = softmin_sqeuclid(xb, yb, hb, eps, 0)
    return softmin_sqeuclid_backward(xb, yb, hb, out, u[None].numpy(), eps, 0)


def torch_fwd(x, y, h, eps):
    with torch.no_grad():
        return lazy_softmin(x, y, h, eps, 1, SqEuclidean())


def torch_fwd_bwd(x, y, h, u, eps):
    xr, yr, hr = (t.clone().requires_grad_() for t in (x, y, h))
    (lazy_softmin(xr, yr, hr, eps, 1, SqEuclidean()) * u).sum().backward()
    return xr.grad, yr.grad, hr.grad


def dense_fwd(x, y, h, eps):
    with torch.no_grad():
        C = torch.cdist(x, y) ** 2
        return -eps * torch.logsumexp((h - C) / eps, -1)


def dense_fwd_bwd(x, y, h, u, eps):
    xr, yr, hr = (t.clone().requires_grad_() for t in (x, y, h))
    C = ((xr * xr).sum(-1, keepdim=True) + (yr * yr).sum(-1) - 2 * xr @ yr.T).clamp_min(0)
    (-eps * torch.logsumexp((hr - C) / eps, -1) * u).sum().backward()
    return xr.grad, yr.grad, hr.grad


def _keops_out(x, y, h, eps):
    x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    h_j = LazyTensor(h[None, :, None])
    D_ij = ((x_i - y_j) ** 2).sum(-1)
    return -eps * (h_j / eps - D_ij / eps).logsumexp(dim=1).view(-1)


def keops_fwd(x, y, h, eps):
    with torch.no_grad():
        return _keops_out(x, y, h, eps)


def keops_fwd_bwd(x, y, h, u, eps):
    xr, yr, hr = (t.clone().requires_grad_() for t in (x, y, h))
    (_keops_out(xr, yr, hr, eps) * u).sum().backward()
    return xr.grad, yr.grad, hr.grad


def best_of(fns: dict, repeat: int) -> dict:
    times, outs = {k: float("inf") for k in fns}, {}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            outs[k] = f()
            times[k] = min(times[k], time.perf_counter() - t0)
    return times, outs


def case(n: int, eps: float, repeat: int, dense_max: int) -> None:
    g = torch.Generator().manual_seed(n)
    x = torch.rand(n, 3, generator=g)
    y = torch.rand(n, 3, generator=g)
    h = eps * torch.log(torch.full((n,), 1.0 / n)) + 0.02 * torch.randn(n, generator=g)  # log-weights + potential
    u = torch.rand(n, generator=g)
    fwd = {"kernel": lambda: kernel_fwd(x, y, h, eps), "torch": lambda: torch_fwd(x, y, h, eps)}
    both = {"kernel": lambda: kernel_fwd_bwd(x, y, h, u, eps), "torch": lambda: torch_fwd_bwd(x, y, h, u, eps)}
    if n <= dense_max:
        fwd["dense"] = lambda: dense_fwd(x, y, h, eps)
        both["dense"] = lambda: dense_fwd_bwd(x, y, h, u, eps)
    if LazyTensor is not None:
        fwd["keops"] = lambda: keops_fwd(x, y, h, eps)
        both["keops"] = lambda: keops_fwd_bwd(x, y, h, u, eps)
        keops_fwd(x, y, h, eps), keops_fwd_bwd(x, y, h, u, eps)  # compile outside the timings
    kernel_fwd(x, y, h, eps)  # warm-up
    ref = softmin_sqeuclid(x.double()[None].numpy(), y.double()[None].numpy(), h.double()[None].numpy(), eps, 0)
    ref = torch.from_numpy(ref)[0]
    t_f, o_f = best_of(fwd, repeat)
    t_b, _ = best_of(both, repeat)
    print(f"n = m = {n}, d = 3, float32, eps = {eps:g}")
    for k in fwd:
        err = ((o_f[k].double() - ref).abs().max() / eps).item()
        print(f"  {k:<7} forward {t_f[k] * 1e3:9.1f} ms ({t_f[k] / t_f['kernel']:6.1f}x kernel)   "
              f"forward+backward {t_b[k] * 1e3:9.1f} ms ({t_b[k] / t_b['kernel']:6.1f}x kernel)   "
              f"max|out - ref|/eps {err:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--eps", type=float, default=0.0025)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dense-max", type=int, default=10_000, help="largest n for the dense baseline")
    args = parser.parse_args()
    print(f"# lazy soft-min, compiled kernel vs chunked torch / dense torch / KeOps ({machine()})")
    print(f"# KeOps: {'pykeops available' if LazyTensor is not None else 'pykeops not importable, skipped'}")
    for n in args.sizes:
        case(n, args.eps, args.repeat if n <= 10_000 else max(1, args.repeat - 2), args.dense_max)


if __name__ == "__main__":
    main()
