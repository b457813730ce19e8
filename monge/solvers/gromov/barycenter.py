r"""Gromov-Wasserstein barycenter of fixed support size: block-coordinate descent on the structure and the couplings.

.. math::
    \min_{C \in \mathbb{R}^{N \times N}} \sum_k \lambda_k\, \mathrm{GW}(C, C_k; p, p_k)

For fixed couplings :math:`T_k \in \Pi(p, p_k)` (``(N, n_k)``) the square-loss objective is a quadratic in ``C``
whose minimiser is closed-form (Peyre, Cuturi, Solomon, ICML 2016, Prop. 3),

.. math::
    C = \frac{\sum_k \lambda_k\, T_k C_k T_k^\top}{p\, p^\top},

and for fixed ``C`` each :math:`T_k` is a GW coupling (exact conditional gradient, or entropic when ``eps`` is
given). Both steps never increase the objective of their block (the GW step up to its own stationarity); the loop
stops when :math:`\|C - C_\text{prev}\|_F \le` ``tol``. For point-cloud inputs with the squared Euclidean cost,
:math:`T_k C_k T_k^\top = (T_k U_k)(T_k V_k)^\top` through the factors: no ``n_k x n_k`` matrix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..._validation import as_tensor, check_positive, check_weights
from ...problems.quadratic import QuadraticProblem
from ...results import Convergence
from .api import _intra, _named, _solver
from .common import GWResult, stack_convergence, user_stacklevel

__all__ = ["gromov_barycenter", "GWBarycenterResult"]


@dataclass(frozen=True)
class GWBarycenterResult:
    r"""A GW barycenter.

    Attributes:
        cost: the barycenter's structure ``C (N, N)``, symmetric.
        weights: its weights ``p (N,)``.
        plans: the couplings ``T_k (N, n_k)`` to each input, at the returned ``cost``' last update.
        values: ``GW(C_prev, C_k)`` of the last couplings, ``(S,)``; value: :math:`\sum_k \lambda_k` values.
        convergence: criterion ``"structure_change"`` (:math:`\|C - C_\text{prev}\|_F`), the GW solves of the last
            step in ``convergence.level("gw")``.
    """

    cost: torch.Tensor
    weights: torch.Tensor
    plans: tuple
    values: torch.Tensor
    value: torch.Tensor
    convergence: Convergence


def gromov_barycenter(spaces, n_support: int, *, lambdas=None, weights=None, p=None, eps: float | None = None,
                      cost="precomputed", init=None, max_iter: int = 100, tol: float = 1e-9,
                      **solver_kw) -> GWBarycenterResult:
    r"""The Gromov-Wasserstein barycenter of ``S`` metric-measure spaces on ``n_support`` points (square loss).

    .. math::
        \min_{C} \sum_k \lambda_k \min_{T_k \in \Pi(p, p_k)} \sum_{ijkl} (C_{ij} - (C_k)_{kl})^2 T_{ik} T_{jl},
        \qquad C \leftarrow \frac{\sum_k \lambda_k T_k C_k T_k^\top}{p p^\top}

    Args:
        spaces: a list of ``S`` intra-domain costs ``(n_k, n_k)`` (``cost="precomputed"``, symmetric), or of
            points ``(n_k, d_k)`` with ``cost`` a monge cost (``"sqeuclidean"``: low-rank), or geometries.
        n_support: ``N``, the barycenter's size. lambdas: ``(S,)`` nonnegative weights of the spaces (``None``:
            ``1/S``), normalised to sum 1. weights: a list of the spaces' weights ``(n_k,)`` (``None``: uniform).
            p: the barycenter's weights ``(N,)`` (``None``: uniform).
        eps: ``None``: each coupling by exact conditional gradient; else entropic GW at that ``eps``.
        init: the starting structure ``(N, N)``, symmetric (``None``: squared distances of ``N`` standard normal
            points in the plane, divided by their maximum, drawn from torch's generator).
        max_iter, tol: outer iterations and the tolerance on :math:`\|C - C_\text{prev}\|_F`.
        **solver_kw: passed to the GW solver (e.g. ``tol``, ``max_iter`` of the entropic one).

    Returns:
        :class:`GWBarycenterResult`. Not differentiable (the structure is detached).

    Failure modes: the problem is nonconvex; the result depends on ``init`` (the structure is determined up to a
    permutation of its points). ``max_iter`` reached warns once and reports ``converged=False``.

    Example:
        >>> import torch
        >>> x = torch.rand(5, 2, dtype=torch.float64)
        >>> C0 = torch.cdist(x, x) ** 2
        >>> res = gromov_barycenter([C0, C0], 5)  # identical inputs: the barycenter is the input, permuted
        >>> bool(torch.allclose(torch.linalg.eigvalsh(res.cost), torch.linalg.eigvalsh(C0)))
        True
    """
    spaces, lambdas, weights = _check_inputs(spaces, lambdas, weights, cost)
    if isinstance(n_support, bool) or not isinstance(n_support, int) or n_support < 1:
        raise ValueError(f"n_support: expected a positive int (the barycenter's size), got {n_support!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive int, got {max_iter!r}")
    check_positive(tol, "tol")
    like = _like(spaces[0])
    p = check_weights(p, "p", n_support, like, size_name="n_support")
    C = _init(init, n_support, like)
    res, C, err, it, trace = _iterate(_solver(eps, solver_kw), C, spaces, weights, lambdas, p, max_iter, tol)
    inner = stack_convergence([r.convergence for r in res])
    bad = int((~inner.converged).sum())
    conv = Convergence.build(err, tol, it, criterion="structure_change", errors=torch.tensor(trace), levels=(
        ("gw", Convergence.build(float(bad), 0.0, int(inner.n_iters.sum()), criterion="unconverged_solves")),))
    if not conv.all_converged:
        warnings.warn(f"gromov_barycenter: stopped ({conv.status[0]}) after {it} steps with a structure change of "
                      f"{err:.3g} (tol {tol:g}); {bad} of the last GW solves unconverged. Raise max_iter, loosen "
                      "tol, or use a larger eps.", RuntimeWarning, stacklevel=user_stacklevel())
    values = torch.stack([r.value.detach() for r in res])
    return GWBarycenterResult(cost=C, weights=p, plans=tuple(r.plan.detach() for r in res), values=values,
                              value=(lambdas * values).sum(), convergence=conv)


def _iterate(solver, C, spaces, weights, lambdas, p, max_iter: int, tol: float):
    """The alternating steps: ``(last GW results, structure, last change, steps, trace of changes)``."""
    trace = []
    with warnings.catch_warnings():  # folded into the caller's one warning (inner records in the result)
        warnings.simplefilter("ignore", RuntimeWarning)
        for it in range(1, max_iter + 1):
            res = [solver(_problem(C, X, p, w, k)) for k, (X, w) in enumerate(zip(spaces, weights))]
            C_new = _update(res, spaces, lambdas, p)
            err = float(torch.linalg.norm(C_new - C))
            C = C_new
            trace.append(err)
            if err <= tol:
                break
    return res, C, err, it, trace


def _check_inputs(spaces, lambdas, weights, cost):
    if not isinstance(spaces, (list, tuple)) or len(spaces) == 0:
        raise ValueError(f"spaces: expected a non-empty list of intra-domain costs or point clouds, got "
                         f"{type(spaces).__name__}")
    spaces = [_intra(X, f"spaces[{k}]", cost) for k, X in enumerate(spaces)]
    S, like = len(spaces), _like(spaces[0])
    if lambdas is None:
        lambdas = torch.full((S,), 1.0 / S, dtype=like.dtype, device=like.device)
    else:
        lambdas = as_tensor(lambdas, "lambdas").to(like)
        if lambdas.shape != (S,) or not bool(torch.isfinite(lambdas).all()) or bool((lambdas < 0).any()) or \
                float(lambdas.sum()) <= 0:
            raise ValueError(f"lambdas: expected {S} nonnegative finite weights (one per space) with a positive "
                             f"sum, got {lambdas.tolist()}")
        lambdas = lambdas / lambdas.sum()
    if weights is None:
        weights = [None] * S
    elif not isinstance(weights, (list, tuple)) or len(weights) != S:
        raise ValueError(f"weights: expected a list of {S} weight vectors (one per space) or None, got "
                         f"{type(weights).__name__} of length {len(weights) if hasattr(weights, '__len__') else '?'}")
    return spaces, lambdas, list(weights)


def _like(X):
    return X if isinstance(X, torch.Tensor) else X.like()


def _init(init, N: int, like: torch.Tensor) -> torch.Tensor:
    if init is None:
        z = torch.randn(N, 2, dtype=like.dtype, device=like.device)
        C = torch.cdist(z, z) ** 2
        return C / C.max()
    C = as_tensor(init, "init").to(like)
    if C.shape != (N, N):
        raise ValueError(f"init: expected a structure of shape (n_support, n_support) = ({N}, {N}), got "
                         f"{tuple(C.shape)}")
    with _named(geom_xx="init"):
        QuadraticProblem(C, C)  # finite, symmetric
    return C.detach().clone()


def _problem(C, X, p, w, k: int):
    try:
        return QuadraticProblem(C, X, p, w)
    except ValueError as err:
        msg = str(err)
        for inner, outer in (("b: ", f"weights[{k}]: "), ("geom_yy", f"spaces[{k}]")):
            msg = msg.replace(inner, outer) if msg.startswith(inner.rstrip(": ")) else msg
        raise ValueError(msg) from None


def _update(res: list[GWResult], spaces, lambdas, p) -> torch.Tensor:
    r""":math:`\sum_k \lambda_k T_k C_k T_k^\top / (p p^\top)`, through the factors of low-rank spaces."""
    acc = 0.0
    for r, X, lam in zip(res, spaces, lambdas):
        T = r.plan.detach()
        if hasattr(X, "cost_factors") and X.cost_factors() is not None:
            U, V = X.cost_factors()
            TCT = (T @ U.detach()) @ (T @ V.detach()).mT
        else:
            Ck = X.cost() if hasattr(X, "cost") else X
            TCT = T @ Ck.detach() @ T.mT
        acc = acc + lam * TCT
    C = acc / (p.unsqueeze(-1) * p.unsqueeze(-2))
    return 0.5 * (C + C.mT)
