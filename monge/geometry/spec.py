r"""One ``geom=`` argument for the functions on histograms (barycenters, interpolation, barycentric coordinates).

The rule, the same everywhere:

- a :class:`~monge.geometry.Geometry` (``DenseCost``, ``PointCloud``, ``Grid``, ...) is used as it is;
- a tensor (or array) is **always a cost matrix** ``C (n, m)`` (``DenseCost(C)``), never points: a square cost and a
  cloud of ``n`` points in ``d = n`` dimensions would look alike, so support points go through
  ``monge.PointCloud(x)`` (squared Euclidean cost, or any ``cost=``);
- ``"grid"`` is a :class:`~monge.geometry.Grid` over the trailing dimensions of the histograms (spacing ``1 / n_k``,
  cost :math:`\sum_k |x_k - y_k|^2`); a :class:`GridSpec` sets its spacing, exponent and number of dimensions.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from .._validation import as_tensor
from .base import Geometry
from .dense import DenseCost
from .grid import Grid

__all__ = ["GridSpec", "resolve_geometry", "MERGED_KEYWORDS"]

#: The keywords that ``geom=`` replaced; passing one gets an error that says how to write it now.
MERGED_KEYWORDS = ("C", "x", "grid", "spacing", "p")


@dataclass(frozen=True)
class GridSpec:
    r"""A regular grid over the trailing dimensions of histograms, its shape, dtype and device taken from them.

    Args:
        spacing: the cell size per axis: ``None`` (``1 / n_k``: the grid covers :math:`[0, 1)^d`), a positive float
            or ``d`` floats. POT's ``linspace(0, 1, n)`` images: ``spacing=1 / (n - 1)``.
        p: the exponent of the separable cost :math:`\sum_k |x_k - y_k|^p` (2: squared Euclidean, no 1/2).
        ndim: how many trailing dimensions are the grid (``None``: ``len(spacing)`` if it is a sequence, else all
            dimensions after the stacking one, i.e. unbatched inputs).

    Example:
        >>> import torch
        >>> GridSpec(spacing=0.5).build(torch.zeros(3, 4, 5)).grid_shape   # K = 3 images of 4 x 5, d = 2
        (4, 5)
    """

    spacing: float | tuple[float, ...] | None = None
    p: float = 2.0
    ndim: int | None = None

    def build(self, hists: torch.Tensor, event_dims: int | None = None) -> Grid:
        """The :class:`Grid` for ``hists`` whose last ``event_dims`` dimensions are a support (default:
        ``hists.dim() - 1``, one stacking dimension in front)."""
        if isinstance(self.spacing, (tuple, list)):
            d = len(self.spacing)
        elif self.ndim is not None:
            if not isinstance(self.ndim, numbers.Integral) or isinstance(self.ndim, bool):
                raise TypeError(f"GridSpec.ndim: expected an int or None, got {self.ndim!r}")
            d = int(self.ndim)
        else:
            d = hists.dim() - 1 if event_dims is None else event_dims
        if d < 1 or d > hists.dim():
            raise ValueError(f"grid: expected 1 <= d <= {hists.dim()} grid dimensions for histograms of shape "
                             f"{tuple(hists.shape)}, got d = {d}; pass geom=GridSpec(ndim=d) or "
                             f"GridSpec(spacing=(s_1, ..., s_d))")
        shape = tuple(hists.shape[hists.dim() - d:])
        return Grid(shape, spacing=self.spacing, p=self.p, dtype=hists.dtype, device=hists.device)


def resolve_geometry(geom, hists: torch.Tensor, event_dims: int | None = None, extra: dict | None = None) -> Geometry:
    """The geometry named by ``geom`` (see the module docstring for the rule) for histograms like ``hists``.

    ``extra``: the caller's unknown keywords; a keyword that ``geom=`` replaced raises an error with the new spelling.

    Example:
        >>> import torch
        >>> hists = torch.rand(2, 3, dtype=torch.float64)
        >>> type(resolve_geometry(torch.rand(3, 3, dtype=torch.float64), hists)).__name__
        'DenseCost'
        >>> resolve_geometry("grid", hists).grid_shape
        (3,)
    """
    old = [k for k in MERGED_KEYWORDS if extra and k in extra]
    if old or geom is None:
        raise ValueError(
            "geom: expected exactly one way to give the support and cost, as geom= (a Geometry such as "
            "monge.PointCloud(x) for support points, an (n, m) cost matrix C, 'grid', or monge.GridSpec(spacing=..., "
            f"p=...)), got {'the old keywords ' + ', '.join(old) if old else 'none'}; e.g. geom=C, geom='grid', "
            "geom=monge.GridSpec(spacing=1 / (n - 1)), geom=monge.PointCloud(x)"
        )
    if isinstance(geom, Geometry):
        return geom
    if isinstance(geom, str):
        if geom != "grid":
            raise ValueError(f"geom: expected 'grid' as a string (or a Geometry, a cost matrix, a GridSpec), "
                             f"got {geom!r}")
        return GridSpec().build(hists, event_dims)
    if isinstance(geom, GridSpec):
        return geom.build(hists, event_dims)
    if isinstance(geom, bool) or isinstance(geom, numbers.Number):
        raise TypeError(f"geom: expected a Geometry, an (n, m) cost matrix, 'grid' or a GridSpec, got {geom!r}")
    C = as_tensor(geom, "C", dtype=hists.dtype, device=hists.device)
    if C.dim() < 2:
        raise ValueError(f"geom: a tensor is read as a cost matrix C of shape (..., n, m), got shape {tuple(C.shape)}; "
                         "for support points pass geom=monge.PointCloud(x)")
    return DenseCost(C)
