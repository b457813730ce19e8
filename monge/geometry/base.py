r"""The geometry contract: everything a problem, a solver or a result needs to know about the cost.

Nothing outside :mod:`monge.geometry` looks inside a geometry (its points, its grid, its backend): problems
validate weights against :attr:`Geometry.source_shape` / :attr:`Geometry.target_shape`, solvers call
:meth:`Geometry.softmin` on :meth:`Geometry.loop_geometry`, results ask for :meth:`Geometry.plan_cost` and
:meth:`Geometry.barycentric_map`. A new geometry implements the abstract members (``shape``, ``batch_shape``,
``dtype``, ``device``, ``like``, ``softmin``, ``detach``) and overrides the others where it can do better than
the dense defaults.
"""

from __future__ import annotations

import torch

__all__ = ["Geometry", "cost_scale_of"]


def cost_scale_of(C: torch.Tensor) -> float:
    """``max(max C, max C - min C)``: the largest cost for nonnegative costs, the spread for any other."""
    C = C.detach()
    if C.numel() == 0:
        return 0.0
    hi, lo = float(C.max()), float(C.min())
    return max(hi, hi - lo)


def _flat(t: torch.Tensor, k: int) -> torch.Tensor:
    """Merge the last ``k`` (support) dimensions into one."""
    return t.reshape(*t.shape[: t.dim() - k], -1)


