r"""Entropic OT by Sinkhorn iterations in the log domain, over any geometry's ``softmin``.

.. math::
    \mathrm{OT}_\varepsilon(a, b) = \min_{P \ge 0} \langle P, C\rangle + \varepsilon\,\mathrm{KL}(P \,|\, a \otimes b)
        + \rho_a \mathrm{KL}(P 1 \,|\, a) + \rho_b \mathrm{KL}(P^\top 1 \,|\, b)

(the marginal terms are hard constraints when ``rho`` is None). The dual potentials are the state:

.. math::
    f \leftarrow \kappa_a\,\mathrm{softmin}_\varepsilon(g + \varepsilon \log b), \qquad
    g \leftarrow \kappa_b\,\mathrm{softmin}_\varepsilon(f + \varepsilon \log a), \qquad
    \kappa = \rho / (\rho + \varepsilon) \ (1 \text{ if balanced})
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops.logsumexp import log_weights
from ..problems.linear import LinearProblem
from ..results import Convergence, SinkhornResult
from ._loop import Checks, Progress, Relaxation, warn_not_converged
from .schedules import EpsScaling

__all__ = ["Sinkhorn", "DEFAULT_TOL", "GRADS"]

#: Default stopping tolerance on the l1 marginal violation, per dtype: float32 sums of 10^4..10^5 weights carry
#: rounding errors of ~1e-6, so 1e-5 is the tightest reliable target there.
DEFAULT_TOL = {torch.float32: 1e-5, torch.float64: 1e-7}
GRADS = ("envelope", "unroll", "implicit")


def _kappa(rho, eps):
    return 1.0 if rho is None else rho / (rho + eps)


def _esum(t: torch.Tensor, k: int) -> torch.Tensor:
    """Sum over the last ``k`` (event) dimensions."""
    return t.sum(tuple(range(-k, 0)))


@dataclass(frozen=True)
class _Data:
    """What the iterations need: log-weights, penalties, and the event rank of the geometry."""

    a: torch.Tensor
    b: torch.Tensor
    la: torch.Tensor
    lb: torch.Tensor
    rho_a: float | None
    rho_b: float | None
    k: int
    symmetric: bool = False  # OT(a, a) on one point cloud: f = g, averaged updates f <- (f + T(f)) / 2

    @classmethod
    def of(cls, prob: LinearProblem, detach: bool = False) -> "_Data":
        a, b = (prob.a.detach(), prob.b.detach()) if detach else (prob.a, prob.b)
        sym = prob.geom.symmetric and prob.a is prob.b and prob.rho_a == prob.rho_b
        return cls(a, b, log_weights(a), log_weights(b), prob.rho_a, prob.rho_b, prob.geom.event_ndim, sym)

    def step(self, geom, f, g, eps, omega: float = 1.0):
        """One (over-relaxed) Sinkhorn iteration; returns (f, g, S), S the unscaled softmin for the error."""
        f_new, S = self.f_update(geom, g, eps)
        if self.symmetric:
            f_new = 0.5 * (f + f_new)
            return f_new, f_new, S
        if omega != 1.0:
            f_new = torch.lerp(f, f_new, omega)  # f + omega (f_new - f), one pass
            return f_new, torch.lerp(g, self.g_update(geom, f_new, eps), omega), S
        return f_new, self.g_update(geom, f_new, eps), S

    def f_update(self, geom, g, eps):
        """(kappa_a * S, S) with S = softmin(g + eps log b) over targets."""
        S = geom.softmin(torch.add(g, self.lb, alpha=eps), eps, 1)
        return (S if self.rho_a is None else _kappa(self.rho_a, eps) * S), S

    def g_update(self, geom, f, eps):
        S = geom.softmin(torch.add(f, self.la, alpha=eps), eps, 0)
        return S if self.rho_b is None else _kappa(self.rho_b, eps) * S

    def error(self, f, S, eps):
        """l1 violation of the first-order condition on the row marginal (the marginal error if balanced)."""
        row = torch.exp(self.la + (f - S) / eps)
        target = self.a if self.rho_a is None else self.a * torch.exp(-f / self.rho_a)
        return _esum((row - target).abs(), self.k)

    def dual(self, f, S, g, eps):
        """Dual objective at (f, g), with S = softmin(g + eps log b) giving the plan's total mass."""
        mass_p = _esum(torch.exp(self.la + (f - S) / eps), self.k)
        ma, mb = _esum(self.a, self.k), _esum(self.b, self.k)
        phi_a = _esum(self.a * f, self.k) if self.rho_a is None else -self.rho_a * _esum(
            self.a * torch.expm1(-f / self.rho_a), self.k)
        phi_b = _esum(self.b * g, self.k) if self.rho_b is None else -self.rho_b * _esum(
            self.b * torch.expm1(-g / self.rho_b), self.k)
        return phi_a + phi_b - eps * (mass_p - ma * mb)


