r"""Optimal transport between Gaussians in closed form: the Bures-Wasserstein distance, the Monge map, the
geodesic and the barycenter, and their plug-in estimates from samples.

For :math:`\alpha = N(m_0, S_0)`, :math:`\beta = N(m_1, S_1)` and the cost :math:`\|x - y\|^2`,

.. math::
    W_2^2(\alpha, \beta) = \|m_0 - m_1\|^2 + \operatorname{tr}\big(S_0 + S_1
        - 2 (S_0^{1/2} S_1 S_0^{1/2})^{1/2}\big),
    \qquad T(x) = m_1 + A (x - m_0),\quad A = S_0^{-1/2} (S_0^{1/2} S_1 S_0^{1/2})^{1/2} S_0^{-1/2}.

The trace term is the squared Bures distance between covariances (Dowson & Landau 1982; Givens & Shortt 1984;
Takatsu 2011). Matrix square roots use the symmetric eigendecomposition with a custom backward (the Sylvester
equation :math:`X\,dX + dX\,X = dS` solved in the eigenbasis), so gradients stay finite at repeated eigenvalues
(identity covariances), where the generic ``eigh`` backward divides by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import as_tensor, check_points, check_weights, common_dtype_device
from ..results import Convergence
from .interpolation import gaussian_geodesic

__all__ = ["sqrtm_psd", "bures_wasserstein", "GaussianMap", "gaussian_map", "gaussian_geodesic",
           "GaussianBarycenter", "gaussian_barycenter", "gaussian_fit", "bures_wasserstein_samples"]


class _SqrtmPSD(torch.autograd.Function):
    """X = S^{1/2} for symmetric PSD S; backward solves X dX + dX X = dS: dX = V [(V^T G V) / (s_i + s_j)] V^T."""

    @staticmethod
    def forward(ctx, S):
        w, V = torch.linalg.eigh(S)
        s = w.clamp_min(0).sqrt()
        ctx.save_for_backward(s, V)
        return (V * s.unsqueeze(-2)) @ V.transpose(-1, -2)

    @staticmethod
    def backward(ctx, G):
        s, V = ctx.saved_tensors
        Vt = V.transpose(-1, -2)
        Gs = 0.5 * (G + G.transpose(-1, -2))
        denom = s.unsqueeze(-1) + s.unsqueeze(-2)
        tiny = torch.finfo(s.dtype).tiny
        inner = torch.where(denom > 0, (Vt @ Gs @ V) / denom.clamp_min(tiny), torch.zeros_like(denom))
        return V @ inner @ Vt


def sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    r"""The symmetric square root :math:`S^{1/2}` of symmetric PSD matrices ``(..., d, d)`` (negative eigenvalues
    from rounding are clipped to 0); differentiable, with finite gradients at repeated eigenvalues.

    Example:
        >>> import torch
        >>> sqrtm_psd(torch.tensor([[4.0, 0.0], [0.0, 9.0]])).diagonal().tolist()
        [2.0, 3.0]
    """
    return _SqrtmPSD.apply(S)


def _check(m, S, name_m: str, name_S: str):
    m, S = as_tensor(m, name_m), as_tensor(S, name_S)
    common_dtype_device(**{name_m: m, name_S: S})
    if m.dim() < 1 or m.shape[-1] == 0:
        raise ValueError(f"{name_m}: expected a mean of shape (..., d), got shape {tuple(m.shape)}")
    d = m.shape[-1]
    if S.dim() < 2 or S.shape[-2:] != (d, d):
        raise ValueError(f"{name_S}: expected a covariance of shape (..., {d}, {d}) (d from {name_m}), got shape "
                         f"{tuple(S.shape)}")
    return m, S


def _checked_pair(m0, S0, m1, S1):
    m0, S0 = _check(m0, S0, "m0", "S0")
    m1, S1 = _check(m1, S1, "m1", "S1")
    common_dtype_device(m0=m0, m1=m1)
    if m1.shape[-1] != m0.shape[-1]:
        raise ValueError(f"m1: expected dimension d = {m0.shape[-1]} as m0, got shape {tuple(m1.shape)}")
    return m0, S0, m1, S1


def bures_wasserstein(m0, S0, m1, S1, *, squared: bool = False) -> torch.Tensor:
    r""":math:`W_2` (or :math:`W_2^2` with ``squared=True``) between :math:`N(m_0, S_0)` and :math:`N(m_1, S_1)`.

    .. math::
        W_2^2 = \|m_0 - m_1\|^2 + \operatorname{tr} S_0 + \operatorname{tr} S_1
            - 2 \operatorname{tr}(S_0^{1/2} S_1 S_0^{1/2})^{1/2}

    Args:
        m0, m1: means ``(..., d)``; S0, S1: symmetric PSD covariances ``(..., d, d)``; batch dims broadcast.
        squared: return :math:`W_2^2` (smooth everywhere) instead of :math:`W_2` (zero gradient at 0, not NaN).

    Returns:
        a tensor of the broadcast batch shape, differentiable w.r.t. all four inputs.

    Example:
        >>> import torch
        >>> float(bures_wasserstein(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2)))  # sqrt(2 + 2)
        2.0
    """
    from ..api import safe_root

    m0, S0, m1, S1 = _checked_pair(m0, S0, m1, S1)
    r0 = sqrtm_psd(S0)
    cross = sqrtm_psd(r0 @ S1 @ r0).diagonal(dim1=-2, dim2=-1).sum(-1)
    tr = S0.diagonal(dim1=-2, dim2=-1).sum(-1) + S1.diagonal(dim1=-2, dim2=-1).sum(-1)
    w2 = (((m0 - m1) ** 2).sum(-1) + tr - 2 * cross).clamp_min(0)
    return w2 if squared else safe_root(w2, 2.0)


def _map_matrix(S0, S1):
    r0 = sqrtm_psd(S0)
    w, V = torch.linalg.eigh(S0)
    if bool((w[..., 0] <= 0).any()):
        raise ValueError("S0: the Monge map needs a positive definite source covariance; got a singular S0 "
                         "(add a small ridge: S0 + 1e-6 * I)")
    r0_inv = (V * w.rsqrt().unsqueeze(-2)) @ V.transpose(-1, -2)
    A = r0_inv @ sqrtm_psd(r0 @ S1 @ r0) @ r0_inv
    return 0.5 * (A + A.transpose(-1, -2))


@dataclass(frozen=True)
class GaussianMap:
    r"""The affine Monge map :math:`T(x) = m_1 + A (x - m_0)` between two Gaussians (``A`` symmetric PD).

    Attributes:
        A: ``(..., d, d)``; m0, m1: ``(..., d)``. Call it on points ``(..., n, d)``; ``inverse`` maps back.
    """

    A: torch.Tensor
    m0: torch.Tensor
    m1: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.m1.unsqueeze(-2) + (x - self.m0.unsqueeze(-2)) @ self.A.transpose(-1, -2)

    @property
    def inverse(self) -> "GaussianMap":
        """The map from the target back to the source (:math:`A^{-1}`, the optimal map in that direction)."""
        return GaussianMap(torch.linalg.inv(self.A), self.m1, self.m0)


def gaussian_map(m0, S0, m1, S1) -> GaussianMap:
    r"""The optimal (Monge) map from :math:`N(m_0, S_0)` to :math:`N(m_1, S_1)` for the squared Euclidean cost.

    .. math::
        T(x) = m_1 + A (x - m_0), \qquad A = S_0^{-1/2} (S_0^{1/2} S_1 S_0^{1/2})^{1/2} S_0^{-1/2},

    the gradient of a convex quadratic with :math:`A S_0 A = S_1` (``S0`` must be positive definite).

    Example:
        >>> import torch
        >>> T = gaussian_map(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2))
        >>> T(torch.tensor([[1.0, 0.0]])).tolist()
        [[3.0, 1.0]]
    """
    m0, S0, m1, S1 = _checked_pair(m0, S0, m1, S1)
    return GaussianMap(_map_matrix(S0, S1), m0, m1)


@dataclass(frozen=True)
class GaussianBarycenter:
    """The W_2 barycenter :math:`N(m, S)` of Gaussians, with how its fixed-point iteration ended."""

    mean: torch.Tensor
    cov: torch.Tensor
    convergence: Convergence


def _bary_step(S, covs, w):
    r = sqrtm_psd(S)
    inner = (w[..., None, None] * sqrtm_psd(r.unsqueeze(-3) @ covs @ r.unsqueeze(-3))).sum(-3)
    ev, V = torch.linalg.eigh(S)
    r_inv = (V * ev.clamp_min(torch.finfo(S.dtype).tiny).rsqrt().unsqueeze(-2)) @ V.transpose(-1, -2)
    new = r_inv @ inner @ inner @ r_inv
    return 0.5 * (new + new.transpose(-1, -2))


def _bary_residual(S, covs, w):
    """|sum_k w_k T_k - I|_F: the barycenter's stationarity condition (T_k the maps from N(0, S) to N(0, S_k))."""
    d = S.shape[-1]
    T = (w[..., None, None] * _map_matrix(S.unsqueeze(-3).expand_as(covs), covs)).sum(-3)
    return torch.linalg.matrix_norm(T - torch.eye(d, dtype=S.dtype, device=S.device))


