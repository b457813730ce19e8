"""A geometry between two point clouds and a ground cost."""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_cost_power, check_points, common_dtype_device
from ..ops.broadcast import broadcast_shapes
from ._backends.kernel import KernelCache
from ._backends.lazy import barycentric_map_tiles, kernel_available, plan_cost_tiles
from ._backends.triton_softmin import lazy_backend
from ._backends import multiscale as _multiscale
from ._backends.multiscale import MultiscaleSoftmin
from ._backends.multiscale_coarse import coarse_view
from .base import Geometry, cost_scale_of
from .costs import CallableCost, Cost, SqEuclidean, get_cost

__all__ = ["PointCloud", "LAZY_ABOVE", "KERNEL_MAX_DIM", "MULTISCALE_MIN_ENTRIES", "MULTISCALE_MAX_DIM",
           "MULTISCALE_MAX_BLUR"]

#: ``backend="auto"`` switches to the lazy backend above this many cost entries (64 MB in float32).
LAZY_ABOVE = 1 << 24
#: ``backend="auto"`` uses the compiled lazy kernel up to this dimension: it recomputes distances at every
#: reduction, which costs O(d) per entry; measured on 500 points (Sinkhorn divergence, one thread): lazy
#: 4.6x faster at d = 16, dense (distances once, by BLAS) 1.2x faster at d = 32 and 2.5x at d = 64.
KERNEL_MAX_DIM = 24
#: ``backend="auto"`` considers the multiscale soft-min for unbatched squared-Euclidean clouds on the CPU from this
#: many cost entries ``n m`` and up to :data:`MULTISCALE_MAX_DIM`; it then runs each soft-min at
#: ``eps <= (MULTISCALE_MAX_BLUR diam)^2`` (``diam``: the bounding box's diagonal) on it from the second call at that
#: ``eps``, at larger ``eps`` (too many kept block pairs) and at one-call annealing stages (a block selection each) on
#: the lazy kernel. ``benchmarks/bench_auto_backend.py`` (float32, uniform clouds, eps-scaling + 100 iterations,
#: CPU time, auto / lazy): n = 1e4: 1.18x at blur/diam 0.012, 1.04x at 0.029, 0.73x at 0.058; n = 2e4: 1.87x,
#: 1.40x, 0.97x; n = 5e4: 2.31x at 0.029, 1.08x at 0.058; d = 2, n = 2e4: 1.74x at 0.014, 1.05x at 0.035.
MULTISCALE_MIN_ENTRIES = 10**8
#: Highest dimension where ``backend="auto"`` considers the multiscale soft-min: at n = 2e4 and blur/diam 0.04 one
#: multiscale iteration costs what a lazy one does in d = 4, 1.5x more in d = 6 and 2.4x in d = 10.
MULTISCALE_MAX_DIM = 4
#: Largest ``sqrt(eps) / diam`` where ``backend="auto"`` runs the multiscale soft-min (it wins at 0.029-0.035, ties
#: or loses at 0.058 below n = 5e4; see :data:`MULTISCALE_MIN_ENTRIES`).
MULTISCALE_MAX_BLUR = 0.04
_BACKENDS = ("auto", "dense", "lazy", "triton", "multiscale")


class _PointsGeometry(Geometry):
    """The shape members of a geometry between source points ``self.x (..., n, d)`` and target points
    ``self.y (..., m, d)`` (shared by :class:`PointCloud` and
    :class:`~monge.geometry.sharded.ShardedPointCloud`)."""

    @property
    def shape(self):
        return (self.x.shape[-2], self.y.shape[-2])

    @property
    def batch_shape(self):
        bx, by = self.x.shape[:-2], self.y.shape[:-2]
        return bx if bx == by else broadcast_shapes(bx, by)

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def device(self):
        return self.x.device


