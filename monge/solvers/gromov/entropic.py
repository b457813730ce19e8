r"""Entropic Gromov-Wasserstein by mirror descent: one warm-started Sinkhorn solve per outer step.

.. math::
    \min_{P \in \Pi(a, b)} (1 - \alpha) \langle M, P\rangle + \alpha E(P)
        + \varepsilon\, \mathrm{KL}(P \,|\, a \otimes b)

Unbalanced (``rho_a`` and ``rho_b`` both given): :math:`P \ge 0` is free and
:math:`\rho_a \mathrm{KL}(P 1 | a) + \rho_b \mathrm{KL}(P^\top 1 | b)` is added, with :math:`E(P)` taken with the plan's
own marginals; each outer step is then an unbalanced Sinkhorn solve. (This penalises the marginals linearly in
KL, a simpler model than the quadratic-KL "UGW" of Sejourne, Vialard and Peyre, NeurIPS 2021.)

The outer step is :math:`P_{k+1} = \mathrm{Sinkhorn}_\varepsilon(\nabla F(P_k))`, the entropic OT problem of the
gradient; a fixed point is a stationary point of the regularised objective (Peyre, Cuturi, Solomon, ICML 2016;
Solomon, Peyre, Kim, Sra, *Entropic metric alignment for correspondence problems*, SIGGRAPH 2016).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ..._validation import check_positive
from ...geometry.dense import DenseCost
from ...problems.linear import LinearProblem
from ...problems.quadratic import QuadraticProblem
from ...results import Convergence
from ..sinkhorn import DEFAULT_TOL, Sinkhorn
from .common import GWResult, Objective, check_init, differentiable_value, user_stacklevel

__all__ = ["EntropicGromovWasserstein", "INEXACT"]

#: Inner Sinkhorn solves stop at ``INEXACT`` times the last outer plan change (never below ``inner_tol``): early
#: mirror-descent steps need no more accuracy than the step they take.
INEXACT = 1e-2


def kl_div(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(P | a b^\top) = \sum P \log(P / (a_i b_j)) - P + a_i b_j` (``0 log 0 = 0``)."""
    ab = a.unsqueeze(-1) * b.unsqueeze(-2)
    return (torch.xlogy(P, P) - torch.xlogy(P, ab) - P + ab).sum()


