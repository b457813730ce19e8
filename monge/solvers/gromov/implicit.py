r"""Implicit gradients of the entropic GW plan: the implicit function theorem at the fixed point of the iteration.

The solver returns a plan :math:`P^\star` that is a fixed point of one Sinkhorn sweep on the linearised cost,

.. math::
    \Psi(g, P) = (g', P'), \quad G = \nabla F(P), \quad
    f' = \kappa_a\,\mathrm{smin}_j(g + \varepsilon\log b - G), \quad
    g' = \kappa_b\,\mathrm{smin}_i(f' + \varepsilon\log a - G), \quad
    P' = a b^\top e^{(f' + g' - G)/\varepsilon}

(:math:`\kappa = \rho/(\rho + \varepsilon)` on a penalised side, 1 on a hard one; balanced problems fix the gauge
``f + c, g - c`` by centring ``g'``). Its fixed points are the stationary points of the regularised objective, so
:math:`z^\star(\theta) = \Psi(z^\star(\theta), \theta)` and, for a cotangent :math:`\bar z`,

.. math::
    \bar\theta = (\partial_\theta \Psi)^\top w, \qquad w = \bar z + (\partial_z \Psi)^\top w

(the adjoint equation, a linear system :math:`(I - \partial_z\Psi^\top) w = \bar z` solved by GMRES on
vector-Jacobian products: it needs :math:`I - \partial_z \Psi` invertible, i.e. a nondegenerate fixed point, not a
contraction). One differentiable application of :math:`\Psi` is recorded and a hook
on its output replaces the incoming cotangent by ``w``.
"""

from __future__ import annotations

import warnings

import torch

from ...problems.quadratic import LowRank, QuadraticProblem, cross
from .common import dot, user_stacklevel

__all__ = ["needs_grad", "implicit_plan", "sweep", "plan_terms", "gmres"]


def needs_grad(prob: QuadraticProblem) -> bool:
    """Whether any input of the problem (costs, points, weights, ``M``) requires a gradient, with grad enabled."""
    if not torch.is_grad_enabled():
        return False
    ts = [prob.a, prob.b, prob.M]
    for C in (prob.geom_xx, prob.geom_yy):
        ts += [C.U, C.V] if isinstance(C, LowRank) else [C]
    return any(isinstance(t, torch.Tensor) and t.requires_grad for t in ts)


