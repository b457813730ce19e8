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

__all__ = ["sliced_wasserstein"]


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
