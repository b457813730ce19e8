r"""Partial optimal transport: move only the mass ``m`` between two measures, exactly or with entropy.

.. math::
    \mathrm{POT}_m(a, b) = \min_{P \ge 0,\ P 1 \le a,\ P^\top 1 \le b,\ 1^\top P 1 = m} \langle P, C\rangle
    \;\big[+\ \varepsilon\, \mathrm{KL}(P \,|\, a \otimes b)\big]

Exact: one network simplex on the problem augmented with a dummy point on each side (Chapel et al. 2020): the
dummy source holds :math:`\|b\|_1 - m`, the dummy target :math:`\|a\|_1 - m`, arcs to and from the dummies cost
0 and the dummy-to-dummy arc costs more than any real arc, so it carries no mass and the real block of the
augmented plan is the partial plan. Entropic: block coordinate ascent on the dual
:math:`\max_{f \le 0,\ g \le 0,\ \lambda} \langle a, f\rangle + \langle b, g\rangle + m\lambda
- \varepsilon \sum_{ij} a_i b_j (e^{(f_i + g_j + \lambda - C_{ij})/\varepsilon} - 1)`, each block maximised in
closed form through the geometry's soft-min (so lazy and multiscale point clouds work in O(n + m) memory).
"""

from __future__ import annotations

import math

import torch

from .._validation import as_tensor, check_int, check_positive, check_weights
from ..geometry import DenseCost
from ..geometry.base import Geometry
from ..results.partial import PartialResult
from ._loop import fixed_point, relaxed
from .sinkhorn import DEFAULT_TOL
from ..ops.broadcast import broadcast_shapes

__all__ = ["partial_wasserstein"]

#: masses above min(|a|, |b|) by at most this relative amount are rounding and are clipped to it
_MASS_RTOL = 1e-9


def partial_wasserstein(C, a=None, b=None, *, mass, eps: float | None = None, tol: float | None = None,
                        max_iter: int | None = None, check_every: int | None = None,
                        verbose: bool = False) -> PartialResult:
    r"""Optimal transport of only the mass ``mass`` between ``a`` and ``b`` (partial OT), exact or entropic.

    .. math::
        \min_{P \ge 0,\ P 1 \le a,\ P^\top 1 \le b,\ \sum_{ij} P_{ij} = m} \langle P, C\rangle
        \;\big[+\ \varepsilon\, \mathrm{KL}(P \,|\, a \otimes b)\big]

    Mass that is expensive to move stays where it is: the plan picks the cheapest ``m`` units, which makes the
    value robust to outliers (a point far from every other is simply left out).

    Args:
        C: costs ``(..., n, m)``, or a geometry (e.g. :class:`monge.PointCloud`; a lazy cloud keeps the entropic
            solve in O(n + m) memory); leading dimensions are a batch.
        a, b: weights ``(..., n)`` / ``(..., m)``, nonnegative (``None``: uniform); masses may differ.
        mass: the mass to move, ``0 < mass <= min(|a|, |b|)``; a number or a tensor of the batch shape
            (differentiable: the value's gradient is the multiplier ``lam``).
        eps: ``None`` for exact partial OT (network simplex), else the entropic temperature in cost units.
            The entropy is relative to ``a ⊗ b`` as in :func:`monge.solve`; with uniform weights the plan equals
            POT's ``entropic_partial_wasserstein`` (entropy :math:`\sum P \log P`) at ``reg = eps``.
        tol, max_iter, check_every, verbose: entropic only: the tolerance on the l1 KKT residual (default
            1e-7 in float64, 2e-5 in float32), the iteration cap (5000), how often it is measured (10), a
            progress report.

    Returns:
        :class:`~monge.results.PartialResult`: ``value`` (differentiable), ``plan``, ``f``, ``g`` (both <= 0),
        ``lam`` and ``convergence``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [9.0]], dtype=torch.float64)
        >>> C = torch.cdist(x, torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)) ** 2
        >>> res = partial_wasserstein(C, mass=2 / 3)   # the outlier at 9 is left out
        >>> round(float(res.value), 6), res.plan.sum(-1).tolist()[2]
        (0.0, 0.0)
    """
    geom = C if isinstance(C, Geometry) else DenseCost(as_tensor(C, "C"))
    if geom.event_ndim != 1:
        raise ValueError(f"C: partial OT needs one support dimension per side (costs (..., n, m), point clouds), got "
                         f"a {type(geom).__name__} with supports {geom.source_shape} x {geom.target_shape}; flatten "
                         "the grid into a cost matrix or a point cloud")
    n, m = geom.shape
    like = geom.like()
    a = check_weights(a, "a", n, like, size_name="n")
    b = check_weights(b, "b", m, like, size_name="m")
    mass = _checked_mass(mass, a, b, like)
    if eps is None:
        given = [k for k, v in (("tol", tol), ("max_iter", max_iter), ("check_every", check_every)) if v is not None]
        if given or verbose:
            raise ValueError(f"{', '.join(given) or 'verbose'}: options of the entropic solver and ignored by exact "
                             "partial OT (eps=None); drop them, or pass eps=... for entropic partial OT")
        return _exact(geom, a, b, mass)
    check_positive(eps, "eps")
    check_positive(tol, "tol", allow_none=True)
    check_int(max_iter, "max_iter", allow_none=True)
    check_int(check_every, "check_every", allow_none=True)
    tol = DEFAULT_TOL.get(like.dtype, 1e-7) if tol is None else float(tol)
    return _entropic(geom, a, b, mass, float(eps), tol, 5000 if max_iter is None else max_iter,
                     10 if check_every is None else check_every, verbose)


