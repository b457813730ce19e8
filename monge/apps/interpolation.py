r"""Displacement (McCann) interpolation between two weighted point clouds, and its Gaussian closed form.

For an optimal plan :math:`P` between :math:`\mu_0 = \sum_i a_i \delta_{x_i}` and :math:`\mu_1 = \sum_j b_j
\delta_{y_j}` (squared Euclidean cost), the W_2 geodesic is

.. math::
    \mu_t = \sum_{ij} P_{ij}\, \delta_{(1-t) x_i + t y_j}, \qquad
    W_2(\mu_s, \mu_t) = |t - s|\, W_2(\mu_0, \mu_1),

with at most :math:`n + m - 1` atoms for an exact (basic) plan; with uniform weights and n = m that plan is a
permutation and :math:`\mu_t` is the push-forward of :math:`\mu_0` by :math:`(1-t)\,\mathrm{Id} + t\,T`.
"""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_points, common_dtype_device
from ..results import DisplacementInterpolation
from ..results.apps import as_times

__all__ = ["DisplacementInterpolation", "displacement_interpolation", "gaussian_geodesic"]

METHODS = ("exact", "sinkhorn")


def displacement_interpolation(x, y, a=None, b=None, *, method: str = "exact", eps: float | None = None,
                               **sinkhorn_kw) -> DisplacementInterpolation:
    r"""The displacement interpolation between ``(x, a)`` and ``(y, b)``; evaluate it with ``.at(t)``.

    .. math::
        \mu_t = \sum_{ij} P_{ij}\, \delta_{(1-t) x_i + t y_j}, \qquad t \in [0, 1]

    Args:
        x: ``(..., n, d)``, y: ``(..., m, d)`` points; a, b: weights (``None``: uniform), equal masses.
        method: ``"exact"`` (network simplex, the sparse optimal plan: at most n + m - 1 atoms; a W_2 geodesic)
            or ``"sinkhorn"`` (entropic plan at ``eps``; atoms ``x_i`` move to the barycentric projection, so
            :math:`\mu_1` is only approximated, with a shrunk spread).
        eps: entropic regularisation (cost units), for ``"sinkhorn"``. sinkhorn_kw: passed to the Sinkhorn solver.

    Returns:
        :class:`DisplacementInterpolation` with ``start``, ``end``, ``weights``; positions are differentiable
        w.r.t. ``x`` and ``y`` for the fixed plan.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]]); y = torch.tensor([[1.0, 2.0], [0.0, 2.0]])
        >>> interp = displacement_interpolation(x, y)
        >>> interp.at(0.5).tolist(), interp.weights.tolist()
        ([[0.0, 1.0], [1.0, 1.0]], [0.5, 0.5])
        >>> interp.at([0.0, 1.0]).shape
        torch.Size([2, 2, 2])
    """
    from ..api import solve_points
    from ..geometry.pointcloud import PointCloud
    from ..problems.linear import LinearProblem

    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    check_points(x, "x")
    check_points(y, "y")
    common_dtype_device(x=x, y=y)
    if method == "sinkhorn":
        if eps is None:
            raise ValueError("eps: method='sinkhorn' needs eps (entropic regularisation in cost units), got None")
        res = solve_points(x, y, a, b, eps=eps, **sinkhorn_kw)
        T = res.transport()
        start = x.expand(*T.shape[:-2], *x.shape[-2:])
        return DisplacementInterpolation(start, T, res.problem.a.expand(T.shape[:-1]), method)
    if eps is not None or sinkhorn_kw:
        given = ", ".join((["eps"] if eps is not None else []) + list(sinkhorn_kw))
        raise ValueError(f"{given}: only for method='sinkhorn'; the exact plan has no regularisation")
    # validated in the input dtype, solved in float64: the network simplex runs in float64 anyway and rejects
    # float32 mass rounding (~1e-8 relative)
    prob = LinearProblem(PointCloud(x, y), a, b)
    a64, b64 = prob.a.detach().double(), prob.b.detach().double()
    b64 = b64 * (a64.sum(-1) / b64.sum(-1))[..., None]
    res = solve_points(x.detach().double(), y.detach().double(), a64, b64)
    return _from_sparse(x, y, res.rows, res.cols, res.vals.to(x.dtype))


def _from_sparse(x, y, rows, cols, vals) -> DisplacementInterpolation:
    """Atoms of the plan's nonzeros sorted by (i, j), padded to the batch's largest support (weight 0)."""
    batch = rows.shape[:-1]
    pos = vals > 0
    K = max(1, int(pos.sum(-1).max()))
    n, m = x.shape[-2], y.shape[-2]
    key = torch.where(pos, rows * m + cols, n * m)
    order = torch.sort(key, dim=-1, stable=True).indices[..., :K]
    rows, cols, vals = rows.gather(-1, order), cols.gather(-1, order), vals.gather(-1, order)
    d = x.shape[-1]
    xb, yb = x.expand(*batch, *x.shape[-2:]), y.expand(*batch, *y.shape[-2:])
    start = xb.gather(-2, rows[..., None].expand(*rows.shape, d))
    end = yb.gather(-2, cols[..., None].expand(*cols.shape, d))
    return DisplacementInterpolation(start, end, vals, "exact")


def _sqrtm(S: torch.Tensor) -> torch.Tensor:
    w, V = torch.linalg.eigh(S)
    return (V * w.clamp_min(0).sqrt().unsqueeze(-2)) @ V.transpose(-1, -2)


def gaussian_geodesic(m0, S0, m1, S1, t) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and covariance of the W_2 geodesic between :math:`N(m_0, S_0)` and :math:`N(m_1, S_1)`.

    .. math::
        m_t = (1-t) m_0 + t m_1, \quad S_t = A_t S_0 A_t, \quad A_t = (1-t) I + t\,T, \quad
        T = S_0^{-1/2} (S_0^{1/2} S_1 S_0^{1/2})^{1/2} S_0^{-1/2}

    (:math:`T` is the optimal linear map; ``S0`` must be positive definite). Times: a number or ``(T,)``.

    Example:
        >>> import torch
        >>> m, S = gaussian_geodesic(torch.zeros(2), torch.eye(2), torch.ones(2), 9 * torch.eye(2), 0.5)
        >>> m.tolist(), S.diagonal().tolist()
        ([0.5, 0.5], [4.0, 4.0])
    """
    m0, S0, m1, S1 = (as_tensor(v, n) for v, n in ((m0, "m0"), (S0, "S0"), (m1, "m1"), (S1, "S1")))
    common_dtype_device(m0=m0, S0=S0, m1=m1, S1=S1)
    d = m0.shape[-1]
    for name, S in (("S0", S0), ("S1", S1)):
        if S.shape[-2:] != (d, d):
            raise ValueError(f"{name}: expected a covariance of shape ({d}, {d}), got shape {tuple(S.shape)}")
    r0 = _sqrtm(S0)
    r0_inv = torch.linalg.inv(r0)
    T = r0_inv @ _sqrtm(r0 @ S1 @ r0) @ r0_inv
    tt = as_times(t, m0)
    eye = torch.eye(d, dtype=m0.dtype, device=m0.device)
    A = (1 - tt)[..., None, None] * eye + tt[..., None, None] * T
    return (1 - tt)[..., None] * m0 + tt[..., None] * m1, A @ S0 @ A.transpose(-1, -2)
