"""Sliced Wasserstein distance: exact 1-D transport along random (or given) directions."""

from __future__ import annotations

import numbers

import torch

from ..._validation import (
    as_tensor,
    balance_masses,
    check_finite,
    check_p,
    check_points,
    check_weights,
    common_dtype_device,
)
from .one_d import _safe_root, _wasserstein_1d_pow, normalising_scale
from ...ops.broadcast import broadcast_shapes

__all__ = ["sliced_wasserstein", "max_sliced_wasserstein", "max_sliced_direction"]


def _directions(d: int, n_projections, seed, like: torch.Tensor) -> torch.Tensor:
    """``(d, L)`` directions uniform on the unit sphere (normalised Gaussians), on ``like``'s device."""
    n_projections = 64 if n_projections is None else n_projections
    if not isinstance(n_projections, numbers.Integral) or isinstance(n_projections, bool) or n_projections < 1:
        raise ValueError(f"n_projections: expected a positive integer, got {n_projections!r}")
    gen = None
    if seed is not None:
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
        gen = torch.Generator(device=like.device)
        gen.manual_seed(int(seed))
    theta = torch.randn(d, int(n_projections), generator=gen, dtype=like.dtype, device=like.device)
    return theta / theta.norm(dim=0, keepdim=True)


def _check_projections(projections, d: int, like: torch.Tensor) -> torch.Tensor:
    theta = as_tensor(projections, "projections", dtype=like.dtype, device=like.device)
    common_dtype_device(projections=theta, x=like)
    if theta.dim() != 2 or theta.shape[0] != d or theta.shape[1] == 0:
        raise ValueError(
            f"projections: expected a (d, L) matrix of directions with d = {d} and L >= 1, got shape "
            f"{tuple(theta.shape)}"
        )
    check_finite(theta, "projections")
    return theta


def sliced_wasserstein(
    x, y, a=None, b=None, p: float = 2, n_projections: int | None = None, seed: int | None = None, projections=None
) -> torch.Tensor:
    r"""Sliced Wasserstein distance between two weighted point clouds.

    .. math::

        SW_p(\mu, \nu) = \Big(\frac1L \sum_{l=1}^L W_p^p(\theta_l^\#\mu, \theta_l^\#\nu)\Big)^{1/p},
        \qquad \theta_l^\#\mu = \sum_i a_i \delta_{\langle \theta_l, x_i\rangle},

    a Monte-Carlo estimate of :math:`\big(\int_{S^{d-1}} W_p^p(\theta^\#\mu, \theta^\#\nu)\,d\sigma(\theta)\big)^{1/p}`
    with :math:`\theta_l` uniform on the sphere. All projections are one matrix product; the 1-D problems are
    solved exactly by sorting (:func:`monge.solvers.exact.one_d.wasserstein_1d`), batched over directions.

    Args:
        x: ``(..., n, d)`` points.
        y: ``(..., m, d)`` points.
        a: ``(..., n)`` nonnegative weights, or None for uniform :math:`1/n`.
        b: ``(..., m)`` nonnegative weights, or None for uniform; same total mass as ``a``.
        p: real exponent :math:`p \ge 1`.
        n_projections: number :math:`L` of random directions (``None``: 64).
        seed: int seeding a ``torch.Generator`` on the inputs' device (deterministic directions), or None to
            draw from torch's global generator.
        projections: optional ``(d, L)`` tensor of directions (columns), used as given (not normalised); then
            ``n_projections`` and ``seed`` must be left out (they would be ignored).
        Coordinates near the ends of the float range (1e300, 1e-300) are rescaled by a power of two first:
        :math:`SW_p` is 1-homogeneous, so the result is the representable value, not inf or 0.

    Returns:
        Tensor of the broadcast batch shape with :math:`SW_p`, dtype and device of ``x``; differentiable
        with respect to ``x, y, a, b`` (0 gradient, not NaN, at :math:`SW_p = 0`).

    Raises:
        TypeError: mixed dtypes, non-real ``p``, non-int ``seed``.
        ValueError: shapes (``x``/``y`` not ``(..., n, d)`` with equal ``d``, weights, ``projections`` not
            ``(d, L)``), NaN/inf, negative weights, masses differing, ``p < 1``, ``n_projections < 1``,
            ``n_projections`` or ``seed`` given together with ``projections``.

    Reference:
        Rabin, Peyré, Delon & Bernot, *Wasserstein barycenter and its application to texture mixing* (2011);
        Bonneel, Rabin, Peyré & Pfister, *Sliced and Radon Wasserstein barycenters of measures* (2015).

    Example:
        >>> import torch
        >>> x = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> round(float(sliced_wasserstein(x, x, seed=0)), 4)
        0.0
        >>> e1 = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
        >>> round(float(sliced_wasserstein(x, x + e1.T * 2.0, projections=e1)), 4)
        2.0
    """
    x, y, wa, wb, p = _validated_pair(x, y, a, b, p)
    d = x.shape[-1]
    if projections is None:
        theta = _directions(d, n_projections, seed, x)
    elif n_projections is not None or seed is not None:
        given = "n_projections" if n_projections is not None else "seed"
        raise ValueError(f"{given}: only for random directions and would be ignored with projections=...; drop "
                         f"{given} or projections")
    else:
        theta = _check_projections(projections, d, x)
    s = normalising_scale(x, y, p, event_dims=2)
    if s is not None:  # |<theta, x - y>|^p would overflow or underflow: SW_p(x, y) = s SW_p(x / s, y / s)
        return _sliced(x / s, y / s, wa, wb, a, b, theta, p) * s[..., 0, 0]
    return _sliced(x, y, wa, wb, a, b, theta, p)


