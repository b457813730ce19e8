"""A geometry between two point clouds and a ground cost."""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_points, common_dtype_device
from ._backends.kernel import KernelCache
from ._backends.lazy import kernel_available, lazy_softmin
from .base import Geometry
from .costs import Cost, SqEuclidean, get_cost

__all__ = ["PointCloud", "LAZY_ABOVE", "KERNEL_MAX_DIM"]

#: ``backend="auto"`` switches to the lazy backend above this many cost entries (64 MB in float32).
LAZY_ABOVE = 1 << 24
#: ``backend="auto"`` uses the compiled lazy kernel up to this dimension: it recomputes distances at every
#: reduction, which costs O(d) per entry; measured on 500 points (Sinkhorn divergence, one thread): lazy
#: 4.6x faster at d = 16, dense (distances once, by BLAS) 1.2x faster at d = 32 and 2.5x at d = 64.
KERNEL_MAX_DIM = 24
_BACKENDS = ("auto", "dense", "lazy")


class PointCloud(Geometry):
    r"""Points ``x: (..., n, d)`` and ``y: (..., m, d)`` with the cost ``C_ij = cost(x_i, y_j)``.

    Args:
        x: source points. y: target points (``None``: ``y = x``, for self-transport terms).
        cost: ``"sqeuclidean"`` (default, :math:`\|x-y\|^2`), ``"euclidean"`` (:math:`\|x-y\|^p` with ``p``),
            ``"cosine"``, a :class:`~monge.geometry.costs.Cost` or a callable ``(x, y) -> (..., n, m)``.
        p: the power for ``cost="euclidean"``.
        backend: how :meth:`softmin` reduces: ``"dense"`` materialises the ``(n, m)`` cost once (fastest while it
            fits), ``"lazy"`` recomputes cost tiles on the fly in O(n + m) memory, also in the backward pass;
            ``"auto"`` picks lazy for the squared Euclidean cost on the CPU in dimension
            ``d <= KERNEL_MAX_DIM`` (the compiled kernel beats a materialised log-sum-exp at every size there)
            and above :data:`LAZY_ABOVE` entries, dense otherwise.
        chunk: rows per tile for the lazy backend (``None``: automatic).

    Example:
        >>> import torch
        >>> geom = PointCloud(torch.zeros(5, 2), torch.ones(3, 2))
        >>> geom.shape, float(geom.cost()[0, 0])
        ((5, 3), 2.0)
    """

    def __init__(self, x, y=None, cost: str | Cost = "sqeuclidean", p: float | None = None, backend: str = "auto",
                 chunk: int | None = None):
        x = as_tensor(x, "x")
        y = x if y is None else as_tensor(y, "y")
        check_points(x, "x")
        check_points(y, "y")
        common_dtype_device(x=x, y=y)
        if x.shape[-1] != y.shape[-1]:
            raise ValueError(
                f"x and y must have the same dimension d: got x of shape {tuple(x.shape)} (d = {x.shape[-1]}) "
                f"and y of shape {tuple(y.shape)} (d = {y.shape[-1]})"
            )
        try:
            torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"x and y: batch dimensions {tuple(x.shape[:-2])} and {tuple(y.shape[:-2])} do not broadcast"
            ) from None
        if backend not in _BACKENDS:
            raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
        if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk: expected a positive int or None, got {chunk!r}")
        self.x, self.y = x, y
        self.cost_fn = get_cost(cost, p)
        if backend == "auto":
            n, m = self.shape
            big = n * m * max(1, self.batch_shape.numel()) > LAZY_ABOVE
            kernel = (isinstance(self.cost_fn, SqEuclidean) and kernel_available(x)
                      and x.shape[-1] <= KERNEL_MAX_DIM)
            backend = "lazy" if big or kernel else "dense"
        self.backend = backend
        self.chunk = chunk
        self._C = None  # the dense cost, cached when it carries no autograd graph
        self._fast = KernelCache()  # the kernel fast path of the dense backend (monge.geometry._backends.kernel)

    def _dense_cost(self) -> torch.Tensor:
        if self._C is not None:
            return self._C
        C = self.cost()
        if not C.requires_grad:
            self._C = C
        return C

    def cost_scale(self) -> float:
        """An upper bound of the largest cost (the bounding-box diameter to the power p for Euclidean costs)."""
        p = getattr(self.cost_fn, "p", None)
        if self.cost_fn.name in ("sqeuclidean", "euclidean") and p is not None:
            pts = torch.cat([self.x.detach().reshape(-1, self.x.shape[-1]), self.y.detach().reshape(-1, self.y.shape[-1])])
            diam = float((pts.max(0).values - pts.min(0).values).norm())
            return max(diam, 1e-30) ** p
        if self.cost_fn.name == "cosine":
            return 2.0
        return float(self._dense_cost().detach().max()) if self.backend == "dense" else super().cost_scale()

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        if self.backend == "dense":
            return self._fast.softmin(self._dense_cost(), h, eps, dim)
        return lazy_softmin(self.x, self.y, h, eps, dim, self.cost_fn, self.chunk)

    @property
    def symmetric(self) -> bool:
        return self.y is self.x

    def detach(self) -> "PointCloud":
        """The same geometry on detached points (itself when nothing needs gradients, so its cost cache is shared)."""
        if not (self.x.requires_grad or self.y.requires_grad):
            return self
        y = None if self.symmetric else self.y.detach()
        return PointCloud(self.x.detach(), y, cost=self.cost_fn, backend=self.backend, chunk=self.chunk)

    @property
    def shape(self):
        return (self.x.shape[-2], self.y.shape[-2])

    @property
    def batch_shape(self):
        return torch.broadcast_shapes(self.x.shape[:-2], self.y.shape[:-2])

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def device(self):
        return self.x.device

    def cost(self) -> torch.Tensor:
        return self.cost_fn(self.x, self.y)

    def like(self) -> torch.Tensor:
        return self.x

    def __repr__(self) -> str:
        return (f"PointCloud(x={tuple(self.x.shape)}, y={tuple(self.y.shape)}, cost={self.cost_fn!r}, "
                f"backend={self.backend!r})")