@dataclass(frozen=True)
class Sinkhorn:
    r"""Log-domain Sinkhorn solver, stopped on the l1 marginal violation.

    Args:
        eps: entropic regularisation, absolute, in cost units (> 0).
        tol: stop when :math:`\|P 1 - a\|_1 \le` tol (units of the weights; unbalanced: the violation of the
            first-order condition), checked every ``check_every`` iterations. ``None``: :data:`DEFAULT_TOL`.
        max_iter: iteration cap (annealing iterations included). Reaching it is reported, never raised.
        check_every: iterations between checks (the only device synchronisations of the loop), plus one extra
            check where the measured contraction predicts the tolerance to be met before the next regular one.
        schedule: an :class:`~monge.solvers.schedules.EpsScaling` to anneal eps (``None``: fixed eps).
        grad: ``"envelope"`` (default: detached iterations, one differentiable step), ``"unroll"`` (autograd
            through all iterations) or ``"implicit"`` (implicit function theorem, conjugate gradient).
        omega: over-relaxation :math:`f \leftarrow f + \omega (T(g) - f)` (same fixed point, far fewer iterations
            at small eps). ``"auto"`` (default): 10 plain iterations, then a damped SOR optimum from the measured
            contraction rate, raised later by Young's relation; a blow-up restores the saved iterate, an
            oscillation halves omega (see :class:`~monge.solvers._loop.Relaxation`). A number in (0, 2) fixes it.
        verbose: a tqdm progress bar.

    Example:
        >>> import torch, monge
        >>> x, y = torch.rand(30, 2, dtype=torch.float64), torch.rand(20, 2, dtype=torch.float64)
        >>> res = Sinkhorn(eps=0.05)(LinearProblem(monge.PointCloud(x, y)))
        >>> res.convergence.all_converged, res.f.shape
        (True, torch.Size([30]))
    """

    eps: float
    tol: float | None = None
    max_iter: int = 5000
    check_every: int = 10
    schedule: EpsScaling | None = None
    grad: str = "envelope"
    omega: float | str = "auto"
    verbose: bool = False

    def __post_init__(self):
        from .._validation import check_loop, check_positive

        check_positive(self.eps, "eps")
        check_positive(self.tol, "tol", allow_none=True)
        check_loop(self.max_iter, self.check_every, self.omega)
        if self.grad not in GRADS:
            raise ValueError(f"grad: expected one of {GRADS}, got {self.grad!r}")
        if self.schedule is not None and not isinstance(self.schedule, EpsScaling):
            raise TypeError(f"schedule: expected an EpsScaling or None, got {type(self.schedule).__name__}")

    def __call__(self, prob: LinearProblem, init=None) -> SinkhornResult:
        """Solve ``prob``; ``init=(f, g)`` warm-starts from given potentials."""
        if not isinstance(prob, LinearProblem):
            raise TypeError(f"prob: expected a monge LinearProblem, got {type(prob).__name__}")
        unroll = self.grad == "unroll"
        f, g = self._init(prob, init, prob.geom.event_ndim)
        with torch.set_grad_enabled(unroll):
            f, g, n_it, trace = self._iterate(_loop_geometry(prob.geom, unroll), _Data.of(prob, detach=not unroll), f, g)
        # the final (differentiable) half step runs on the problem's own geometry and weights
        return self._finish(prob, prob.geom, _Data.of(prob), f, g, n_it, trace)

    def _init(self, prob, init, k):
        n_shape, m_shape = prob.a.shape[prob.a.dim() - k :], prob.b.shape[prob.b.dim() - k :]
        batch = prob.batch_shape
        like = prob.geom.like()
        if init is None:
            return like.new_zeros((*batch, *n_shape)), like.new_zeros((*batch, *m_shape))
        f0, g0 = init
        for name, t, shp in (("init f", f0, n_shape), ("init g", g0, m_shape)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape[t.dim() - k :]) != tuple(shp):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name}: expected a tensor of shape (..., {', '.join(map(str, shp))}), got {got}")
        return (f0.detach().to(like).expand(*batch, *n_shape).clone(),
                g0.detach().to(like).expand(*batch, *m_shape).clone())

    def _iterate(self, geom, data, f, g):
        """Annealing stages (if any), then iterations at eps with checks; returns (f, g, iterations, trace)."""
        temps = self.schedule.temperatures(self.eps, geom.cost_scale()) if self.schedule else [self.eps]
        n_it = 0
        for e in temps[:-1]:
            for _ in range(self.schedule.iters_per_stage):
                f, g, _ = data.step(geom, f, g, e)
                n_it += 1
        return self._final_stage(geom, data, f, g, n_it)

    def _tol(self, dtype: torch.dtype) -> float:
        return self.tol if self.tol is not None else DEFAULT_TOL[dtype]

    def _final_stage(self, geom, data, f, g, n_it):
        eps, tol, trace = self.eps, self._tol(f.dtype), []
        batched = f.dim() > data.k
        active = None
        relax = Relaxation(1.0 if data.symmetric else self.omega, self.check_every)  # (symmetric: averaged steps)
        bar = Progress(self.max_iter, self.verbose, "sinkhorn")
        checks = Checks(self.check_every, tol)
        while n_it < self.max_iter:
            f_new, g_new, S = data.step(geom, f, g, eps, relax.omega)
            if checks.due(n_it):
                err = data.error(f, S, eps).detach()
                trace.append(err)
                active = err > tol
                worst = float(err.max())
                bar.update(n_it, worst, eps)
                if not bool(active.any()):
                    break
                checks.record(n_it, worst)
                restore = relax.update(trace, (f, g), n_it) if checks.regular(n_it) else None
                if restore is not None:
                    f, g = restore
                    n_it += 1
                    continue
            elif relax.wants_probe(n_it):
                relax.probe(n_it, data.error(f, S, eps).detach())
            if batched and active is not None:
                mask = active.reshape(*active.shape, *([1] * data.k))
                f_new, g_new = torch.where(mask, f_new, f), torch.where(mask, g_new, g)
            f, g = f_new, g_new
            n_it += 1
        bar.close()
        return f, g, n_it, trace

    def _finish(self, prob, geom, data, f, g, n_it, trace):
        """One (differentiable) half step from g: the value, the final error, the convergence record."""
        eps, tol = self.eps, self._tol(f.dtype)
        if self.grad == "implicit":
            from ..autodiff import implicit_potential

            g = implicit_potential(geom, data, g, eps)
        elif self.grad == "envelope":
            g = g.detach()
        f_new, S = data.f_update(geom, g, eps)
        err = data.error(f.detach(), S.detach(), eps)
        value = data.dual(f_new, S, g, eps)
        converged = err <= tol
        errors = torch.stack(trace) if trace else err[None]
        warn_not_converged("sinkhorn", converged, err, tol, self.max_iter)
        status = tuple("converged" if c else "max_iter_reached" for c in converged.reshape(-1).tolist())
        conv = Convergence(converged=converged, n_iters=torch.full_like(converged, n_it, dtype=torch.int64),
                           status=status, error=err, errors=errors)
        return SinkhornResult(f=f_new, g=g, value=value, eps=eps, problem=prob, convergence=conv)


def _loop_geometry(geom, unroll: bool):
    """The geometry the iterations run on (:meth:`~monge.geometry.Geometry.loop_geometry`): detached for
    envelope/implicit loops; for unrolling, the geometry's cheapest differentiable equivalent."""
    return geom.loop_geometry(unroll)