def _sliced(x, y, wa, wb, a, b, theta, p) -> torch.Tensor:
    """SW_p on validated inputs, given the directions ``theta (d, L)``."""
    # (L, d) @ (..., d, n) -> (..., L, n): contiguous rows, one 1-D problem per direction
    xp = theta.mT @ x.mT
    yp = theta.mT @ y.mT
    wa = None if a is None else wa.unsqueeze(-2)
    wb = None if a is None and b is None else wb.unsqueeze(-2)
    try:
        wpp = _wasserstein_1d_pow(xp, yp, wa, wb, p)
    except RuntimeError as err:
        raise ValueError(
            f"x, y, a, b: leading batch dimensions must broadcast, got x {tuple(x.shape)}, y {tuple(y.shape)} ({err})"
        ) from None
    return _safe_root(wpp.mean(-1), p)


METHODS = ("ascent", "exact")


def _validated_pair(x, y, a, b, p):
    """Checked points ``x (..., n, d)``, ``y (..., m, d)``, weights (``b`` rescaled to ``a``'s mass) and ``p``."""
    p = check_p(p)
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    check_points(x, "x")
    check_points(y, "y")
    common_dtype_device(x=x, y=y)
    d, n, m = x.shape[-1], x.shape[-2], y.shape[-2]
    if y.shape[-1] != d:
        raise ValueError(f"y: expected points of shape (..., m, d) with d = {d} as in x, got {tuple(y.shape)}")
    wa = check_weights(a, "a", n, x, size_name="n")
    wb = check_weights(b, "b", m, x, size_name="m")
    if a is not None or b is not None:
        wb = balance_masses(wa, wb)
    return x, y, wa, wb, p


def _projected_pow(x, y, wa, wb, theta, p):
    """``W_p^p`` of the projections on directions ``theta (..., S, d)``: shape ``(..., S)``."""
    return _wasserstein_1d_pow(theta @ x.mT, theta @ y.mT, wa.unsqueeze(-2), wb.unsqueeze(-2), p)


def _ascent(x, y, wa, wb, theta, p, max_iter: int):
    r"""Riemannian ascent of :math:`W_p^p(\theta)` on the sphere from each start ``theta (..., S, d)``: normalised
    tangent steps of angle ``tau`` (accepted steps grow ``tau`` by 1.5, rejected ones halve it; the value never
    decreases). Returns the best direction per batch element, ``(..., d)``."""
    tau = theta.new_full(theta.shape[:-1], 0.5)
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        val = _projected_pow(x, y, wa, wb, th, p)
        (grad,) = torch.autograd.grad(val.sum(), th)
    val = val.detach()
    for _ in range(max_iter):
        tang = grad - (grad * theta).sum(-1, keepdim=True) * theta
        step = tang / tang.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        cand = theta + tau.unsqueeze(-1) * step
        cand = cand / cand.norm(dim=-1, keepdim=True)
        with torch.enable_grad():
            th = cand.requires_grad_(True)
            new = _projected_pow(x, y, wa, wb, th, p)
            (g_new,) = torch.autograd.grad(new.sum(), th)
        ok = new.detach() > val
        theta = torch.where(ok.unsqueeze(-1), cand.detach(), theta)
        grad = torch.where(ok.unsqueeze(-1), g_new, grad)
        val = torch.where(ok, new.detach(), val)
        tau = torch.where(ok, tau * 1.5, tau * 0.5).clamp_max(1.0)
        if bool((tau < 1e-7).all()):
            break
    best = val.argmax(-1, keepdim=True)
    return theta.gather(-2, best.unsqueeze(-1).expand(*best.shape, theta.shape[-1])).squeeze(-2)


def _exact_direction(x, y, wa, wb, p):
    r"""Closed forms: ``d = 1`` (the only direction); ``p = 2`` with one point on a side, where
    :math:`W_2^2(\theta) = \theta^\top M \theta`, :math:`M = \sum_i a_i (x_i - y)(x_i - y)^\top` (top eigenvector)."""
    d, n, m = x.shape[-1], x.shape[-2], y.shape[-2]
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], wa.shape[:-1], wb.shape[:-1])
    if d == 1:
        return x.new_ones((*batch, 1))
    if p != 2 or min(n, m) != 1:
        raise ValueError(f"method='exact': a closed-form top direction exists for d = 1, or p = 2 with one point on "
                         f"a side; got d = {d}, p = {p}, n = {n}, m = {m}; use method='ascent'")
    z, w = (x - y, wa) if m == 1 else (y - x, wb)
    M = (z * w.unsqueeze(-1)).mT @ z
    return torch.linalg.eigh(M.expand(*batch, d, d)).eigenvectors[..., -1]


