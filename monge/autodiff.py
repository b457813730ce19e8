r"""Gradients of iterative solvers, in one place.

``grad="envelope"`` and ``grad="unroll"`` need no machinery beyond autograd (see :mod:`monge.solvers.sinkhorn`);
``grad="implicit"`` differentiates the fixed point :math:`g^\star = \Phi(g^\star, \theta)` of the Sinkhorn map
:math:`\Phi = T_b \circ T_a` by the implicit function theorem:

.. math::
    \frac{dL}{d\theta} = \frac{\partial L}{\partial\theta} + w^\top \frac{\partial \Phi}{\partial \theta},
    \qquad (I - J^\top)\, w = \frac{\partial L}{\partial g}, \quad J = \partial_g \Phi

:math:`J = \mathrm{diag}(b)^{-1} P^\top \mathrm{diag}(a)^{-1} P` (times :math:`\kappa_a\kappa_b` if unbalanced)
is self-adjoint in the inner product :math:`\langle u, v\rangle_{1/b} = \sum_j u_j v_j / b_j`, with spectrum in
[0, 1]: the system is solved by conjugate gradient in that inner product, on the support of ``b``. In the
balanced case, :math:`I - J^\top` is singular along ``b`` (the potentials' constant gauge); the right-hand side
is projected accordingly. Memory stays that of one softmin and its backward (O(n + m) for lazy geometries).
"""

from __future__ import annotations

import torch

__all__ = ["implicit_potential", "conjugate_gradient"]


def _esum(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.sum(tuple(range(-k, 0)), keepdim=True)


def conjugate_gradient(A, rhs, dot, tol: float = 1e-10, max_iter: int = 500):
    """Batched CG for a self-adjoint PSD operator ``A`` in the inner product ``dot`` (keepdim reductions).

    Example:
        >>> import torch
        >>> M = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> x = conjugate_gradient(lambda u: u @ M, torch.tensor([1.0, 2.0], dtype=torch.float64),
        ...                        lambda u, v: (u * v).sum(-1, keepdim=True))
        >>> [round(float(v), 6) for v in x]
        [0.090909, 0.636364]
    """
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = dot(r, r)
    stop = (tol**2) * rs
    for _ in range(max_iter):
        if bool((rs <= stop).all()):
            break
        Ap = A(p)
        pAp = dot(p, Ap)
        alpha = torch.where(pAp > 0, rs / pAp.clamp_min(torch.finfo(rs.dtype).tiny), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = dot(r, r)
        p = r + torch.where(rs > 0, rs_new / rs.clamp_min(torch.finfo(rs.dtype).tiny), torch.zeros_like(rs)) * p
        rs = rs_new
    return x


def implicit_potential(geom, data, g_star: torch.Tensor, eps: float, tol: float = 1e-10, max_iter: int = 500):
    """``Phi(g_star)`` with a backward hook that turns ``dL/dg`` into the implicit-function adjoint ``w``.

    ``data`` supplies ``f_update``/``g_update`` (the two half steps), the target marginal ``mb`` (weights ``mb.w``), the event rank ``k`` and
    ``balanced`` (both marginals hard: the constant gauge).
    """
    g_req = g_star.detach().requires_grad_()
    with torch.enable_grad():
        f, _ = data.f_update(geom, g_req, eps)
        g_phi = data.g_update(geom, f, eps)
    if not g_phi.requires_grad:
        return g_phi
    b, k = data.mb.w.detach(), data.k
    balanced = data.balanced
    zero = (b <= 0).expand_as(g_phi)
    inv_b = torch.where(b > 0, 1.0 / b.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(b))

    inside = [False]  # the inner vjp passes through g_phi's own hook: let it through unchanged

    def jt(w):
        inside[0] = True
        try:
            (out,) = torch.autograd.grad(g_phi, g_req, w, retain_graph=True)
        finally:
            inside[0] = False
        return out

    def hook(v):
        if inside[0] or v is None:  # the inner vjp, or an undefined gradient
            return v
        vz = torch.where(zero, v, torch.zeros_like(v))
        rhs = torch.where(zero, torch.zeros_like(v), v + (jt(vz) if bool(zero.any()) else 0.0))
        if balanced:
            rhs = rhs - b * _esum(rhs, k) / _esum(b, k)
        A = lambda u: u - torch.where(zero, torch.zeros_like(u), jt(u))  # noqa: E731
        dot = lambda u, w: _esum(u * w * inv_b, k)  # noqa: E731
        return conjugate_gradient(A, rhs, dot, tol, max_iter) + vz

    g_phi.register_hook(hook)
    return g_phi