def _checked_mass(mass, a, b, like) -> torch.Tensor:
    """``mass`` as a tensor, checked against ``0 < mass <= min(|a|, |b|)`` (rounding above the bound is clipped)."""
    t = as_tensor(mass, "mass", dtype=like.dtype, device=like.device)
    top = torch.minimum(a.sum(-1), b.sum(-1))
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"mass: expected a positive finite mass to move, got {mass!r}")
    if bool((t > top * (1 + _MASS_RTOL)).any()):
        raise ValueError(f"mass: expected at most min(|a|, |b|) = {float(top.min()):.6g}, got {mass!r}; partial OT "
                         "cannot move more than the lighter measure holds (pass a smaller mass, or use monge.solve "
                         "for balanced OT)")
    return torch.minimum(t, top.detach())  # the clip is rounding: no gradient flows to a or b through it


def _exact(geom, a, b, mass) -> PartialResult:
    """The network simplex on the problem augmented with one dummy point per side."""
    from ..api import solve  # the public exact entry point (validation, batches, certificate)

    C = geom.cost()
    batch = broadcast_shapes(C.shape[:-2], a.shape[:-1], b.shape[:-1], mass.shape)
    n, m = C.shape[-2:]
    C = C.expand(*batch, n, m)
    a, b, mass = a.expand(*batch, n), b.expand(*batch, m), mass.expand(batch)
    shift = C.detach().amin((-1, -2)).clamp(max=0.0)  # real arcs must cost >= 0 (the dummies cost 0)
    Cs = C - shift[..., None, None]
    big = 1.0 + Cs.detach().amax((-1, -2))
    zero_col, zero_row = C.new_zeros(*batch, n, 1), C.new_zeros(*batch, 1, m)
    C_ext = torch.cat([torch.cat([Cs, zero_col], -1), torch.cat([zero_row, big[..., None, None]], -1)], -2)
    a_ext = torch.cat([a, (b.sum(-1) - mass).clamp(min=0.0)[..., None]], -1)
    b_ext = torch.cat([b, (a.sum(-1) - mass).clamp(min=0.0)[..., None]], -1)
    res = solve(C_ext.detach(), a_ext.detach(), b_ext.detach())
    F, G = res.f, res.g
    f, g = F[..., :n] + G[..., m:], G[..., :m] + F[..., n:]
    lam = shift - F[..., n] - G[..., m]
    P = res.plan[..., :n, :m]
    value = (res.value + shift * mass.detach()  # envelope: dC = P, da = f, db = g, dm = lam
             + _moved(P, C, 2) + _moved(f, a) + _moved(g, b) + lam * (mass - mass.detach()))
    return PartialResult(value, f, g, lam, mass.detach(), None, res.convergence, lambda: P)


def _moved(w, t, k: int = 1):
    """``<w, t - t.detach()>`` over the last ``k`` dimensions: zero, with the gradient ``w`` for ``t`` (the
    envelope theorem's first-order term)."""
    return (w * (t - t.detach())).sum(tuple(range(-k, 0)))