def max_sliced_direction(x, y, a=None, b=None, p: float = 2, *, method: str = "ascent", n_projections: int = 64,
                         n_starts: int = 4, max_iter: int = 100, seed: int | None = None) -> torch.Tensor:
    r"""The direction :math:`\theta^\star` of :func:`max_sliced_wasserstein`, ``(..., d)`` unit vectors (detached).

    ``method="ascent"``: ``n_projections`` random directions and the mean difference are scored, the
    ``n_starts`` best are refined by Riemannian gradient ascent on the sphere (``max_iter`` steps), the best is
    kept: a local maximum at least as good as every candidate. ``method="exact"``: the closed form where there is
    one (``d = 1``; ``p = 2`` with one point on a side: the top eigenvector of the second-moment matrix of the
    differences), else ``ValueError``.

    Example:
        >>> import torch
        >>> x = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> th = max_sliced_direction(x, x * torch.tensor([1.0, 4.0, 1.0], dtype=torch.float64), seed=0)
        >>> round(abs(float(th[1])), 3)
        1.0
    """
    x, y, wa, wb, p = _validated_pair(x, y, a, b, p)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    x, y = x.detach(), y.detach()
    wa, wb = wa.detach(), wb.detach()
    if method == "exact":
        return _exact_direction(x, y, wa, wb, p)
    for name, v in (("n_starts", n_starts), ("max_iter", max_iter)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    s = normalising_scale(x, y, p, event_dims=2)
    if s is not None:
        x, y = x / s, y / s
    cand = _directions(x.shape[-1], n_projections, seed, x).mT  # (L, d)
    mean_diff = (wa.unsqueeze(-1) * x).sum(-2) / wa.sum(-1, keepdim=True) \
        - (wb.unsqueeze(-1) * y).sum(-2) / wb.sum(-1, keepdim=True)
    mean_diff = mean_diff / mean_diff.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], wa.shape[:-1], wb.shape[:-1])
    cand = torch.cat([cand.expand(*batch, *cand.shape), mean_diff.unsqueeze(-2).expand(*batch, 1, x.shape[-1])], -2)
    scores = _projected_pow(x, y, wa, wb, cand, p)
    top = scores.topk(min(n_starts, cand.shape[-2]), dim=-1).indices
    starts = cand.gather(-2, top.unsqueeze(-1).expand(*top.shape, x.shape[-1]))
    return _ascent(x, y, wa, wb, starts, p, max_iter)


def max_sliced_wasserstein(x, y, a=None, b=None, p: float = 2, **options) -> torch.Tensor:
    r"""Max-sliced Wasserstein distance: the largest 1-D :math:`W_p` over projection directions.

    .. math::
        \max\text{-}SW_p(\mu, \nu) = \max_{\theta \in S^{d-1}} W_p(\theta^\#\mu, \theta^\#\nu)
        \;\le\; W_p(\mu, \nu)

    (a projection is 1-Lipschitz). The direction is searched by :func:`max_sliced_direction` (``options``:
    ``method``, ``n_projections``, ``n_starts``, ``max_iter``, ``seed``); the value is the exact 1-D distance
    along it, differentiable w.r.t. ``x, y, a, b`` at the fixed optimal direction (Danskin's theorem; where the
    maximum sits on a kink of :math:`\theta \mapsto W_p`, a change of 1-D order, this is the gradient of the
    plan found there, one element of the generalised gradient). The
    ascent finds a local maximum: a lower bound of the true maximum, at least the best of the random candidates.

    Args:
        x: ``(..., n, d)`` points. y: ``(..., m, d)`` points. a, b: weights (``None``: uniform), equal masses.
        p: exponent, :math:`p \ge 1`.

    Returns:
        :math:`\max\text{-}SW_p`, the broadcast batch shape, dtype and device of ``x``.

    Reference:
        Deshpande et al., *Max-sliced Wasserstein distance and its use for GANs* (CVPR 2019).

    Example:
        >>> import torch
        >>> x = torch.randn(60, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        >>> shift = torch.tensor([3.0, 4.0], dtype=torch.float64)
        >>> round(float(max_sliced_wasserstein(x, x + shift, seed=0)), 4)   # the translation's length
        5.0
    """
    theta = max_sliced_direction(x, y, a, b, p, **options)
    x, y, wa, wb, p = _validated_pair(x, y, a, b, p)
    s = normalising_scale(x, y, p, event_dims=2)
    if s is not None:
        return _safe_root(_projected_pow(x / s, y / s, wa, wb, theta.unsqueeze(-2), p)[..., 0], p) * s[..., 0, 0]
    return _safe_root(_projected_pow(x, y, wa, wb, theta.unsqueeze(-2), p)[..., 0], p)
