"""What the GW solvers share: the result type, the objective and its gradient, the envelope value, the start."""

from __future__ import annotations

import math

import torch

from ..._warnings import user_stacklevel
from ...problems.quadratic import LowRank, QuadraticProblem, Side, cross
from ...results import Convergence
from ...results.gromov import ExactGWResult, GWResult
from ..exact._batch import centred

__all__ = ["GWResult", "Objective", "differentiable_value", "check_init", "dot", "matvec", "user_stacklevel",
           "stack_results", "stack_convergence", "stack_exact"]


def matvec(H, p: torch.Tensor) -> torch.Tensor:
    """``H p`` for a dense or :class:`LowRank` ``H (..., n, n)`` and ``p (..., n)``; batch-safe (a batch of ``B``
    vectors is never read as one ``(B, n)`` matrix, also when ``B == n``)."""
    if p.dim() == 1 and not isinstance(H, LowRank) and H.dim() == 2:
        return H @ p
    q = p.unsqueeze(-1)
    return (H.U @ (H.V.mT @ q) if isinstance(H, LowRank) else H @ q).squeeze(-1)


def _each(item, fn):
    """``fn`` on a tensor, on both factors of a :class:`LowRank`, ``None`` kept."""
    if item is None:
        return None
    return item.map(fn) if isinstance(item, LowRank) else fn(item)


def _stacked(items):
    """Items of the same kind (tensors, LowRank, None) stacked along a new leading batch dimension."""
    first = items[0]
    if first is None:
        return None
    if isinstance(first, LowRank):
        return LowRank(torch.stack([i.U for i in items]), torch.stack([i.V for i in items]))
    return torch.stack(items)


class Objective:
    """The quadratic objective of a balanced problem and its gradient, in the loop's dtype (no autograd)."""

    def __init__(self, prob: QuadraticProblem, dtype=None, detach: bool = True, plan: torch.Tensor | None = None):
        self.sx, self.sy = prob.sides(detach=detach, dtype=dtype)
        cast = lambda t: None if t is None else (t.detach() if detach else t).to(dtype or t.dtype)  # noqa: E731
        self.a, self.b, self.M = cast(prob.a.detach()), cast(prob.b.detach()), cast(prob.M)
        if plan is not None:  # E(P) is a function of the plan alone: its own marginals, never the weights' autograd
            self.a, self.b = plan.detach().sum(-1), plan.detach().sum(-2)
        elif dtype is not None and dtype != prob.a.dtype:  # masses equal to the input's precision: equalise here
            self.b = self.b * (self.a.sum() / self.b.sum())
        self.alpha = prob.alpha
        self.c1, self.c2 = self.sx.fvec(self.a), self.sy.fvec(self.b)  # f1(Cx) a, f2(Cy) b

    def cross(self, P: torch.Tensor) -> torch.Tensor:
        r""":math:`h_1(C^x) P h_2(C^y)^\top` ``(n, m)``."""
        return cross(self.sx.H, P, self.sy.H)

    def rank1(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, v)`` with ``cross(a b^T) = u v^T``: ``u = h1(Cx) a``, ``v = h2(Cy) b``."""
        return self.sx.hvec(self.a), self.sy.hvec(self.b)

    def grad(self, X: torch.Tensor, P: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\nabla F(P) = (1 - \alpha) M + 2 \alpha (L \otimes P)` from ``X = cross(P)``; the plan's
        marginals are ``a, b`` unless ``P`` is given (unbalanced: its own marginals)."""
        c1, c2 = (self.c1, self.c2) if P is None else (matvec(self.sx.F, P.sum(-1)), matvec(self.sy.F, P.sum(-2)))
        G = torch.add(c1.unsqueeze(-1), c2.unsqueeze(-2)).sub_(X).mul_(2 * self.alpha)
        return G if self.M is None or self.alpha == 1.0 else G.add_(self.M, alpha=1.0 - self.alpha)

    def terms(self, P: torch.Tensor, X: torch.Tensor | None = None):
        """(linear term <M, P>, quadratic term E(P)) for a plan with marginals a, b."""
        quad = self.a @ self.c1 + self.b @ self.c2 - (self._xp(P) if X is None else dot(X, P))
        lin = dot(self.M, P) if self.M is not None else quad.new_zeros(())
        return lin, quad

    def _xp(self, P: torch.Tensor) -> torch.Tensor:
        r""":math:`\langle H_x P H_y^\top, P\rangle`; for low-rank factors through ``r x r`` cores, no ``(n, m)``."""
        Hx, Hy = self.sx.H, self.sy.H
        if isinstance(Hx, LowRank) and isinstance(Hy, LowRank):
            return dot(Hx.V.mT @ P @ Hy.V, Hx.U.mT @ P @ Hy.U)
        return dot(self.cross(P), P)

    def value(self, lin, quad):
        return (1.0 - self.alpha) * lin + self.alpha * quad

    _FIELDS = ("a", "b", "M", "c1", "c2")

    @classmethod
    def stack(cls, objs) -> "Objective":
        """The objectives of equal-size problems (same kind of sides, ``alpha`` and loss) as one with a leading
        batch dimension on every field: :meth:`cross` and :meth:`grad` then act per element."""
        out = object.__new__(cls)
        out.alpha = objs[0].alpha
        for k in ("sx", "sy"):
            sides = [getattr(o, k) for o in objs]
            setattr(out, k, Side(_stacked([s.H for s in sides]), _stacked([s.F for s in sides])))
        for k in cls._FIELDS:
            setattr(out, k, _stacked([getattr(o, k) for o in objs]))
        return out

    def select(self, idx: torch.Tensor) -> "Objective":
        """The batch elements ``idx`` of a stacked objective."""
        out = object.__new__(type(self))
        out.alpha = self.alpha
        pick = lambda t: t[idx]  # noqa: E731
        for k in ("sx", "sy"):
            s = getattr(self, k)
            setattr(out, k, Side(_each(s.H, pick), _each(s.F, pick)))
        for k in self._FIELDS:
            setattr(out, k, _each(getattr(self, k), pick))
        return out


