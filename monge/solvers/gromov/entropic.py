r"""Entropic Gromov-Wasserstein by mirror descent: one warm-started Sinkhorn solve per outer step.

.. math::
    \min_{P \in \Pi(a, b)} (1 - \alpha) \langle M, P\rangle + \alpha E(P)
        + \varepsilon\, \mathrm{KL}(P \,|\, a \otimes b)

Unbalanced (``rho_a`` and/or ``rho_b`` given): a penalised side's constraint is replaced by
:math:`\rho_a \mathrm{KL}(P 1 | a)` (resp. :math:`\rho_b \mathrm{KL}(P^\top 1 | b)`), with :math:`E(P)` taken with the
plan's own marginals; each outer step is then an unbalanced (one side: semi-unbalanced) Sinkhorn solve. (This
penalises the marginals linearly in KL, a simpler model than the quadratic-KL "UGW" of Sejourne, Vialard and Peyre,
NeurIPS 2021.)

The outer step is :math:`P_{k+1} = \mathrm{Sinkhorn}_\varepsilon(\nabla F(P_k))`, the entropic OT problem of the
gradient; a fixed point is a stationary point of the regularised objective (Peyre, Cuturi, Solomon, ICML 2016;
Solomon, Peyre, Kim, Sra, *Entropic metric alignment for correspondence problems*, SIGGRAPH 2016). On low-rank
(squared-Euclidean point cloud) sides the linearised cost is a lazy point-cloud cost (:mod:`.lazy`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ..._validation import check_positive
from ...geometry.pointcloud import LAZY_ABOVE
from ...problems.linear import LinearProblem
from ...problems.quadratic import QuadraticProblem
from ...results import Convergence
from ..sinkhorn import DEFAULT_TOL, Sinkhorn
from .common import GWResult, Objective, check_init, differentiable_value, user_stacklevel
from .implicit import implicit_plan, needs_grad, plan_terms
from .lazy import DenseSteps, LazySteps, ProductPlan

__all__ = ["EntropicGromovWasserstein", "INEXACT", "BACKENDS", "GRADS"]

#: ``backend``: ``"dense"`` linearised costs (an ``(n, m)`` matrix per step, Sinkhorn on its Gibbs kernel), ``"lazy"``
#: (low-rank sides only: the linearised cost as a lazy point cloud, :mod:`.lazy`), ``"auto"``: lazy where it applies
#: and ``n m`` exceeds :data:`~monge.geometry.pointcloud.LAZY_ABOVE`.
BACKENDS = ("auto", "dense", "lazy")
#: ``grad``: ``"implicit"`` (plan and terms differentiable by the implicit function theorem, :mod:`.implicit`) or
#: ``"envelope"`` (only ``value`` differentiable; no adjoint solve).
GRADS = ("implicit", "envelope")

#: Inner Sinkhorn solves stop at ``INEXACT`` times the last outer plan change (never below ``inner_tol``): early
#: mirror-descent steps need no more accuracy than the step they take.
INEXACT = 1e-2


def kl_div(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(P | a b^\top) = \sum P \log(P / (a_i b_j)) - P + a_i b_j` (``0 log 0 = 0``), with one
    temporary of the plan's size: :math:`\sum P \log P - \langle P 1, \log a\rangle - \langle P^\top 1, \log b\rangle
    - \sum P + \sum a \sum b`."""
    p, q = P.sum(-1), P.sum(-2)
    return torch.xlogy(P, P).sum() - torch.xlogy(p, a).sum() - torch.xlogy(q, b).sum() - p.sum() + a.sum() * b.sum()


