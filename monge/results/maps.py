r"""Transport maps of sparse (exact) plans: the barycentric projection on the support, and its extension to new points.

An exact plan :math:`P` is known on the samples only. On a source point it gives the barycentric projection

.. math::
    T(x_i) = \frac{\sum_j P_{ij}\, y_j}{\sum_j P_{ij}},

and a new point :math:`x` is mapped by moving it with the displacement of the source points near it:

- ``"nearest"`` (the default; what POT's ``ot.da`` estimators do): :math:`T(x) = x + \big(T(x_{i^*}) - x_{i^*}\big)`,
  :math:`i^* = \arg\min_i \|x - x_i\|` over source points with mass (a translation of the nearest point's arrow:
  exact on the samples, piecewise a translation elsewhere);
- ``"kernel"``: :math:`T(x) = x + \sum_i w_i(x) \big(T(x_i) - x_i\big)`,
  :math:`w_i(x) \propto a_i \exp(-\|x - x_i\|^2 / 2\sigma^2)` (a Nadaraya-Watson average of the displacements,
  smooth in :math:`x`; it reproduces the samples only as :math:`\sigma \to 0`).

The inverse map is the same construction on the transposed plan (target points to source points).
"""

from __future__ import annotations

import torch

from ..ops.broadcast import broadcast_shapes

__all__ = ["plan_projection", "extend_map", "EXTENSIONS"]

EXTENSIONS = ("nearest", "kernel")
_ROWS_PER_TILE = 2048


def plan_projection(rows, cols, vals, y, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T (..., n, d), mass (..., n))``: the barycentric projection of a plan given as padded triplets ``(..., K)``
    onto target points ``y (..., m, d)``; rows without mass get 0 (callers extend the map there).

    Example:
        >>> import torch
        >>> rows, cols, vals = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), torch.tensor([0.25, 0.25, 0.5])
        >>> T, mass = plan_projection(rows, cols, vals, torch.tensor([[0.0], [4.0]]), 2)
        >>> T.flatten().tolist(), mass.tolist()
        ([2.0, 4.0], [0.5, 0.5])
    """
    batch = broadcast_shapes(rows.shape[:-1], y.shape[:-2])
    d = y.shape[-1]
    rows, cols, vals = (t.expand(*batch, t.shape[-1]) for t in (rows, cols, vals))
    y = y.expand(*batch, *y.shape[-2:])
    yk = y.gather(-2, cols.unsqueeze(-1).expand(*cols.shape, d))
    num = yk.new_zeros((*batch, n, d)).scatter_add(-2, rows.unsqueeze(-1).expand(*rows.shape, d),
                                                   vals.to(yk.dtype).unsqueeze(-1) * yk)
    mass = vals.new_zeros((*batch, n)).scatter_add(-1, rows, vals).to(yk.dtype)
    T = num / torch.where(mass > 0, mass, torch.ones_like(mass)).unsqueeze(-1)
    return T, mass


def _check_query(q, d: int, name: str, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(q, torch.Tensor) or q.dim() < 2 or q.shape[-1] != d:
        got = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"{name}: expected points of shape (..., k, d) with d = {d}, got {got}")
    if q.dtype != like.dtype or q.device != like.device:
        raise TypeError(f"{name}: expected dtype {like.dtype} on {like.device} (those of the solved points), got "
                        f"{q.dtype} on {q.device}; convert it with .to(...)")
    return q


def extend_map(q, xs, Ts, mass, extension: str = "nearest", bandwidth: float | None = None) -> torch.Tensor:
    r"""Map new points ``q (..., k, d)`` with the displacements ``Ts - xs`` of the samples ``xs (..., n, d)`` that
    carry mass (``mass (..., n) > 0``): nearest-neighbour translation or a Gaussian-kernel average (module doc).
    ``bandwidth`` (kernel only): :math:`\sigma` in data units (``None``: the median distance from a sample to its
    nearest other sample). Computed by tiles of query points; differentiable w.r.t. ``q`` and ``Ts``.

    Example:
        >>> import torch
        >>> xs, Ts = torch.tensor([[0.0], [1.0]]), torch.tensor([[5.0], [7.0]])
        >>> extend_map(torch.tensor([[0.2], [1.5]]), xs, Ts, torch.ones(2)).flatten().tolist()
        [5.199999809265137, 7.5]
    """
    if extension not in EXTENSIONS:
        raise ValueError(f"extension: expected one of {EXTENSIONS}, got {extension!r}")
    if bandwidth is not None and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
        raise ValueError(f"bandwidth: expected a positive number or None, got {bandwidth!r}")
    q = _check_query(q, xs.shape[-1], "x", xs)
    disp = Ts - xs
    batch = broadcast_shapes(q.shape[:-2], xs.shape[:-2], mass.shape[:-1])
    q = q.expand(*batch, *q.shape[-2:])
    xs_d = xs.detach().expand(*batch, *xs.shape[-2:])
    disp = disp.expand(*batch, *disp.shape[-2:])
    dead = (mass <= 0).expand(*batch, mass.shape[-1]).unsqueeze(-2)
    if extension == "kernel":
        sigma = bandwidth if bandwidth is not None else _median_spacing(xs_d)
        logw = torch.log(mass.clamp_min(0)).expand(*batch, mass.shape[-1]).unsqueeze(-2)
    out = []
    for s in range(0, q.shape[-2], _ROWS_PER_TILE):
        qt = q[..., s:s + _ROWS_PER_TILE, :]
        dist2 = torch.cdist(qt.detach(), xs_d).square().masked_fill(dead, torch.inf)
        if extension == "nearest":
            idx = dist2.argmin(-1, keepdim=True)
            out.append(qt + disp.gather(-2, idx.expand(*idx.shape[:-1], disp.shape[-1])))
        else:
            w = torch.softmax(logw - dist2 / (2.0 * sigma * sigma), dim=-1)
            out.append(qt + w @ disp)
    return torch.cat(out, -2)


def _median_spacing(xs: torch.Tensor) -> torch.Tensor:
    """Median over samples of the distance to the nearest other sample (per batch element, shape ``(..., 1, 1)``);
    a tiny positive floor keeps the kernel defined on duplicated samples."""
    n = xs.shape[-2]
    if n < 2:
        return xs.new_ones((*xs.shape[:-2], 1, 1))
    d = torch.cdist(xs, xs) + torch.diag(xs.new_full((n,), torch.inf))
    med = d.min(-1).values.median(-1).values
    return med.clamp_min(torch.finfo(xs.dtype).eps * (1.0 + xs.abs().amax((-2, -1)))).reshape(*xs.shape[:-2], 1, 1)