def dot(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``<A, B>`` (Frobenius) without a temporary of their size."""
    return torch.dot(A.reshape(-1), B.reshape(-1))


def differentiable_value(prob: QuadraticProblem, P: torch.Tensor, f: torch.Tensor, g: torch.Tensor, extra=None):
    r"""(value, linear, quadratic) at the fixed plan ``P`` with envelope gradients.

    W.r.t. the costs (and the points they come from) the gradient is :math:`\partial F / \partial C` at fixed ``P``;
    w.r.t. the weights it is the centred potentials ``f - mean(f)``, ``g - mean(g)`` of the linearised problem
    (directions that keep the mass). ``extra`` (entropy term) is added to the value as given.
    """
    obj = Objective(prob, detach=False, plan=P)
    lin, quad = obj.terms(P.detach())
    value = obj.value(lin, quad)
    value = value + (centred(f.detach()) * (prob.a - prob.a.detach())).sum()
    value = value + (centred(g.detach()) * (prob.b - prob.b.detach())).sum()
    return (value if extra is None else value + extra), lin.detach(), quad.detach()


def check_init(init, prob: QuadraticProblem, like: torch.Tensor) -> torch.Tensor:
    """The starting plan: ``a b^T`` (``None``) or a user's plan ``(n, m)``, nonnegative with marginals a, b."""
    a, b = prob.a.detach().to(like), prob.b.detach().to(like)
    if init is None:
        return a.unsqueeze(-1) * b.unsqueeze(-2)
    if not isinstance(init, torch.Tensor) or tuple(init.shape) != prob.shape:
        got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise ValueError(f"init: expected a plan of shape (n, m) = {prob.shape}, got {got}")
    P = init.detach().to(like)
    err = float((P.sum(-1) - a).abs().sum() + (P.sum(-2) - b).abs().sum()) if prob.is_balanced else 0.0
    if not bool(torch.isfinite(P).all()) or bool((P < 0).any()) or err > 1e-6 * float(a.sum()):
        raise ValueError(f"init: expected a feasible plan (finite, >= 0, marginals a and b), got a marginal error of "
                         f"{err:.3g}; start from a.outer(b) or project your plan onto the marginals")
    return P


def stack_convergence(convs) -> Convergence:
    """One record for a batch of independent solves: their per-problem verdicts (each made against its own
    tolerance), errors, iterations and traces (NaN-padded), and their inner levels stacked the same way."""
    err = torch.stack([c.error.reshape(()) for c in convs])
    ok = torch.stack([c.converged.reshape(()) for c in convs])
    tol = torch.where(ok, err, torch.full_like(err, -math.inf))
    stalled = torch.tensor([c.status[0] == "stalled" for c in convs])
    traces = [c.errors.reshape(-1) if c.errors is not None else err.new_zeros(0) for c in convs]
    n = max(len(t) for t in traces)
    trace = torch.stack([torch.cat([t.to(err), err.new_full((n - len(t),), math.nan)]) for t in traces], -1)
    levels = tuple((name, stack_convergence([c.level(name) for c in convs])) for name, _ in convs[0].levels)
    return Convergence.build(err, tol, torch.stack([c.n_iters.reshape(()) for c in convs]),
                             criterion=convs[0].criterion, errors=trace, stalled=stalled, levels=levels)


def stack_exact(results) -> ExactGWResult:
    """Exact results of equal-size problems as one :class:`~monge.results.ExactGWResult` whose triplets are
    ``(B, K)``, ``K`` the largest support of the batch, padded with zeros at ``(0, 0)`` (as
    :class:`~monge.results.ExactResult`): ``plan``, ``plan_sparse``, ``marginals`` read it per element."""
    K = max(r.vals.shape[-1] for r in results)
    pad = lambda t: torch.cat([t, t.new_zeros(K - t.shape[-1])])  # noqa: E731
    st = lambda name: torch.stack([getattr(r, name) for r in results])  # noqa: E731
    trip = {k: torch.stack([pad(getattr(r, k)) for r in results]) for k in ("rows", "cols", "vals")}
    return ExactGWResult(value=st("value"), linear_term=st("linear_term"), quadratic_term=st("quadratic_term"),
                         f=st("f"), g=st("g"), convergence=stack_convergence([r.convergence for r in results]),
                         shape=results[0].shape, **trip)


def stack_results(results, convergence: Convergence | None = None) -> GWResult:
    """The results of a batch of equal-size problems as one :class:`GWResult` with a leading batch dimension
    (``convergence``: the batch's record; ``None``: the elements' records stacked)."""
    st = lambda name: torch.stack([getattr(r, name) for r in results])  # noqa: E731
    conv = stack_convergence([r.convergence for r in results]) if convergence is None else convergence
    return GWResult(plan=st("plan"), value=st("value"), linear_term=st("linear_term"),
                    quadratic_term=st("quadratic_term"), f=st("f"), g=st("g"), convergence=conv)