class _Dual:
    """The entropic dual's blocks: ``(f, g, lam)`` each maximised in closed form given the others."""

    def __init__(self, geom, a, b, mass, eps: float):
        self.geom, self.eps, self.mass = geom, eps, mass
        self.la, self.lb, self.lm = torch.log(a), torch.log(b), torch.log(mass)

    def _lam(self, u, la, s):
        """The lam making the plan's total mass ``m``: ``eps log m - eps LSE(log w + (u - s) / eps)``."""
        return self.eps * (self.lm - torch.logsumexp(la + (u - s) / self.eps, -1))

    def step(self, state, omega):
        """One sweep f, lam, g; ``omega`` over-relaxes the f and g blocks (then projected on <= 0)."""
        f, g, lam = state
        r = self.geom.softmin(g + self.eps * self.lb, self.eps, 1)
        f = torch.clamp(relaxed(f, r - self._lam(f, self.la, r)[..., None], omega), max=0.0)
        s = self.geom.softmin(f + self.eps * self.la, self.eps, 0)
        lam = self._lam(g, self.lb, s)
        return f, torch.clamp(relaxed(g, s - lam[..., None], omega), max=0.0), lam

    def rows(self, state):
        """``(P 1, what the exact f-update would make it)``: they agree at a fixed point."""
        f, g, lam = state
        r = self.geom.softmin(g + self.eps * self.lb, self.eps, 1)
        t = (lam[..., None] - r) / self.eps
        return torch.exp(self.la + t + f / self.eps), torch.exp(self.la + torch.clamp(t, max=0.0))

    def error(self, state):
        """The l1 KKT residual: rows against their optimal update, plus the total mass against ``m``."""
        rows, best = self.rows(state)
        return (rows - best).abs().sum(-1) + (rows.sum(-1) - self.mass).abs()

    def value(self, geom, a, b, mass, state):
        """The dual objective at the (detached) duals: differentiable in the geometry, a, b and m (envelope)."""
        f, g, lam = state
        r = geom.softmin(g + self.eps * torch.log(b), self.eps, 1)
        total = (a * torch.exp((f + lam[..., None] - r) / self.eps)).sum(-1)  # the plan's mass; exponent <= 0
        return (a * f).sum(-1) + (b * g).sum(-1) + mass * lam - self.eps * (total - a.sum(-1) * b.sum(-1))

    @staticmethod
    def freeze(active, old, new):
        return tuple(torch.where(active.reshape(*active.shape, *([1] * (u.dim() - active.dim()))), u, v)
                     for u, v in zip(new, old))


def _entropic(geom, a, b, mass, eps, tol, max_iter, check_every, verbose) -> PartialResult:
    """Block ascent at ``eps * 4^k`` down to ``eps`` from the cost scale (loose stages, warm-started: without them
    a plan that must saturate every row stalls), over-relaxed by the driver's adaptive rule; the certificate is
    the final stage's KKT residual of the returned duals."""
    batch = broadcast_shapes(geom.batch_shape, a.shape[:-1], b.shape[:-1], mass.shape)
    n, m = geom.shape
    loop = geom.detach()
    args = (a.detach().expand(*batch, n), b.detach().expand(*batch, m), mass.detach().expand(batch))
    like = geom.like()
    state = (like.new_zeros(*batch, n), like.new_zeros(*batch, m), like.new_zeros(batch))
    stages, e = [], eps
    while e < 0.25 * loop.cost_scale() and len(stages) < 60:
        e *= 4.0
        stages.append(e)
    done, budget = 0, max_iter // (2 * len(stages)) if stages else 0  # the stages take at most half of max_iter
    for e in stages[::-1] if budget else ():  # loose: 1e-2 of the mass, or tol if that is looser; no warning (the last stage reports)
        stage = _Dual(loop, *args, e)
        run = fixed_point(stage.step, stage.error, state, tol=max(tol, 1e-2),
                          max_iter=budget, check_every=check_every, freeze=_Dual.freeze if batch else None,
                          quiet=True, criterion="kkt_l1")
        state, done = run.state, done + run.n_iters
    dual = _Dual(loop, *args, eps)
    run = fixed_point(dual.step, dual.error, state, tol=tol, max_iter=max_iter - done, start=done,
                      check_every=check_every, freeze=dual.freeze if batch else None, verbose=verbose,
                      name="partial_wasserstein", criterion="kkt_l1")
    f, g, lam = run.state
    value = dual.value(geom, a, b, mass, run.state)

    def plan():
        C = geom.cost().detach()
        u = f + lam[..., None] + eps * dual.la
        return torch.exp((u[..., :, None] + (g + eps * dual.lb)[..., None, :] - C) / eps)

    return PartialResult(value, f, g, lam, mass.detach().expand(batch), eps, run.convergence, plan)