def gaussian_barycenter(means, covs, weights=None, *, tol: float = 1e-8, max_iter: int = 200,
                        init=None) -> GaussianBarycenter:
    r"""The W_2 barycenter of Gaussians :math:`N(m_k, S_k)`: mean :math:`\sum_k w_k m_k`, covariance the fixed
    point of (Alvarez-Esteban, del Barrio, Cuesta-Albertos & Matrán 2016)

    .. math::
        S \leftarrow S^{-1/2} \Big(\sum_k w_k (S^{1/2} S_k S^{1/2})^{1/2}\Big)^2 S^{-1/2},

    which converges to the unique solution of :math:`S = \sum_k w_k (S^{1/2} S_k S^{1/2})^{1/2}` when the
    :math:`S_k` are positive definite. The error is :math:`\|\sum_k w_k T_k - I\|_F` (the stationarity
    condition, :math:`T_k` the Monge maps from the barycenter), measured at the returned covariance.

    Args:
        means: ``(..., K, d)``; covs: ``(..., K, d, d)`` positive definite; weights: ``(..., K)`` on the simplex
            (``None``: uniform). tol: on the error above; max_iter: iteration cap. init: ``(..., d, d)``
            (default: the weighted mean of the covariances).

    Returns:
        :class:`GaussianBarycenter` with ``mean (..., d)``, ``cov (..., d, d)``, ``convergence``.

    Example:
        >>> import torch
        >>> covs = torch.stack([torch.eye(2, dtype=torch.float64), 9 * torch.eye(2, dtype=torch.float64)])
        >>> bar = gaussian_barycenter(torch.zeros(2, 2, dtype=torch.float64), covs)
        >>> [round(v, 6) for v in bar.cov.diagonal().tolist()], bar.convergence.all_converged  # ((1 + 3) / 2)^2
        ([4.0, 4.0], True)
    """
    means, covs = _check(means, covs, "means", "covs")
    if means.dim() < 2:
        raise ValueError(f"means: expected (..., K, d) (K Gaussians), got shape {tuple(means.shape)}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive int, got {max_iter!r}")
    w = check_weights(weights, "weights", means.shape[-2], means, size_name="K")
    w = w / w.sum(-1, keepdim=True)
    S = (w[..., None, None] * covs).sum(-3) if init is None else as_tensor(init, "init")
    trace = []
    for it in range(1, max_iter + 1):
        S = _bary_step(S, covs, w)
        trace.append(_bary_residual(S, covs, w).detach())
        if bool((trace[-1] <= tol).all()) or not bool(torch.isfinite(trace[-1]).all()):
            break
    conv = Convergence.build(trace[-1], tol, it, criterion="stationarity_fro", errors=torch.stack(trace))
    return GaussianBarycenter((w.unsqueeze(-1) * means).sum(-2), S, conv)


