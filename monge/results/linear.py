"""Results of linear OT problems (exact, assignment, entropic): frozen dataclasses with the same names everywhere."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops.logsumexp import log_weights
from .convergence import Convergence
from .maps import extend_map, plan_projection

__all__ = ["SparsePlan", "ExactResult", "AssignmentResult", "SinkhornResult"]


def _scatter_plan(rows, cols, vals, n: int, m: int) -> torch.Tensor:
    """Dense ``(..., n, m)`` plan from padded sparse triplets ``(..., K)`` (padding has value 0)."""
    batch = rows.shape[:-1]
    flat = vals.new_zeros((*batch, n * m))
    flat.scatter_add_(-1, rows * m + cols, vals)
    return flat.reshape(*batch, n, m)


class SparsePlan:
    """The plan of a result held as triplets ``rows, cols, vals (..., K)`` with ``shape = (n, m)``: the dense
    plan, a sparse tensor and the marginals, for every result that keeps its plan sparse."""

    @property
    def plan(self) -> torch.Tensor:
        """The dense plan ``(..., n, m)`` (materialised on each access; use :attr:`plan_sparse` for large n*m)."""
        return _scatter_plan(self.rows, self.cols, self.vals, *self.shape)

    @property
    def plan_sparse(self) -> torch.Tensor:
        """The plan as a coalesced ``torch.sparse_coo_tensor`` of shape ``(..., n, m)``."""
        batch = self.rows.shape[:-1]
        K = self.rows.shape[-1]
        keep = (self.vals > 0).reshape(-1)
        bidx = torch.arange(batch.numel(), device=self.rows.device).repeat_interleave(K)
        bidx = torch.stack(torch.unravel_index(bidx, batch)) if len(batch) else bidx.new_zeros((0, bidx.numel()))
        idx = torch.cat([bidx[:, keep], self.rows.reshape(1, -1)[:, keep], self.cols.reshape(1, -1)[:, keep]])
        return torch.sparse_coo_tensor(idx, self.vals.reshape(-1)[keep], (*batch, *self.shape),
                                       check_invariants=False).coalesce()

    @property
    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P 1, P^T 1)`` computed from the sparse plan."""
        n, m = self.shape
        batch = self.rows.shape[:-1]
        r = self.vals.new_zeros((*batch, n)).scatter_add_(-1, self.rows, self.vals)
        c = self.vals.new_zeros((*batch, m)).scatter_add_(-1, self.cols, self.vals)
        return r, c


@dataclass(frozen=True)
class ExactResult(SparsePlan):
    r"""Solution of an exact (unregularised) OT problem.

    Attributes:
        value: the optimal cost :math:`\langle P, C\rangle`, batch shape, differentiable (envelope theorem:
            the plan for the cost, centred potentials for the weights).
        f, g: dual potentials ``(..., n)``, ``(..., m)`` with :math:`f_i + g_j \le C_{ij}`, equality on the
            support of the plan, and :math:`\langle a, f\rangle + \langle b, g\rangle` = value at optimality.
        convergence: status, pivots, marginal error and duality gap (the optimality certificate).
        rows, cols, vals: the plan in sparse form, padded to ``n + m - 1`` entries per problem (padding:
            value 0 at (0, 0)); at most ``n + m - 1`` nonzeros (a basic solution).
        problem: the :class:`~monge.problems.LinearProblem` that was solved (``None`` where the solver did not
            keep it); :meth:`transport` and :meth:`inverse_transport` need one whose geometry has points.
    """

    value: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    convergence: Convergence
    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor
    shape: tuple[int, int]
    problem: object = None

    @property
    def transport_cost(self) -> torch.Tensor:
        r""":math:`\langle P, C\rangle`: for an exact solver, the value itself."""
        return self.value

    def _map(self, q, inverse: bool, extension: str, bandwidth):
        if self.problem is None:
            raise TypeError("transport: this result keeps no problem (solved from a cost matrix, or by a solver that keeps "
                            "none: sparse, multiscale); solve points "
                            "with monge.solve_points(x, y) or NetworkSimplex()(LinearProblem(PointCloud(x, y)))")
        xs, ys = self.problem.geom.points()
        rows, cols = (self.cols, self.rows) if inverse else (self.rows, self.cols)
        if inverse:
            xs, ys = ys, xs
        T, mass = plan_projection(rows, cols, self.vals, ys, xs.shape[-2])
        if q is None:
            if bool((mass <= 0).any()):  # samples without mass (zero weights): extended like new points
                T = torch.where((mass > 0).unsqueeze(-1), T, extend_map(xs, xs, T, mass, "nearest"))
            return T
        return extend_map(q, xs, T, mass, extension, bandwidth)

    def transport(self, x: torch.Tensor | None = None, *, extension: str = "nearest",
                  bandwidth: float | None = None) -> torch.Tensor:
        r"""The transport map of the exact plan: its barycentric projection on the source points, extended to new
        points by the displacement of their nearest source point (or a kernel average of displacements).

        .. math::
            T(x_i) = \frac{\sum_j P_{ij} y_j}{\sum_j P_{ij}}, \qquad
            T(x) = x + T(x_{i^*}) - x_{i^*},\ i^* = \arg\min_{i:\,a_i > 0} \|x - x_i\| \quad (\text{"nearest"})

        ``extension="kernel"``: :math:`T(x) = x + \sum_i w_i(x)(T(x_i) - x_i)` with
        :math:`w_i \propto a_i e^{-\|x - x_i\|^2 / 2\sigma^2}` (``bandwidth`` :math:`\sigma`; ``None``: the median
        nearest-neighbour spacing of the samples); see :mod:`monge.results.maps`. Needs a problem on points.

        Args:
            x: ``(..., k, d)`` points to map (``None``: the source points, where the projection itself is returned).

        Returns:
            ``(..., k, d)``, differentiable w.r.t. ``x`` and the target points (the plan is piecewise constant).

        Example:
            >>> import torch, monge
            >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64); y = x + 5.0
            >>> res = monge.solve_points(x, y)
            >>> res.transport().flatten().tolist(), res.transport(torch.tensor([[0.2]], dtype=torch.float64)).item()
            ([5.0, 6.0], 5.2)
        """
        return self._map(x, False, extension, bandwidth)

    def inverse_transport(self, y: torch.Tensor | None = None, *, extension: str = "nearest",
                          bandwidth: float | None = None) -> torch.Tensor:
        r"""The inverse map, target to source: :meth:`transport` of the transposed plan,
        :math:`T^{-1}(y_j) = \sum_i P_{ij} x_i / \sum_i P_{ij}`, extended to new ``y`` the same way.

        Example:
            >>> import torch, monge
            >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
            >>> monge.solve_points(x, x + 5.0).inverse_transport().flatten().tolist()
            [0.0, 1.0]
        """
        return self._map(y, True, extension, bandwidth)


