"""The barycenter solver's choice of soft-min: the kernel fast path (:mod:`monge.ops.kernel`) for dense costs."""

from __future__ import annotations

from ..geometry.dense import DenseCost
from ..ops.kernel import KERNEL_MAX_ENTRIES, KernelDense

__all__ = ["kernel_geometry"]


def kernel_geometry(geom, eps: float):
    """The fast path for a dense cost (a :class:`DenseCost` or a dense-backend point cloud) that fits; else ``geom``."""
    if isinstance(geom, DenseCost) or getattr(geom, "backend", None) == "dense":
        n, m = geom.shape
        if n * m * max(1, geom.batch_shape.numel()) <= KERNEL_MAX_ENTRIES:
            return KernelDense(geom.cost(), eps)
    return geom