def gaussian_fit(x, a=None, *, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Weighted mean and covariance of samples ``x (..., n, d)`` (plug-in, normalised by the total weight).

    .. math:: m = \sum_i a_i x_i, \qquad S = \sum_i a_i (x_i - m)(x_i - m)^\top + \text{ridge}\cdot I

    Example:
        >>> import torch
        >>> m, S = gaussian_fit(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
        >>> m.tolist(), S.tolist()
        ([1.0, 0.0], [[1.0, 0.0], [0.0, 0.0]])
    """
    x = as_tensor(x, "x")
    check_points(x, "x")
    a = check_weights(a, "a", x.shape[-2], x)
    a = a / a.sum(-1, keepdim=True)
    m = (a.unsqueeze(-1) * x).sum(-2)
    xc = x - m.unsqueeze(-2)
    S = (a.unsqueeze(-1) * xc).transpose(-1, -2) @ xc
    if ridge:
        S = S + ridge * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return m, 0.5 * (S + S.transpose(-1, -2))


def bures_wasserstein_samples(x, y, a=None, b=None, *, squared: bool = False) -> torch.Tensor:
    r"""The Bures-Wasserstein distance between the Gaussians fitted to two samples (:func:`gaussian_fit`).

    A lower bound on :math:`W_2` between the samples' laws with the same means and covariances (Gelbrich's
    bound), equal to it for Gaussian laws; converges at the parametric rate :math:`n^{-1/2}` in any dimension.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> float(bures_wasserstein_samples(x, x + 3.0, squared=True))  # a translation by (3, 3)
        18.0
    """
    m0, S0 = gaussian_fit(x, a)
    m1, S1 = gaussian_fit(y, b)
    return bures_wasserstein(m0, S0, m1, S1, squared=squared)