class Geometry:
    """A ground cost between a source support of size ``n`` and a target support of size ``m``.

    Subclasses own every computation with the cost; solvers never look inside. ``cost()`` materialises the
    ``(..., n, m)`` matrix when that is affordable.

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> geom = DenseCost(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        >>> geom.source_shape, geom.target_shape
        ((2,), (2,))
        >>> u = v = torch.zeros(2)   # P = exp((u_i + v_j - C_ij) / eps)
        >>> round(float(geom.plan_cost(u, v, eps=1.0)), 6)   # 2 exp(-1)
        0.735759
    """

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``: the sizes of the two supports."""
        raise NotImplementedError

    @property
    def event_ndim(self) -> int:
        """How many trailing dimensions of weights/potentials index the support (1; a d-D grid: d)."""
        return len(self.source_shape)

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The trailing shape of source weights and potentials: ``(n,)``, or a grid's ``(n_1, ..., n_d)``."""
        return (self.shape[0],)

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The trailing shape of target weights and potentials: ``(m,)``, or a grid's ``(n_1, ..., n_d)``."""
        return (self.shape[1],)

    @property
    def batch_shape(self) -> torch.Size:
        """Leading batch dimensions (``torch.Size([])`` for a single problem)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def cost(self) -> torch.Tensor:
        """The dense cost matrix ``(..., n, m)`` (differentiable w.r.t. whatever it was built from); supports with
        a shape (grids) are flattened in row-major order. Raises ``ValueError`` where it is not affordable."""
        raise NotImplementedError

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        r"""The soft-min (log-sum-exp) reduction of the cost against a potential, the core of entropic OT.

        .. math::
            \text{dim}=1:\quad \mathrm{out}_i = -\varepsilon \log \sum_j \exp\big((h_j - C_{ij})/\varepsilon\big),
            \qquad
            \text{dim}=0:\quad \mathrm{out}_j = -\varepsilon \log \sum_i \exp\big((h_i - C_{ij})/\varepsilon\big)

        Args:
            h: ``(..., *target_shape)`` for ``dim=1`` (reduce over the target index), ``(..., *source_shape)``
                for ``dim=0``; usually a potential plus ``eps * log(weights)``; ``-inf`` entries (zero weights)
                are allowed.
            eps: the temperature, a positive float in cost units.
            dim: 1 to reduce over targets (gives a function of the source index), 0 over sources.

        Returns:
            ``(..., *source_shape)`` for ``dim=1``, ``(..., *target_shape)`` for ``dim=0``; differentiable in
            ``h`` and in the data the geometry was built from (points), computed stably in the log domain.

        The reduction may depend on ``eps`` (a ``backend="auto"`` point cloud runs its multiscale soft-min at small
        ``eps`` only): every backend returns the same values within its stated tolerance, so a solve may cross
        from one to another as eps anneals.

        Adaptive caches (part of the contract): a geometry may keep private state between calls to go faster:
        the Gibbs kernel ``exp(-(C - min C)/eps)`` of a dense cost from the third call at one ``eps``, per-axis
        1-D kernels of a grid, switches to float64 products after an underflow, and the ``eps`` values at which
        a fast path was refused. This state never changes what ``softmin`` returns beyond rounding: every fast
        path is a shifted product certified entry by entry (a sum that under- or overflowed is recomputed by
        the exact log-sum-exp), the cost is shifted by its minimum so negative costs are safe, and a call
        recorded for autograd reads the switches without moving them (a checkpointed loop recomputes the same
        path in its backward pass). Caches are per geometry object: share one geometry across solves at one
        ``eps`` to reuse them; :meth:`detach` returns ``self`` when nothing needs gradients so they are shared.
        """
        raise NotImplementedError

    @property
    def symmetric(self) -> bool:
        """Whether source and target are the same support and cost (self-transport, e.g. OT(a, a))."""
        return False

    def cost_scale(self) -> float:
        """The scale of the cost for eps-scaling's first temperature: the largest cost, or its spread
        ``max C - min C`` when that is larger (negative costs: an offset changes no plan); subclasses do it cheaper."""
        return cost_scale_of(self.cost())

    def detach(self) -> "Geometry":
        """The same geometry on detached data: solver loops run on it, then one differentiable step follows."""
        raise NotImplementedError

    @property
    def requires_grad(self) -> bool:
        """Whether a tensor of the geometry requires gradients (exactly when :meth:`detach` is not ``self``);
        subclasses answer without building the detached geometry."""
        return self.detach() is not self

    def release(self) -> None:
        """Drops what the geometry keeps between soft-mins and can rebuild on demand (a multiscale cloud's block
        lists: ~0.5 GB per list at 10^6 points), once a solve has ended: memory, never results. Default: nothing."""

    def loop_geometry(self, unroll: bool) -> "Geometry":
        """The geometry a solver's iterations run on: :meth:`detach` for envelope/implicit gradients (the loop
        records nothing); for unrolled gradients ``self``, or a cheaper equivalent (a dense point cloud builds its
        differentiable cost once instead of at every iteration)."""
        return self if unroll else self.detach()

    def like(self) -> torch.Tensor:
        """A tensor carrying the geometry's dtype and device, for allocating weights and potentials."""
        raise NotImplementedError

    def plan_cost(self, u: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
        r"""The transport cost :math:`\langle P, C\rangle` of the plan given by two log-domain potentials.

        .. math::
            P_{ij} = \exp\big((u_i + v_j - C_{ij})/\varepsilon\big), \qquad
            \langle P, C\rangle = \sum_{ij} P_{ij} C_{ij}

        Args:
            u: ``(..., *source_shape)``, v: ``(..., *target_shape)`` (a Sinkhorn result: ``f + eps log a`` and
                ``g + eps log b``); leading dimensions broadcast with the geometry's batch shape.
            eps: the temperature of the plan.

        Returns:
            the batch shape; differentiable. The default materialises the cost; point clouds on the lazy backend
            reduce row tiles in O(n + m) memory.
        """
        k = len(self.source_shape)
        C = self.cost()
        u, v = _flat(u, k), _flat(v, len(self.target_shape))
        P = torch.exp((u.unsqueeze(-1) + v.unsqueeze(-2) - C) / eps)
        return (P * C).sum((-1, -2))

    def coarse_view(self, wa: torch.Tensor, wb: torch.Tensor, eps: float):
        """A coarse problem eps-scaling can start on (multiscale clouds), fine enough for the final temperature
        ``eps``: ``(coarse geometry, A, B, prolong, threshold)`` with the coarse weights ``A, B``, ``prolong(h, eps,
        side)`` the soft-min at the entries of ``side`` (0: source, 1: target) against the other side's coarse
        support carrying ``h``, and the temperature down to which the coarse problem stands for the fine one;
        ``None`` (the default) where there is none."""
        return None

    def cost_factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A low-rank factorisation ``C = U V^T`` (``U (..., n, r)``, ``V (..., m, r)``, differentiable) when the cost
        has one of small rank ``r`` (a squared Euclidean cost: ``r = d + 2``), else ``None`` (the default)."""
        return None

    def barycentric_map(self, v: torch.Tensor, eps: float, x: torch.Tensor | None = None) -> torch.Tensor:
        r"""The entropic barycentric map :math:`T(x) = \sum_j w_j(x)\, y_j`, where
        :math:`w_j(x) \propto \exp\big((v_j - c(x, y_j))/\varepsilon\big)`, for geometries with target points.

        Args:
            v: ``(..., m)``, the target log-potential (``g + eps log b``).
            eps: the temperature. x: ``(..., k, d)`` query points (``None``: the source points).

        Returns:
            ``(..., k, d)``. Geometries without points raise ``TypeError``.
        """
        raise TypeError(f"transport: needs a geometry with points (monge.PointCloud), got {type(self).__name__}")

    def points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The source and target points ``(x (..., n, d), y (..., m, d))`` of geometries that have them (the maps of
        exact plans are built on them); geometries without points raise ``TypeError``."""
        raise TypeError(f"transport: needs a geometry with points (monge.PointCloud), got {type(self).__name__}")

    def transposed(self) -> "Geometry":
        """The geometry of the reversed problem (target -> source, cost ``C^T``), for inverse maps; ``TypeError``
        where a geometry offers none."""
        raise TypeError(f"inverse_transport: needs a geometry with points (monge.PointCloud), got "
                        f"{type(self).__name__}")
