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
from ...geometry.dense import DenseCost
from ...geometry.pointcloud import LAZY_ABOVE
from ...problems.linear import LinearProblem
from ...problems.quadratic import QuadraticProblem
from ...results import Convergence
from .._loop import fixed_point
from ..sinkhorn import DEFAULT_TOL, Sinkhorn
from .common import GWResult, Objective, check_init, differentiable_value, stack_results, user_stacklevel
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


def _compiled_first(geom, eps: float):
    """The first element of a batched dense cost as a geometry whose Sinkhorn solve runs the compiled scaling loop
    (its kernel built), or None where that loop does not apply (not float64 on the CPU, a gradient, too large)."""
    C = geom.cost()
    if C.device.type != "cpu" or C.dtype != torch.float64 or C.requires_grad:
        return None
    first = DenseCost(C[0])
    return first if first.scaling_loop(eps) is not None else None


def kl_div(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(P | a b^\top) = \sum P \log(P / (a_i b_j)) - P + a_i b_j` (``0 log 0 = 0``), with one
    temporary of the plan's size: :math:`\sum P \log P - \langle P 1, \log a\rangle - \langle P^\top 1, \log b\rangle
    - \sum P + \sum a \sum b`."""
    p, q = P.sum(-1), P.sum(-2)
    return (torch.xlogy(P, P).sum((-2, -1)) - torch.xlogy(p, a).sum(-1) - torch.xlogy(q, b).sum(-1) - p.sum(-1)
            + a.sum(-1) * b.sum(-1))


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

    Failure modes: at small ``eps`` mirror descent may oscillate between plans: the loop (the shared driver,
    :func:`~monge.solvers._loop.fixed_point`) then stops with status ``"stalled"`` once the plan change has not
    decreased over 50 steps, or at ``max_iter`` (reported, warned once); so may unbalanced problems with ``rho`` small against the GW term (the plan's mass
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
        P, f, g, conv = self._loop(obj, steps, P, (prob.rho_a, prob.rho_b))
        if not conv.all_converged:
            inner = conv.level("sinkhorn")
            warnings.warn(f"entropic gromov_wasserstein: stopped ({conv.status[0]}) after {int(conv.n_iters)} outer "
                          f"steps with a plan change of {float(conv.error):.3g} (tol {self._tol(obj):g}) and inner "
                          f"Sinkhorn status {inner.status[0]}; raise max_iter / inner_max_iter or use a larger eps. "
                          "The result reports converged=False.", RuntimeWarning, stacklevel=user_stacklevel())
        return self._result(prob, P, f, g, conv)

    def solve_batch(self, probs, inits=None) -> GWResult:
        """``B`` problems of equal sizes (same kind of sides, loss, ``alpha``, ``rho``) in one driver loop over
        ``(B, n, m)`` plans: every outer step forms the linearised costs of the elements still iterating in one
        batched product and solves their Sinkhorn problems (one batched solve, or the compiled loop per element on
        float64 CPU costs: see :meth:`_inner`); each element stops on its own (``convergence`` per element, with
        its own ``n_iters`` and inner record), and equals its single solve. Where
        the lazy backend applies (``n m`` above :data:`~monge.geometry.pointcloud.LAZY_ABOVE`, or
        ``backend="lazy"``), the elements are solved one after another (the lazy steps hold one problem).

        Returns a :class:`GWResult` whose fields have a leading ``B``; warns once for the unconverged elements."""
        inits = [None] * len(probs) if inits is None else inits
        objs = [Objective(p) for p in probs]
        if self._steps(objs[0], probs[0]).lazy:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = stack_results([self(p, init=i) for p, i in zip(probs, inits)])
        else:
            obj = Objective.stack(objs)
            P = torch.stack([check_init(i, p, o.a) for p, i, o in zip(probs, inits, objs)])
            P, f, g, conv = self._loop(obj, DenseSteps(obj, not probs[0].is_balanced), P,
                                       (probs[0].rho_a, probs[0].rho_b))
            parts = [self._result(p, P[k], f[k], g[k], conv) for k, p in enumerate(probs)]
            out = stack_results(parts, conv)
            caught = not conv.all_converged
        if caught:
            bad = [k for k, ok in enumerate(out.convergence.converged.tolist()) if not ok]
            warnings.warn(f"entropic gromov_wasserstein: problems {bad} of the batch of {len(probs)} did not converge "
                          f"(statuses {[out.convergence.status[k] for k in bad]}); raise max_iter / inner_max_iter "
                          "or use a larger eps. The result reports converged=False for them.", RuntimeWarning,
                          stacklevel=user_stacklevel())
        return out

    def _tol(self, obj: Objective) -> float:
        return self.tol if self.tol is not None else 10 * DEFAULT_TOL[obj.a.dtype]

    def _result(self, prob: QuadraticProblem, P, f, g, conv) -> GWResult:
        """The returned object of one problem at its fixed plan: value (envelope), terms, implicit plan."""
        if prob.is_balanced:
            value, lin, quad = differentiable_value(prob, P, f, g, extra=self.eps * kl_div(P, *(
                t.detach() for t in (prob.a, prob.b))))
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

    def _loop(self, obj: Objective, steps, P, rho=(None, None)):
        """Outer mirror-descent steps through :func:`~monge.solvers._loop.fixed_point`, one problem or a batch
        (leading dimension of ``obj``'s fields); returns the (dense) plan, the last potentials and the record.

        An element converges when its last step changed the plan by at most ``tol`` (l1) *and* the Sinkhorn solve
        that made the plan met ``inner_tol``; the driver stops it on ``max(change, tol / inner_tol * marginal
        error)``, which is that test. Inexact early steps: each solve stops at ``max(inner_tol, INEXACT * change)``
        (the smallest over the elements still iterating); elements that stopped are frozen and not solved again."""
        tight = self.inner_tol if self.inner_tol is not None else DEFAULT_TOL[obj.a.dtype]
        tol, batch = self._tol(obj), obj.a.shape[:-1]
        inf = obj.a.new_full(batch, math.inf)
        changes = []

        def error(s):
            return torch.maximum(s[3], s[4] * (tol / tight))

        def step(s, omega):
            P, f, g, change, ierr, iits = s
            e = error(s)  # the elements the driver keeps iterating (all at the first step, where e = inf)
            act = (e > tol) & (torch.isfinite(e) | (f is None))
            part = len(batch) and not bool(act.all())
            idx = act.nonzero().squeeze(-1) if part else None
            pick = (lambda t: t[idx]) if part else (lambda t: t)  # noqa: E731
            loose = torch.clamp(INEXACT * pick(change).clamp_max(1.0), min=tight)  # per element
            sub = obj.select(idx) if part else obj
            fg = None if f is None else (pick(f), pick(g))
            P1, f1, g1, d, err, its = self._inner(steps, steps.geometry(pick(P), sub), sub, pick(P), fg, loose, rho)
            new = (P1, f1, g1, d, err.to(d), pick(iits) + its)
            if part:  # the frozen elements keep their values (the plan in place: no copy of the batch)
                new = (P.index_copy_(0, idx, new[0]),) + tuple(
                    t.index_copy(0, idx, u) for t, u in zip((f, g, change, ierr, iits), new[1:]))
            changes.append(new[3])
            return new

        def freeze(active, old, new):  # step() already left the stopped elements (the driver's mask) as they were
            return new

        state = (P, None, None, inf, obj.a.new_zeros(batch), torch.zeros(batch, dtype=torch.int64))
        run = fixed_point(step, error, state, tol=tol, max_iter=self.max_iter, check_every=1, omega=1.0,
                          freeze=freeze if len(batch) else None, name="entropic_gromov_wasserstein", quiet=True,
                          criterion="plan_l1_change", check_start=False)
        P, f, g, change, ierr, iits = run.state
        stalled = torch.tensor([s == "stalled" for s in run.convergence.status]).reshape(batch)
        inner = Convergence.build(ierr, tight, iits, criterion="marginal_l1")
        conv = Convergence.build(change, tol, run.convergence.n_iters, criterion="plan_l1_change",
                                 errors=torch.stack(changes), stalled=stalled, levels=(("sinkhorn", inner),))
        return steps.dense(P), f, g, conv

    def _inner(self, steps, geom, obj: Objective, P_old, fg, loose: torch.Tensor, rho):
        """The Sinkhorn solves of one outer step: ``(plan, f, g, plan change, marginal error, iterations)``.

        A batch on a float64 CPU cost, where the compiled scaling loop applies, is solved element by element, each
        at its own tolerance (the same iterates as a single solve; measured 4x faster than one batched log-domain
        solve at ``B = 32, n = 64``: the compiled loop has no per-iteration Python, and a batched solve runs as
        long as its slowest element). Elsewhere (CUDA, float32, gradients) one batched solve at the tightest
        tolerance of the batch."""
        def solve(g, a, b, tol, init):
            with warnings.catch_warnings():  # folded into this solver's one warning
                warnings.simplefilter("ignore", RuntimeWarning)
                sink = Sinkhorn(eps=self.eps, tol=tol, max_iter=self.inner_max_iter)
                return sink(LinearProblem(g, a, b, *rho), init=init)

        first = None if steps.lazy or not loose.dim() else _compiled_first(geom, self.eps)
        if first is not None:
            rs = [solve(first if k == 0 else DenseCost(geom.cost()[k]), obj.a[k], obj.b[k], float(loose[k]),
                        None if fg is None else (fg[0][k], fg[1][k])) for k in range(len(loose))]
            st = lambda fn: torch.stack([fn(r) for r in rs])  # noqa: E731
            plans = [r.plan for r in rs]
            d = torch.stack([(p - q).abs_().sum() for p, q in zip(plans, P_old)])  # each plan while in cache
            return (torch.stack(plans), st(lambda r: r.f), st(lambda r: r.g), d, st(lambda r: r.convergence.error),
                    st(lambda r: r.convergence.n_iters))
        res = solve(geom, obj.a, obj.b, float(loose.min()), fg)
        P, d = steps.plan(res, geom, P_old)
        return P, res.f, res.g, d, res.convergence.error, res.convergence.n_iters

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
