r"""One-line Gromov-Wasserstein entry points: inputs -> :class:`~monge.problems.QuadraticProblem` -> solver -> result.

.. math::
    \mathrm{GW}(a, b) = \min_{P \in \Pi(a, b)} \sum_{i,j,k,l} L(C^x_{ik}, C^y_{jl}) P_{ij} P_{kl}

(with the square loss, the value of the problem, not its square root, as POT reports it).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from ..._validation import as_tensor, check_cost_matrix, check_points
from ...geometry.base import Geometry
from ...geometry.pointcloud import PointCloud
from ...problems.quadratic import QuadraticProblem, check_square_symmetric
from .cg import GromovWasserstein
from .common import GWResult, stack_exact, user_stacklevel
from .entropic import EntropicGromovWasserstein

__all__ = ["gromov_wasserstein", "fused_gromov_wasserstein"]


def _intra(x, name: str, cost):
    """A geometry for one side: given as is, a cost matrix (``cost="precomputed"``) or points ``(n, d)``."""
    if isinstance(x, Geometry):
        return x
    t = as_tensor(x, name)
    if cost == "precomputed":
        check_cost_matrix(t, name)
        check_square_symmetric(t, name)
        return t
    check_points(t, name)
    return PointCloud(t, cost=cost)


def _solver(eps, solver_kw):
    return GromovWasserstein(**solver_kw) if eps is None else EntropicGromovWasserstein(eps=eps, **solver_kw)


def gromov_wasserstein(x, y, a=None, b=None, *, eps: float | None = None, loss: str = "sqeuclidean",
                       cost="sqeuclidean", init=None, rho_a: float | None = None, rho_b: float | None = None,
                       **solver_kw) -> GWResult:
    r"""Gromov-Wasserstein between two spaces: exact (conditional gradient) when ``eps`` is None, else entropic.

    .. math::
        \min_{P \in \Pi(a, b)} \sum_{i,j,k,l} L(C^x_{ik}, C^y_{jl}) P_{ij} P_{kl}
        \;\big(+\ \varepsilon\, \mathrm{KL}(P \,|\, a \otimes b)\big)

    Args:
        x: source points ``(n, d)``, or its intra-domain cost ``(n, n)`` with ``cost="precomputed"``, or a geometry.
        y: target points ``(m, d')`` (any dimension ``d'``), a cost ``(m, m)`` or a geometry.
        a, b: weights ``(n,)``, ``(m,)`` (``None``: uniform). eps: entropic regularisation in objective units
            (``None``: exact CG, :class:`~monge.solvers.gromov.GromovWasserstein`).
        loss: ``"sqeuclidean"`` :math:`(s - t)^2` or ``"kl"``. cost: the intra-domain cost of points
            (``"sqeuclidean"``: held in low rank, O((n + m) d) memory besides the plan; any monge cost), or
            ``"precomputed"``.
        init: a starting plan ``(n, m)`` (default: the product ``a b^T``).
        rho_a, rho_b: KL penalties replacing the marginal constraints (unbalanced GW, entropic only; one side alone
            is allowed).
        **solver_kw: ``atol``, ``rtol``, ``max_iter``, ``starts`` (exact) or ``tol``, ``max_iter``, ``inner_tol``,
            ``inner_max_iter``, ``backend``, ``grad`` (entropic).

    Batches: ``x (B, n, d)`` / ``(B, n, n)``, ``y``, ``a (B, n)``, ``b``, ``init (B, n, m)`` (any of them; the
    others are shared) solve ``B`` problems of equal sizes; every field gets a leading ``B`` and ``convergence`` is
    per problem (status, ``n_iters``). Entropic: one batched loop over ``(B, n, m)`` plans (each outer step a
    batched Sinkhorn over the problems still iterating). Exact: the problems one after another, the result an
    :class:`~monge.results.ExactGWResult` with sparse plans ``rows, cols, vals (B, K)`` padded with zeros.

    Returns:
        :class:`~monge.solvers.gromov.GWResult`: ``plan``, ``value`` (differentiable), ``quadratic_term`` (the GW
        term, >= 0), ``linear_term`` (0 here), ``f``, ``g``, ``convergence`` (``"fw_gap"`` at the returned plan, or
        the entropic plan change; inner solves in ``convergence.levels``).

    Failure modes: GW is nonconvex; both solvers return a stationary point, reported with its certificate. An
    unconverged solve warns once and reports ``converged=False``. Bad input raises ``ValueError`` naming it.

    Example:
        >>> import torch
        >>> x = torch.rand(6, 2, dtype=torch.float64)
        >>> perm = torch.tensor([3, 1, 5, 0, 2, 4])
        >>> res = gromov_wasserstein(x, x[perm] + 1.0)  # an isometric, shuffled copy
        >>> float(res.value) < 1e-12, res.plan.argmax(1).tolist() == perm.argsort().tolist()
        (True, True)
    """
    def build(x, y, a, b):
        with _named(geom_xx="x", geom_yy="y"):
            return QuadraticProblem(_intra(x, "x", cost), _intra(y, "y", cost), a, b, loss=loss, rho_a=rho_a,
                                    rho_b=rho_b)

    return _batched(_solver(eps, solver_kw), build, init, x=(x, 2), y=(y, 2), a=(a, 1), b=(b, 1))


def fused_gromov_wasserstein(M, Cx, Cy, a=None, b=None, *, alpha: float = 0.5, eps: float | None = None,
                             loss: str = "sqeuclidean", init=None, rho_a: float | None = None,
                             rho_b: float | None = None, **solver_kw) -> GWResult:
    r"""Fused Gromov-Wasserstein: a feature cost between the domains and the structure of each, traded by ``alpha``.

    .. math::
        \min_{P \in \Pi(a, b)} (1 - \alpha) \langle M, P\rangle
            + \alpha \sum_{i,j,k,l} L(C^x_{ik}, C^y_{jl}) P_{ij} P_{kl}
            \;\big(+\ \varepsilon\, \mathrm{KL}(P \,|\, a \otimes b)\big)

    Args:
        M: feature cost ``(n, m)`` (tensor or geometry). Cx, Cy: intra-domain costs ``(n, n)``, ``(m, m)``
            (symmetric; tensors or geometries, e.g. ``PointCloud(x)`` for the low-rank squared Euclidean cost).
        a, b: weights. alpha: weight of the structure term in ``[0, 1]`` (1: pure GW, 0: linear OT on ``M``).
        eps, loss, init, rho_a, rho_b, **solver_kw: as in :func:`gromov_wasserstein` (batches too: ``M (B, n, m)``,
            ``Cx (B, n, n)``, ...).

    Returns:
        :class:`~monge.solvers.gromov.GWResult` with ``value = (1 - alpha) linear_term + alpha quadratic_term``
        (``+ eps KL`` if entropic); gradients w.r.t. ``M`` are ``(1 - alpha) P`` (envelope).

    Example:
        >>> import torch
        >>> C = torch.tensor([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]], dtype=torch.float64)
        >>> M = 1.0 - torch.eye(3, dtype=torch.float64)  # features agree on the diagonal
        >>> res = fused_gromov_wasserstein(M, C, C, alpha=0.5)
        >>> float(res.value), (res.plan * 3).round().tolist()
        (0.0, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    """
    def build(M, Cx, Cy, a, b):
        with _named(geom_xx="Cx", geom_yy="Cy", geom_xy="M"):
            return QuadraticProblem(_intra(Cx, "Cx", "precomputed"), _intra(Cy, "Cy", "precomputed"), a, b,
                                    geom_xy=M if isinstance(M, Geometry) else _fused(M), alpha=alpha, loss=loss,
                                    rho_a=rho_a, rho_b=rho_b)

    return _batched(_solver(eps, solver_kw), build, init, M=(M, 2), Cx=(Cx, 2), Cy=(Cy, 2), a=(a, 1), b=(b, 1))


def _batched(solver, build, init, **inputs):
    """``solver(build(*inputs), init)``, or a batch: an input ``(t, k)`` with ``t.dim() == k + 1`` is batched (so is
    ``init (B, n, m)``). The entropic solver runs the batch in one loop
    (:meth:`~monge.solvers.gromov.EntropicGromovWasserstein.solve_batch`); the exact solver runs its problems one
    after another and returns their plans sparse, padded to a common length (``rows, cols, vals (B, K)``)."""
    sizes = {name: t.shape[0] for name, (t, k) in inputs.items()
             if isinstance(t, torch.Tensor) and not isinstance(t, Geometry) and t.dim() == k + 1}
    if isinstance(init, torch.Tensor) and init.dim() == 3:
        sizes["init"] = init.shape[0]
    if not sizes:
        return solver(build(*[t for t, _ in inputs.values()]), init=init)
    first = next(iter(sizes))
    for name, B in sizes.items():
        if B != sizes[first]:
            raise ValueError(f"{name}: expected a batch of {sizes[first]} problems (as {first}), got a leading "
                             f"dimension of {B}; give every batched input the same batch size")
    B = sizes[first]
    probs = [build(*[t[k] if name in sizes else t for name, (t, _) in inputs.items()]) for k in range(B)]
    inits = [init[k] if "init" in sizes else init for k in range(B)]
    if isinstance(solver, EntropicGromovWasserstein):
        return solver.solve_batch(probs, inits)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = stack_exact([solver(p, init=i) for p, i in zip(probs, inits)])
    if caught:
        bad = [i for i, ok in enumerate(out.convergence.converged.tolist()) if not ok]
        warnings.warn(f"gromov_wasserstein: problems {bad} of the batch did not converge ({caught[0].message})",
                      RuntimeWarning, stacklevel=user_stacklevel())
    return out


@contextmanager
def _named(**names):
    """Errors of the problem name the arguments of the shortcut (``geom_yy`` -> ``y``)."""
    try:
        yield
    except ValueError as err:
        msg = str(err)
        for inner, outer in names.items():
            msg = msg.replace(inner, outer)
        raise ValueError(msg) from None


def _fused(M):
    t = as_tensor(M, "M")
    check_cost_matrix(t, "M")
    return t