class PointCloud(_PointsGeometry):
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
            and above :data:`LAZY_ABOVE` entries, dense otherwise; for unbatched squared-Euclidean clouds on the
            CPU with ``n m >= MULTISCALE_MIN_ENTRIES`` and ``d <= MULTISCALE_MAX_DIM`` it stays ``"auto"`` and
            chooses at each soft-min: multiscale at ``eps <= (MULTISCALE_MAX_BLUR diam)^2``, lazy above
            (:meth:`backend_for` names the choice; eps is only known to the solver).
            On CUDA float32 points, ``"lazy"`` runs the fused Triton kernels when triton is installed
            (``"triton"`` asks for them, or fails saying why; CPU tensors only under ``TRITON_INTERPRET=1``).
            ``"multiscale"`` (unbatched clouds; squared Euclidean, ``|x - y|^p`` or cosine costs): k-d cells, a coarse
            eps-scaling and block-truncated soft-mins certified within ``eps * rtol`` per entry
            (:mod:`~monge.geometry._backends.multiscale`).
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
            broadcast_shapes(x.shape[:-2], y.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"x and y: batch dimensions {tuple(x.shape[:-2])} and {tuple(y.shape[:-2])} do not broadcast"
            ) from None
        if backend not in _BACKENDS:
            raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
        if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk: expected a positive int or None, got {chunk!r}")
        cost_fn = get_cost(cost, p)
        check_cost_power(cost_fn, p)  # p next to a cost of another degree would be ignored
        self._setup(x, y, cost_fn, backend, chunk)

    @classmethod
    def _trusted(cls, x, y, cost_fn: Cost, backend: str, chunk: int | None) -> "PointCloud":
        """A cloud on points, cost and options an existing cloud was validated with (its points, or their detached
        views, unmodified since: the caller checks ``_version``), without validating them again (per-call latency
        of small problems). ``y=None``: ``y = x``."""
        geom = cls.__new__(cls)
        geom._setup(x, x if y is None else y, cost_fn, backend, chunk)
        return geom

    def _setup(self, x, y, cost_fn: Cost, backend: str, chunk: int | None) -> None:
        """The members and the backend object of validated arguments."""
        self.x, self.y, self.cost_fn = x, y, cost_fn
        self._valid = (x._version, y._version)  # the points' state when validated (see detach)
        if backend == "auto" and not _multiscale_may_win(self.cost_fn, x, y):
            n, m = self.shape
            big = n * m * max(1, self.batch_shape.numel()) > LAZY_ABOVE
            kernel = (isinstance(self.cost_fn, SqEuclidean) and kernel_available(x)
                      and x.shape[-1] <= KERNEL_MAX_DIM)
            backend = "lazy" if big or kernel else "dense"
        self.backend = backend  # "auto" only where the choice depends on eps (see backend_for)
        self.chunk = chunk
        # the backend object, chosen once: a cached dense cost with the kernel fast path, or the lazy reduction
        if backend == "multiscale":  # k-d cells, coarse eps-scaling, certified block truncation
            self._impl = MultiscaleSoftmin(self.cost_fn, x, y)
        elif backend == "auto":  # lazy or multiscale, by eps
            self._impl = _ByEps(self.cost_fn, x, y, chunk, MULTISCALE_MAX_BLUR**2 * self.cost_scale())
        else:
            dense = backend == "dense"
            self._impl = _DensePoints(self.cost_fn) if dense else lazy_backend(self.cost_fn, x, chunk, backend)

    def cost_scale(self) -> float:
        """An upper bound of the largest cost (the bounding-box diameter to the power p for Euclidean costs)."""
        p = getattr(self.cost_fn, "p", None)
        if self.cost_fn.name in ("sqeuclidean", "euclidean") and p is not None:
            d = self.x.shape[-1]
            pts = self.x.detach().reshape(-1, d)
            if not self.symmetric:
                pts = torch.cat([pts, self.y.detach().reshape(-1, d)])
            lo, hi = torch.aminmax(pts, dim=0)
            diam = float(torch.linalg.vector_norm(hi - lo))
            return getattr(self.cost_fn, "scale", 1.0) * max(diam, 1e-30) ** p
        if self.cost_fn.name == "cosine":
            return 2.0
        return cost_scale_of(self._impl.cost(self.x, self.y) if self.backend == "dense" else self.cost())

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        """The soft-min through the backend chosen at construction (see :class:`~monge.geometry.base.Geometry`);
        ``backend="auto"`` may choose by ``eps`` (:meth:`backend_for`)."""
        return self._impl.softmin(self.x, self.y, h, eps, dim)

    def backend_for(self, eps: float) -> str:
        """The backend :meth:`softmin` runs at ``eps`` for an unbatched potential: :attr:`backend`, except for
        ``backend="auto"`` on large low-dimensional squared-Euclidean clouds (see :data:`MULTISCALE_MIN_ENTRIES`),
        where it is ``"multiscale"`` at ``eps <= (MULTISCALE_MAX_BLUR diam)^2`` (from the second call at that ``eps``:
        the first, an annealing stage's, runs lazy) and ``"lazy"`` above (and for batched potentials).

        Example:
            >>> import torch
            >>> PointCloud(torch.rand(50, 2)).backend_for(1e-3)   # small: lazy at every eps
            'lazy'
        """
        return self._impl.backend_for(eps) if self.backend == "auto" else self.backend

    def plan_cost(self, u: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
        """``<P, C>`` (see :meth:`Geometry.plan_cost`); the lazy backend reduces row tiles in O(n + m) memory."""
        if self.backend == "dense":
            return super().plan_cost(u, v, eps)
        return plan_cost_tiles(self.x, self.y, u, v, eps, self.cost_fn, self.chunk)

    def barycentric_map(self, v: torch.Tensor, eps: float, x: torch.Tensor | None = None) -> torch.Tensor:
        r"""``T(x) = sum_j softmax_j((v_j - c(x, y_j)) / eps) y_j`` by tiles of query points (never a ``(k, m)``
        matrix beyond a tile); ``x=None``: the source points. See :meth:`Geometry.barycentric_map`."""
        if x is None:
            x = self.x
        elif not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[-1] != self.y.shape[-1]:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected points of shape (..., k, d) with d = {self.y.shape[-1]} (the dimension of "
                             f"the target points), got {got}")
        return barycentric_map_tiles(x, self.y, v, eps, self.cost_fn, self.chunk)

    def points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: the source and target points (see :meth:`Geometry.points`)."""
        return self.x, self.y

    def transposed(self) -> "PointCloud":
        """The cloud of the reversed problem (``y`` as source, ``x`` as target); the named costs are symmetric, a
        callable cost ``c`` becomes ``(u, v) -> c(v, u)^T``."""
        if self.symmetric:
            return self
        cost = self.cost_fn
        if isinstance(cost, CallableCost):
            fn = cost.fn
            cost = CallableCost(lambda u, v: fn(v, u).mT, cost.p)
        return PointCloud(self.y, self.x, cost=cost, backend=self.backend, chunk=self.chunk)

    def cost_factors(self):
        r""":math:`s\|x_i - y_j\|^2 = U V^\top` with ``U = s [|x|^2, 1, -2x]``, ``V = [1, |y|^2, y]`` (points centred
        on the mean of both clouds first, against cancellation) for a squared Euclidean cost ``s |x - y|^2``, else
        ``None``.

        Example:
            >>> import torch
            >>> x, y = torch.rand(5, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
            >>> U, V = PointCloud(x, y).cost_factors()
            >>> bool(torch.allclose(U @ V.mT, PointCloud(x, y).cost()))
            True
        """
        s = getattr(self.cost_fn, "scale", None) if isinstance(self.cost_fn, SqEuclidean) else None
        if s is None:
            return None
        centre = 0.5 * (self.x.mean(-2, keepdim=True) + self.y.mean(-2, keepdim=True)).detach()
        x0, y0 = self.x - centre, self.y - centre
        sx, sy = (x0 * x0).sum(-1, keepdim=True), (y0 * y0).sum(-1, keepdim=True)
        U = torch.cat([sx, torch.ones_like(sx), -2.0 * x0], -1)
        V = torch.cat([torch.ones_like(sy), sy, y0], -1)
        return (U if s == 1.0 else s * U), V

    def loop_geometry(self, unroll: bool) -> Geometry:
        """Detached for envelope/implicit loops; unrolling a dense cloud builds its differentiable cost once."""
        if not unroll:
            return self.detach()
        if self.backend == "dense":
            from .dense import DenseCost

            return DenseCost(self.cost())
        return self

    @property
    def symmetric(self) -> bool:
        return self.y is self.x

    @property
    def requires_grad(self) -> bool:
        return self.x.requires_grad or self.y.requires_grad

    def dense_loop_cost(self, max_entries: int) -> torch.Tensor | None:
        """The cost of :meth:`detach` (no autograd graph), computed without building that cloud, for a float64 CPU
        cloud on the lazy or dense backend of at most ``max_entries`` cost entries (all batch elements), where a
        solver iterates on the materialised cost; ``None`` otherwise."""
        n, m = self.shape
        if self.backend not in ("lazy", "dense") or self.dtype != torch.float64 or self.device.type != "cpu" or \
                n * m * self.batch_shape.numel() > max_entries:
            return None
        return self.cost_fn(self.x.detach(), self.y.detach())

    def self_cloud(self, side: int, backend: str = "auto") -> "PointCloud":
        """The cloud of one side's points against themselves (``side`` 0: ``x``, 1: ``y``) with this cloud's cost and
        chunk, and ``backend`` (the one this cloud was asked for: it is chosen again for the new shape): the self
        terms of a Sinkhorn divergence. The points are not validated again (they were, for this cloud); ``backend``
        is checked.

        Example:
            >>> import torch
            >>> PointCloud(torch.zeros(5, 2), torch.ones(3, 2)).self_cloud(1).shape
            (3, 3)
        """
        if backend not in _BACKENDS:
            raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
        pts = self.y if side else self.x
        if (pts._version,) != self._valid[side:side + 1]:  # modified in place since validated: validate again
            return PointCloud(pts, cost=self.cost_fn, backend=backend, chunk=self.chunk)
        return PointCloud._trusted(pts, None, self.cost_fn, backend, self.chunk)

    def detach(self) -> "PointCloud":
        """The same geometry on detached points (itself when nothing needs gradients, so its cost cache is shared)."""
        if not (self.x.requires_grad or self.y.requires_grad):
            return self
        # one detached cloud per state of the points: solvers ask for it several times per solve; the version
        # counters (shared with the detached views) rebuild it when a point tensor was modified in place since
        key = (self.x._version, self.y._version)
        cached = self.__dict__.get("_detached")
        if cached is not None and cached[0] == key:
            return cached[1]
        y = None if self.symmetric else self.y.detach()
        geom = PointCloud._trusted(self.x.detach(), y, self.cost_fn, self.backend, self.chunk) \
            if key == self._valid else PointCloud(self.x.detach(), y, cost=self.cost_fn, backend=self.backend,
                                                  chunk=self.chunk)  # changed since validated: validate again
        if self.backend in ("multiscale", "auto"):
            geom._impl = self._impl  # one clustering and one set of block lists
        self._detached = (key, geom)
        return geom

    def release(self) -> None:
        if self.backend in ("multiscale", "auto"):
            (self._impl if self.backend == "multiscale" else self._impl.multiscale).release()

    def coarse_view(self, wa: torch.Tensor, wb: torch.Tensor, eps: float):
        """Multiscale only: the coarse problem eps-scaling starts on at the final temperature ``eps``, ``(coarse
        geometry, A, B, prolong, threshold)`` (:func:`~monge.geometry._backends.multiscale_coarse.coarse_view`), for
        unbatched weights ``wa, wb``; ``None`` for the other backends."""
        if self.backend not in ("multiscale", "auto") or wa.dim() != 1 or wb.dim() != 1:
            return None
        red = self._impl if self.backend == "multiscale" else self._impl.multiscale
        return coarse_view(red, self.x, self.y, wa, wb, eps)

    def cost(self) -> torch.Tensor:
        return self.cost_fn(self.x, self.y)

    def like(self) -> torch.Tensor:
        return self.x

    def __repr__(self) -> str:
        auto = f" (multiscale at eps <= {self._impl.eps_max:.3g}, else lazy)" if self.backend == "auto" else ""
        return (f"PointCloud(x={tuple(self.x.shape)}, y={tuple(self.y.shape)}, cost={self.cost_fn!r}, "
                f"backend={self.backend!r}{auto})")


def _multiscale_may_win(cost_fn: Cost, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``backend="auto"`` chooses by eps between lazy and multiscale: unbatched squared-Euclidean clouds on
    the CPU (the compiled block kernel), ``d <= MULTISCALE_MAX_DIM`` and ``n m >= MULTISCALE_MIN_ENTRIES``."""
    return (isinstance(cost_fn, SqEuclidean) and x.dim() == 2 and y.dim() == 2 and kernel_available(x)
            and _multiscale._b_fwd is not None and x.shape[-1] <= MULTISCALE_MAX_DIM  # its compiled block kernel
            and x.shape[0] * y.shape[0] >= MULTISCALE_MIN_ENTRIES)


class _ByEps:
    """``backend="auto"`` where the best reduction depends on the temperature: the multiscale soft-min at
    ``eps <= eps_max`` for unbatched potentials (few kept block pairs), the lazy one otherwise. Both are exact to
    the multiscale certificate (``eps * rtol`` per entry), so a solve may switch between them as eps anneals.
    An ``eps`` takes the multiscale path from its second call per ``dim`` (an adaptive switch, as the dense
    kernel cache's): a one-iteration annealing stage does not pay a block selection (measured at n = 2e4, d = 3:
    eps-scaling + 10 iterations 4.4 CPU-s instead of 8.8 on multiscale, lazy 4.0; then 2.5x lazy per iteration)."""

    def __init__(self, cost_fn: Cost, x, y, chunk, eps_max: float):
        self.lazy = lazy_backend(cost_fn, x, chunk, "lazy")
        self.multiscale = MultiscaleSoftmin(cost_fn, x, y)  # its clustering is built on its first call
        self.eps_max = eps_max
        self._seen: set = set()

    def backend_for(self, eps: float) -> str:
        return "multiscale" if eps <= self.eps_max else "lazy"

    def softmin(self, x, y, h, eps, dim):
        if h.dim() == 1 and eps <= self.eps_max:
            key = (dim, float(eps))
            if key in self._seen:
                return self.multiscale.softmin(x, y, h, eps, dim)
            self._seen.add(key)
        return self.lazy.softmin(x, y, h, eps, dim)


class _DensePoints:
    """The dense backend of a point cloud: the cost materialised once (cached when it carries no autograd graph)
    and reduced by the dense soft-min with its kernel fast path
    (:class:`~monge.geometry._backends.kernel.KernelCache`)."""

    def __init__(self, cost_fn: Cost):
        self.cost_fn, self._C, self._fast = cost_fn, None, KernelCache()

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._C is not None:
            return self._C
        C = self.cost_fn(x, y)
        if not C.requires_grad:
            self._C = C
        return C

    def softmin(self, x, y, h, eps, dim):
        return self._fast.softmin(self.cost(x, y), h, eps, dim)