@dataclass(frozen=True)
class EntropicGromovWasserstein:
    r"""Entropic (fused) Gromov-Wasserstein by mirror descent, each step a warm-started log-domain Sinkhorn.

    Args:
        eps: entropic regularisation, absolute, in units of the objective (``> 0``); the GW gradient scales like
            the square of the intra-domain costs, so ``eps`` around ``1e-3`` to ``1e-2`` times
            :meth:`~monge.problems.QuadraticProblem.cost_scale` is the useful range.
        tol: stop when the l1 change of the plan over one outer step is at most ``tol`` (units of the weights);
            ``None``: 10x the Sinkhorn default of the dtype (1e-6 in float64, 1e-4 in float32).
        max_iter: cap on outer steps. inner_tol, inner_max_iter: of each :class:`~monge.solvers.Sinkhorn`
            (``inner_tol=None``: its default).

    ``solver(prob, init=None)`` returns a :class:`~monge.solvers.gromov.GWResult`: ``value`` is the regularised
    objective, ``quadratic_term`` the GW term :math:`E(P) \ge 0`, ``linear_term`` :math:`\langle M, P\rangle`.
    ``convergence.criterion`` is ``"plan_l1_change"``; ``convergence.level("sinkhorn")`` records the inner solves
    (total iterations; the marginal error of the solve that produced the returned plan, against ``inner_tol``); the
    outer loop converges only if that solve did. Early inner solves are inexact (see :data:`INEXACT`).

    Failure modes: at small ``eps`` mirror descent may oscillate between plans and stop at ``max_iter``
    (reported, warned once); so may unbalanced problems with ``rho`` small against the GW term (the plan's mass
    then flips between two values: measured at ``rho = 0.05``, ``eps = 0.5`` on unit-size clouds). Every inner
    warning is folded into that one. Large ``rho`` makes the inner unbalanced Sinkhorn slow (its contraction is
    ``rho / (rho + eps)``).

    Gradients (envelope theorem at the returned plan): w.r.t. the costs / points / ``M``, the partial derivative of
    the objective at the fixed plan; w.r.t. ``a``, ``b`` the centred Sinkhorn potentials (unbalanced: the partial
    derivative of the penalised objective, no constraint binding). Exact at a fixed point
    of the iteration (to ``tol``); checked by ``gradcheck`` in float64.

    Example:
        >>> import torch
        >>> from monge.geometry import PointCloud
        >>> x, y = torch.rand(8, 2, dtype=torch.float64), torch.rand(7, 3, dtype=torch.float64)
        >>> res = EntropicGromovWasserstein(eps=1e-2)(QuadraticProblem(PointCloud(x), PointCloud(y)))
        >>> res.convergence.status, bool(res.quadratic_term >= 0), res.plan.shape
        (('converged',), True, torch.Size([8, 7]))
    """

    eps: float
    tol: float | None = None
    max_iter: int = 500
    inner_tol: float | None = None
    inner_max_iter: int = 2000

    def __post_init__(self):
        check_positive(self.eps, "eps")
        check_positive(self.tol, "tol", allow_none=True)
        check_positive(self.inner_tol, "inner_tol", allow_none=True)
        for name in ("max_iter", "inner_max_iter"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")

    def __call__(self, prob: QuadraticProblem, init=None) -> GWResult:
        if not isinstance(prob, QuadraticProblem):
            raise TypeError(f"prob: expected a monge QuadraticProblem, got {type(prob).__name__}")
        if (prob.rho_a is None) != (prob.rho_b is None):
            raise ValueError("rho_a/rho_b: unbalanced entropic GW needs penalties on both sides (or neither); got "
                             f"rho_a={prob.rho_a}, rho_b={prob.rho_b}")
        obj = Objective(prob)
        P = check_init(init, prob, obj.a)
        tol = self.tol if self.tol is not None else 10 * DEFAULT_TOL[P.dtype]
        P, f, g, err, trace, n_it, inner = self._loop(obj, P, tol, (prob.rho_a, prob.rho_b))
        conv = Convergence.build(err, tol, n_it, criterion="plan_l1_change", errors=torch.tensor(trace),
                                 levels=(("sinkhorn", inner),))
        if not conv.all_converged:
            warnings.warn(f"entropic gromov_wasserstein: stopped ({conv.status[0]}) after {n_it} outer steps with a "
                          f"plan change of {err:.3g} (tol {tol:g}) and inner Sinkhorn status {inner.status[0]}; "
                          "raise max_iter / inner_max_iter or use a larger eps. The result reports converged=False.",
                          RuntimeWarning, stacklevel=user_stacklevel())
        if prob.is_balanced:
            value, lin, quad = differentiable_value(prob, P, f, g, extra=self.eps * kl_div(P, obj.a, obj.b))
        else:
            value, lin, quad = self._unbalanced_value(prob, P)
        return GWResult(plan=P, value=value, linear_term=lin, quadratic_term=quad, f=f, g=g, convergence=conv)

    def _loop(self, obj: Objective, P: torch.Tensor, tol: float, rho=(None, None)):
        """Outer mirror-descent steps; returns the plan, the last potentials and both levels' records.

        Inexact early steps: each inner solve stops at ``max(inner_tol, INEXACT * last plan change)``; the loop ends
        only after a step at ``inner_tol`` itself changed the plan by at most ``tol``."""
        tight = self.inner_tol if self.inner_tol is not None else DEFAULT_TOL[P.dtype]
        fg, trace, inner_its, err, c = None, [], 0, float("inf"), None
        for it in range(1, self.max_iter + 1):
            loose = max(tight, INEXACT * min(err, 1.0))
            G = obj.grad(obj.cross(P), None if rho == (None, None) else P)
            with warnings.catch_warnings():  # folded into this solver's one warning
                warnings.simplefilter("ignore", RuntimeWarning)
                sink = Sinkhorn(eps=self.eps, tol=loose, max_iter=self.inner_max_iter)
                res = sink(LinearProblem(DenseCost(G), obj.a, obj.b, *rho), init=fg)
            fg, c = (res.f, res.g), res.convergence
            inner_its += int(c.n_iters.max())
            P_new = res.plan
            err = float((P_new - P).abs().sum())
            trace.append(err)
            P = P_new
            if (err <= tol and loose == tight) or not math.isfinite(err):
                break
        # the inner record is that of the solve which produced the returned plan, against inner_tol
        inner = Convergence.build(float(c.error.max()), tight, inner_its, criterion="marginal_l1")
        return P, fg[0], fg[1], err, trace, it, inner

    def _unbalanced_value(self, prob: QuadraticProblem, P: torch.Tensor):
        """The regularised objective with KL marginal penalties at the fixed plan; no constraint binds, so the
        envelope gradient is the partial derivative (w.r.t. the costs, points, ``M`` and the weights)."""
        value, lin, quad = differentiable_value(prob, P, P.new_zeros(P.shape[0]), P.new_zeros(P.shape[1]))
        Pd = P.detach()
        value = value + self.eps * kl_div(Pd, prob.a, prob.b)
        for rho, w, marg in ((prob.rho_a, prob.a, Pd.sum(-1)), (prob.rho_b, prob.b, Pd.sum(-2))):
            if rho is not None:
                value = value + rho * (torch.xlogy(marg, marg) - torch.xlogy(marg, w) - marg + w).sum()
        return value, lin, quad