@dataclass(frozen=True)
class AssignmentResult:
    r"""Solution of a linear assignment problem :math:`\min_\sigma \sum_i C_{i\sigma(i)}`.

    Attributes:
        cols: int64 ``(..., n)``: row ``i`` is matched to column ``cols[i]`` (a permutation when n = m).
        value: :math:`\sum_i C_{i, cols_i}`, batch shape, differentiable w.r.t. ``C``.
        f, g: dual potentials with :math:`f_i + g_j \le C_{ij}`, equality on matched pairs; for n < m,
            ``g <= 0`` and ``g = 0`` on unmatched columns.
        convergence: status and the duality gap certificate.
    """

    cols: torch.Tensor
    value: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    convergence: Convergence
    shape: tuple[int, int]

    @property
    def plan(self) -> torch.Tensor:
        """The 0/1 matching matrix ``(..., n, m)``."""
        n, m = self.shape
        P = self.value.new_zeros((*self.cols.shape[:-1], n, m))
        return P.scatter_(-1, self.cols.unsqueeze(-1), 1.0)


@dataclass(frozen=True)
class SinkhornResult:
    r"""Solution of an entropic OT problem, held as dual potentials (the plan is computed on demand).

    .. math::
        P_{ij} = a_i b_j \exp\big((f_i + g_j - C_{ij})/\varepsilon\big)

    Attributes:
        f, g: potentials ``(..., n)``, ``(..., m)`` (grid geometries: the grid shape).
        value: the regularised objective (dual value; equals the primal at convergence), batch shape,
            differentiable according to the solver's ``grad``.
        eps: the final temperature.
        problem: the :class:`~monge.problems.LinearProblem` that was solved (geometry, weights, penalties).
        convergence: converged / status / n_iters / error (criterion "marginal_l1") / errors (trace at check points).
    """

    f: torch.Tensor
    g: torch.Tensor
    value: torch.Tensor
    eps: float
    problem: object
    convergence: Convergence

    def _log_plan(self, C: torch.Tensor) -> torch.Tensor:
        geom = self.problem.geom
        k = geom.event_ndim
        flat = lambda t: t.reshape(*t.shape[: t.dim() - k], -1)  # noqa: E731
        f = flat(self.f) + self.eps * flat(log_weights(self.problem.a))
        g = flat(self.g) + self.eps * flat(log_weights(self.problem.b))
        return (f.unsqueeze(-1) + g.unsqueeze(-2) - C) / self.eps

    @property
    def plan(self) -> torch.Tensor:
        """The dense plan ``(..., n, m)`` (grids: ``(N, N)`` over flattened cells), built from the potentials."""
        return torch.exp(self._log_plan(self.problem.geom.cost()))

    def _log_potentials(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f + eps log a, g + eps log b)``: the plan is ``exp((u_i + v_j - C_ij) / eps)``."""
        eps = self.eps
        return self.f + eps * log_weights(self.problem.a), self.g + eps * log_weights(self.problem.b)

    @property
    def transport_cost(self) -> torch.Tensor:
        r""":math:`\langle P, C\rangle`, the transport part of the objective (without the entropy), batch shape.

        Computed by the geometry (:meth:`~monge.geometry.Geometry.plan_cost`): lazy point clouds reduce row tiles
        of the cost in O(n + m) memory and never build the plan; differentiable.
        """
        u, v = self._log_potentials()
        return self.problem.geom.plan_cost(u, v, self.eps)

    def apply_plan(self, v: torch.Tensor, dim: int = 1) -> torch.Tensor:
        r"""``P v`` (``dim=1``) or ``P^T v`` (``dim=0``) through the geometry's soft-min, never the ``(n, m)`` plan.

        .. math::
            (P v)_i = \exp\Big(\big(f_i + \varepsilon \log a_i - \mathrm{softmin}_\varepsilon(g + \varepsilon \log b
                + \varepsilon \log v)_i\big)/\varepsilon\Big) \quad (v \ge 0;\ \text{signed } v = v^+ - v^-)

        Args:
            v: ``(..., m)`` for ``dim=1`` (``(..., n)`` for ``dim=0``; grids: the grid shape); leading dims
                broadcast against the problem's batch shape (several vectors at once: stack them in front).

        Returns:
            ``(..., n)`` (``dim=1``) or ``(..., m)``, in O(n + m) memory for a lazy geometry; differentiable.

        Example:
            >>> import torch, monge
            >>> x = torch.rand(50, 2, dtype=torch.float64); y = torch.rand(40, 2, dtype=torch.float64)
            >>> res = monge.solve_points(x, y, eps=0.05)
            >>> v = torch.randn(40, dtype=torch.float64)
            >>> bool(torch.allclose(res.apply_plan(v), res.plan @ v))
            True
        """
        if dim not in (0, 1) or isinstance(dim, bool):
            raise ValueError(f"dim: expected 1 (P v) or 0 (P^T v), got {dim!r}")
        prob, eps = self.problem, self.eps
        geom = prob.geom
        pot_in, w_in, pot_out, w_out = (self.g, prob.b, self.f, prob.a) if dim == 1 else (self.f, prob.a, self.g, prob.b)
        base = pot_in + eps * log_weights(w_in)
        out_log = pot_out + eps * log_weights(w_out)

        def part(w):
            return torch.exp((out_log - geom.softmin(base + eps * log_weights(w), eps, dim)) / eps)

        out = part(v.clamp_min(0))
        if bool((v < 0).any()):
            out = out - part((-v).clamp_min(0))
        return out

    @property
    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P 1, P^T 1)`` computed through the geometry's softmin (no dense plan)."""
        geom, eps = self.problem.geom, self.eps
        la, lb = log_weights(self.problem.a), log_weights(self.problem.b)
        row = torch.exp(la + (self.f - geom.softmin(self.g + eps * lb, eps, 1)) / eps)
        col = torch.exp(lb + (self.g - geom.softmin(self.f + eps * la, eps, 0)) / eps)
        return row, col

    def transport(self, x: torch.Tensor | None = None) -> torch.Tensor:
        r"""The entropic transport map, the barycentric projection of the plan, extended to any point.

        .. math::
            T(x) = \sum_j w_j(x)\, y_j, \qquad
            w_j(x) \propto b_j \exp\big((g_j - c(x, y_j))/\varepsilon\big)

        On the source points, :math:`T(x_i) = \sum_j P_{ij} y_j / \sum_j P_{ij}`. Needs a geometry with points
        (:class:`~monge.geometry.PointCloud`); computed by tiles of query points
        (:meth:`~monge.geometry.Geometry.barycentric_map`), never a ``(k, m)`` matrix beyond a tile.

        Args:
            x: ``(..., k, d)`` points to map (default: the source points of the problem).

        Returns:
            ``(..., k, d)``, differentiable w.r.t. ``x``, the points and the potentials.

        Example:
            >>> import torch, monge
            >>> x = torch.rand(30, 2, dtype=torch.float64); y = x + 1.0
            >>> res = monge.solve_points(x, y, eps=2e-2)
            >>> bool((res.transport(x) - y).abs().max() < 0.1)   # a translation is recovered (up to the blur)
            True
        """
        return self.problem.geom.barycentric_map(self._log_potentials()[1], self.eps, x)

    def inverse_transport(self, y: torch.Tensor | None = None) -> torch.Tensor:
        r"""The inverse entropic map (target to source), the barycentric projection through the plan's transpose.

        .. math::
            T^{-1}(y) = \sum_i w_i(y)\, x_i, \qquad w_i(y) \propto a_i \exp\big((f_i - c(x_i, y))/\varepsilon\big)

        Args:
            y: ``(..., k, d)`` points to map (default: the target points of the problem).

        Returns:
            ``(..., k, d)``, differentiable; computed by tiles through the transposed geometry.

        Example:
            >>> import torch, monge
            >>> x = torch.rand(30, 2, dtype=torch.float64)
            >>> res = monge.solve_points(x, x + 1.0, eps=2e-2)
            >>> bool((res.inverse_transport() - x).abs().max() < 0.1)
            True
        """
        return self.problem.geom.transposed().barycentric_map(self._log_potentials()[0], self.eps, y)