@dataclass(frozen=True)
class EntropicGromovWasserstein:
    r"""Entropic (fused, unbalanced) Gromov-Wasserstein by mirror descent, each step a warm-started Sinkhorn.

    Args:
        eps: entropic regularisation, absolute, in units of the objective (``> 0``); the GW gradient scales like
            the square of the intra-domain costs, so ``eps`` around ``1e-3`` to ``1e-2`` times
            :meth:`~monge.problems.QuadraticProblem.cost_scale` is the useful range.
        tol: stop when the l1 change of the plan over one outer step is at most ``tol`` (units of the weights);
            ``None``: 10x the Sinkhorn default of the dtype (1e-6 in float64, 1e-4 in float32).
        max_iter: cap on outer steps. inner_tol, inner_max_iter: of each :class:`~monge.solvers.Sinkhorn`
            (``inner_tol=None``: its default).
        backend: one of :data:`BACKENDS`. ``"lazy"`` needs low-rank sides (point clouds, squared Euclidean cost,
            square loss) and no fused term: no ``n x n`` matrix and no stored ``n x m`` cost; the returned plan is
            the one ``n x m`` array. ``"auto"`` keeps the dense kernel (faster per Sinkhorn iteration) below
            :data:`~monge.geometry.pointcloud.LAZY_ABOVE` entries.
        grad: one of :data:`GRADS`. The implicit route runs only when an input requires a gradient; it records
            one dense sweep (a few ``(n, m)`` arrays, also on the lazy backend) and solves the adjoint by GMRES in
            the backward pass (at most 500 vector-Jacobian products).

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

    Gradients. ``value``: envelope theorem at the returned plan (the partial derivative of the Lagrangian at the fixed
    plan: w.r.t. the costs / points / ``M`` at fixed ``P``; w.r.t. a hard side's weights its potential, centred
    when both sides are hard; a penalised side's weights through its KL term). At a stationary point this *is* the
    derivative of the value through the implicit plan (the plan's first-order term is the multipliers' pairing with
    the marginals), so no adjoint solve is needed. ``plan``, ``quadratic_term``, ``linear_term``
    (``grad="implicit"``): implicit function theorem at the fixed point of one Sinkhorn sweep on the linearised
    cost (:mod:`~monge.solvers.gromov.implicit`). All are exact (to the solve's ``tol``) where the returned plan is a
    stable, nondegenerate fixed point that moves smoothly with the data, which entropic regularisation ensures for
    ``eps`` large enough; checked by ``gradcheck`` in float64. Not exact: unconverged solves, or ``eps`` so small
    that mirror descent oscillates (the adjoint iteration then fails to converge and warns).

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
    backend: str = "auto"
    grad: str = "implicit"

    def __post_init__(self):
        check_positive(self.eps, "eps")
        check_positive(self.tol, "tol", allow_none=True)
        check_positive(self.inner_tol, "inner_tol", allow_none=True)
        for name in ("max_iter", "inner_max_iter"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.grad not in GRADS:
            raise ValueError(f"grad: expected one of {GRADS}, got {self.grad!r}")

    def __call__(self, prob: QuadraticProblem, init=None) -> GWResult:
        if not isinstance(prob, QuadraticProblem):
            raise TypeError(f"prob: expected a monge QuadraticProblem, got {type(prob).__name__}")
        obj = Objective(prob)
        steps = self._steps(obj, prob)
        P = ProductPlan(obj.a, obj.b) if steps.lazy and init is None else check_init(init, prob, obj.a)
        tol = self.tol if self.tol is not None else 10 * DEFAULT_TOL[obj.a.dtype]
        P, f, g, err, trace, n_it, inner = self._loop(obj, steps, P, tol, (prob.rho_a, prob.rho_b))
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
            value, lin, quad = self._unbalanced_value(prob, P, f, g)
        if self.grad == "implicit" and needs_grad(prob):
            adj_tol = 1e3 * torch.finfo(P.dtype).eps
            P = implicit_plan(prob, P, g, self.eps, adj_tol, 500)
            lin, quad = plan_terms(prob, P)
        return GWResult(plan=P, value=value, linear_term=lin, quadratic_term=quad, f=f, g=g, convergence=conv)

    def _steps(self, obj: Objective, prob: QuadraticProblem):
        fits = LazySteps.applies(obj)
        if self.backend == "lazy" and not fits:
            raise ValueError("backend: 'lazy' needs low-rank sides (point clouds with the squared Euclidean cost, "
                             "loss='sqeuclidean') and no fused term; pass backend='dense' or 'auto'")
        n, m = prob.shape
        lazy = self.backend == "lazy" or (self.backend == "auto" and fits and n * m > LAZY_ABOVE)
        return (LazySteps if lazy else DenseSteps)(obj, not prob.is_balanced)

    def _loop(self, obj: Objective, steps, P, tol: float, rho=(None, None)):
        """Outer mirror-descent steps; returns the (dense) plan, the last potentials and both levels' records.

        Inexact early steps: each inner solve stops at ``max(inner_tol, INEXACT * last plan change)``; the loop ends
        only after a step at ``inner_tol`` itself changed the plan by at most ``tol``."""
        tight = self.inner_tol if self.inner_tol is not None else DEFAULT_TOL[obj.a.dtype]
        fg, trace, inner_its, err, c = None, [], 0, float("inf"), None
        for it in range(1, self.max_iter + 1):
            loose = max(tight, INEXACT * min(err, 1.0))
            geom = steps.geometry(P)
            with warnings.catch_warnings():  # folded into this solver's one warning
                warnings.simplefilter("ignore", RuntimeWarning)
                sink = Sinkhorn(eps=self.eps, tol=loose, max_iter=self.inner_max_iter)
                res = sink(LinearProblem(geom, obj.a, obj.b, *rho), init=fg)
            fg, c = (res.f, res.g), res.convergence
            inner_its += int(c.n_iters.max())
            P, err = steps.plan(res, geom, P)
            trace.append(err)
            if (err <= tol and loose == tight) or not math.isfinite(err):
                break
        # the inner record is that of the solve which produced the returned plan, against inner_tol
        inner = Convergence.build(float(c.error.max()), tight, inner_its, criterion="marginal_l1")
        return steps.dense(P), fg[0], fg[1], err, trace, it, inner

    def _unbalanced_value(self, prob: QuadraticProblem, P: torch.Tensor, f: torch.Tensor, g: torch.Tensor):
        """The regularised objective with KL marginal penalties at the fixed plan (envelope): a penalised side's
        weights enter through its KL term, a hard side's through its multiplier (the Sinkhorn potential)."""
        value, lin, quad = differentiable_value(prob, P, P.new_zeros(P.shape[0]), P.new_zeros(P.shape[1]))
        Pd = P.detach()
        value = value + self.eps * kl_div(Pd, prob.a, prob.b)
        for rho, w, marg, pot in ((prob.rho_a, prob.a, Pd.sum(-1), f), (prob.rho_b, prob.b, Pd.sum(-2), g)):
            if rho is not None:
                value = value + rho * (torch.xlogy(marg, marg) - torch.xlogy(marg, w) - marg + w).sum()
            else:
                value = value + (pot.detach() * (w - w.detach())).sum()
        return value, lin, quad