def _smin(h: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    return -eps * torch.logsumexp(h / eps, dim)


def _gradient(prob: QuadraticProblem, P: torch.Tensor) -> torch.Tensor:
    r""":math:`\nabla F(P)` with the plan's own marginals, differentiable in the data and in ``P``."""
    sx, sy = prob.sides()
    G = sx.fvec(P.sum(-1)).unsqueeze(-1) + sy.fvec(P.sum(-2)).unsqueeze(-2) - cross(sx.H, P, sy.H)
    G = 2 * prob.alpha * G
    return G if prob.M is None or prob.alpha == 1.0 else G + (1 - prob.alpha) * prob.M


def sweep(prob: QuadraticProblem, g: torch.Tensor, P: torch.Tensor, eps: float):
    """:math:`\\Psi(g, P)` (see the module docstring), differentiable in everything."""
    G = _gradient(prob, P)
    la, lb = torch.log(prob.a), torch.log(prob.b)
    ka = 1.0 if prob.rho_a is None else prob.rho_a / (prob.rho_a + eps)
    kb = 1.0 if prob.rho_b is None else prob.rho_b / (prob.rho_b + eps)
    f1 = ka * _smin((g + eps * lb).unsqueeze(-2) - G, -1, eps)
    g1 = kb * _smin((f1 + eps * la).unsqueeze(-1) - G, -2, eps)
    P1 = torch.exp((f1.unsqueeze(-1) + g1.unsqueeze(-2) - G) / eps + la.unsqueeze(-1) + lb.unsqueeze(-2))
    if prob.is_balanced:
        g1 = g1 - g1.mean()
    return g1, P1


def implicit_plan(prob: QuadraticProblem, P: torch.Tensor, g: torch.Tensor, eps: float, tol: float,
                  max_iter: int) -> torch.Tensor:
    """``P`` (a fixed point, detached) carrying implicit gradients w.r.t. every input of ``prob``.

    The adjoint solve stops at a relative residual of ``tol``, or after ``max_iter`` Krylov steps (warned: the
    gradient is then that of the last iterate)."""
    n, m = P.shape
    g0 = g.detach() - g.detach().mean() if prob.is_balanced else g.detach()
    z0 = torch.cat([g0, P.detach().reshape(-1)])
    g1, P1 = sweep(prob, g0, P.detach(), eps)  # recorded w.r.t. the data only; the hook corrects its cotangent
    out = torch.cat([g1, P1.reshape(-1)])
    with torch.enable_grad():  # the Jacobian w.r.t. the state, on a separate graph (the hook must not see it)
        z = z0.clone().requires_grad_()
        gz, Pz = sweep(_detached(prob), z[:m], z[m:].view(n, m), eps)
        outz = torch.cat([gz, Pz.reshape(-1)])

    def adjoint(zbar: torch.Tensor | None) -> torch.Tensor | None:
        if zbar is None:
            return None
        op = lambda w: w - torch.autograd.grad(outz, z, w, retain_graph=True)[0]  # noqa: E731
        w, res = gmres(op, zbar, tol, max_iter)
        if res > tol:
            warnings.warn(f"entropic gromov_wasserstein: the implicit (adjoint) solve stopped at a relative residual "
                          f"of {res:.3g} after {max_iter} Krylov steps; the plan is likely not a stable fixed point "
                          "(small eps or an unconverged solve). The gradient is that of the last iterate.",
                          RuntimeWarning, stacklevel=user_stacklevel())
        return w

    out.register_hook(adjoint)
    return out[m:].view(n, m)


def gmres(op, rhs: torch.Tensor, tol: float, max_iter: int):
    r"""Solve :math:`\mathrm{op}(w) = \mathrm{rhs}` by GMRES (Arnoldi with modified Gram-Schmidt, no restart):
    ``(w, relative residual)``; at most ``min(max_iter, len(rhs))`` operator calls."""
    beta = float(torch.linalg.norm(rhs))
    if beta == 0.0:
        return torch.zeros_like(rhs), 0.0
    k_max = min(max_iter, rhs.numel())
    Q = [rhs / beta]
    H = rhs.new_zeros(k_max + 1, k_max)
    e1 = rhs.new_zeros(k_max + 1)
    e1[0] = beta
    y, res = rhs.new_zeros(0), 1.0
    for k in range(k_max):
        v = op(Q[k])
        for i in range(k + 1):
            H[i, k] = torch.dot(Q[i], v)
            v = v - H[i, k] * Q[i]
        H[k + 1, k] = torch.linalg.norm(v)
        y = torch.linalg.lstsq(H[: k + 2, : k + 1], e1[: k + 2].unsqueeze(-1)).solution.squeeze(-1)
        res = float(torch.linalg.norm(H[: k + 2, : k + 1] @ y - e1[: k + 2])) / beta
        if res <= tol or float(H[k + 1, k]) <= 1e-300:
            break
        Q.append(v / H[k + 1, k])
    return sum(c * q for c, q in zip(y, Q)), res


def _detached(prob: QuadraticProblem) -> QuadraticProblem:
    """The same problem on detached data (a shallow copy; the validated fields are reused)."""
    det = lambda t: t.map(torch.Tensor.detach) if isinstance(t, LowRank) else (  # noqa: E731
        t.detach() if isinstance(t, torch.Tensor) else t)
    out = object.__new__(QuadraticProblem)
    for k in ("geom_xx", "geom_yy", "a", "b", "geom_xy", "alpha", "loss", "rho_a", "rho_b"):
        object.__setattr__(out, k, det(getattr(prob, k)))
    return out


def plan_terms(prob: QuadraticProblem, P: torch.Tensor):
    """``(<M, P>, E(P))`` differentiable in ``P`` and the data, with the plan's own marginals (no ``n x n``)."""
    sx, sy = prob.sides()
    p, q = P.sum(-1), P.sum(-2)
    Hx, Hy = sx.H, sy.H
    if isinstance(Hx, LowRank) and isinstance(Hy, LowRank):
        xp = dot(Hx.V.mT @ P @ Hy.V, Hx.U.mT @ P @ Hy.U)
    else:
        xp = dot(cross(Hx, P, Hy), P)
    quad = p @ sx.fvec(p) + q @ sy.fvec(q) - xp
    lin = dot(prob.M, P) if prob.M is not None else quad.new_zeros(())
    return lin, quad
