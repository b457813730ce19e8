"""Grid soft-min (log domain) against the kernel-mode convolution of POT's convolutional barycenters.

POT's ``ot.bregman.convolutional_barycenter2d`` builds 1-D Gibbs kernels ``K_k = exp(-(t_i - t_j)^2 / reg)`` on
``t = linspace(0, 1, n)`` and applies them to an image as ``K1 @ img @ K2`` (scaling domain). monge computes the
same quantity in the log domain: ``-softmin(eps log img) = eps log(K1 @ img @ K2)`` with ``Grid(spacing=1/(n-1))``
and ``eps = reg``. The numpy product is the speed of light for the kernel mode; it underflows to 0 (log = -inf)
once ``eps`` is small next to the distance from the support of the image, where monge stays finite.

Run: ``.venv/bin/python benchmarks/bench_grid_softmin.py`` (about 30 s). Timings are the best of ``--repeat``
interleaved runs (monge, peer, monge, ...) in one process on the same data.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from monge.geometry.grid import Grid

try:
    from _common import best_of, machine
except ImportError:  # run from elsewhere
    from benchmarks._common import best_of, machine


def blob(shape, dtype) -> np.ndarray:
    """A normalised Gaussian blob off-centre, exactly zero outside a disc (zero weights, as in real images)."""
    axes = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    r2 = sum((a - 0.3) ** 2 for a in axes)
    img = np.exp(-r2 / 0.01) * (r2 < 0.04)
    return (img / img.sum()).astype(dtype)


def kernel_mode(img: np.ndarray, kernels) -> np.ndarray:
    """K_1 (x) ... (x) K_d applied to img: ``K1 @ img @ K2`` in 2-D, one tensordot per axis in general."""
    if img.ndim == 2:
        return kernels[0] @ img @ kernels[1].T
    out = img
    for k, K in enumerate(kernels):
        out = np.moveaxis(np.tensordot(K, out, axes=([1], [k])), 0, k)
    return out


def case(shape, dtype, eps: float, repeat: int) -> None:
    npd = np.float32 if dtype == torch.float32 else np.float64
    img = blob(shape, npd)
    t = [np.linspace(0, 1, n, dtype=np.float64) for n in shape]
    kernels = [np.exp(-((tk[:, None] - tk[None]) ** 2) / eps).astype(npd) for tk in t]
    geom = Grid(shape, spacing=[1.0 / (n - 1) for n in shape], dtype=dtype)
    img_t = torch.from_numpy(img)
    with np.errstate(divide="ignore"):
        h = eps * torch.log(img_t)  # -inf on the zero weights
        times = best_of({"monge": lambda: geom.softmin(h, eps, 1), "numpy": lambda: kernel_mode(img, kernels)},
                        repeat)
        ref = kernel_mode(img, kernels)
        ours = (-geom.softmin(h, eps, 1)).numpy()  # = eps log(K img)
        peer = eps * np.log(ref)
    exact = (-Grid(shape, spacing=geom.spacing, dtype=torch.float64).softmin(h.double(), eps, 1)).numpy()
    lost = float(np.mean(ref <= 0))
    ok = np.isfinite(peer)
    err_peer = float(np.max(np.abs(peer[ok] - exact[ok]))) if ok.any() else float("nan")
    err_ours = float(np.max(np.abs(ours - exact)))
    name = f"{'x'.join(map(str, shape))} {str(dtype)[6:]} eps={eps:g}"
    print(f"  {name:<28} monge {times['monge'] * 1e3:7.2f} ms  numpy K@img@K {times['numpy'] * 1e3:6.2f} ms  "
          f"ratio {times['numpy'] / times['monge']:5.2f}x  kernel underflow {lost:6.1%}  max|err| vs float64: "
          f"monge {err_ours:.1e} (finite {bool(np.isfinite(ours).all())}), kernel {err_peer:.1e} where finite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"# Grid.softmin vs POT kernel mode ({machine()})")
    print("  ratio = numpy time / monge time (> 1: monge faster); underflow = cells where K@img@K == 0; errors in "
          "units of eps*log(K img), against monge in float64")
    for dtype in (torch.float32, torch.float64):
        for eps in (1e-2, 1e-3, 2e-4):
            case((256, 256), dtype, eps, args.repeat)
    for eps in (1e-2, 1e-3):
        case((64, 64, 64), torch.float32, eps, args.repeat)


if __name__ == "__main__":
    main()
