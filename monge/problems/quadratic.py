r"""The quadratic (Gromov-Wasserstein) OT problem: two intra-domain costs, two marginals, an optional fused term.

.. math::
    \min_{P \in \Pi(a, b)} (1 - \alpha) \langle M, P\rangle
        + \alpha \sum_{i,j,k,l} L(C^x_{ik}, C^y_{jl}) P_{ij} P_{kl}

Every loss used here splits as :math:`L(s, t) = f_1(s) + f_2(t) - h_1(s) h_2(t)`, so that for a plan with
marginals ``p = P 1`` and ``q = P^T 1``

.. math::
    (L \otimes P)_{ij} = (f_1(C^x) p)_i + (f_2(C^y) q)_j - (h_1(C^x) P h_2(C^y)^\top)_{ij}

costs two matrix products instead of a 4-index sum (Peyre, Cuturi and Solomon, 2016). For point clouds with the
squared Euclidean cost, :math:`C^x = U V^\top` has rank ``d + 2`` and nothing of size ``n x n`` is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validation import as_tensor, balance_masses, check_cost_matrix, check_positive, check_weights
from ..geometry.base import Geometry
from ..geometry.pointcloud import PointCloud

__all__ = ["QuadraticProblem", "LowRank", "LOSSES", "check_square_symmetric"]

#: The losses :math:`L(s, t)`: ``"sqeuclidean"`` :math:`(s - t)^2`; ``"kl"`` :math:`s \log(s/t) - s + t`
#: (positive similarities: needs :math:`C^x \ge 0`, :math:`C^y > 0`).
LOSSES = ("sqeuclidean", "kl")


@dataclass(frozen=True)
class LowRank:
    r"""A matrix held as factors, :math:`H = U V^\top` with ``U, V (n, r)``; never materialised by the solvers."""

    U: torch.Tensor
    V: torch.Tensor

    def matrix(self) -> torch.Tensor:
        return self.U @ self.V.mT

    def scaled(self, s: float) -> "LowRank":
        return LowRank(self.U * s, self.V)

    def map(self, fn) -> "LowRank":
        return LowRank(fn(self.U), fn(self.V))


def khatri_rao(U: torch.Tensor) -> torch.Tensor:
    """Row-wise Kronecker product ``(n, r) -> (n, r*r)``: the factor of the entrywise square of ``U V^T``."""
    return (U.unsqueeze(-1) * U.unsqueeze(-2)).reshape(U.shape[0], -1)


def _bmm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B`` by one batched kernel whatever the batch (a plain matrix is a batch of one): torch multiplies small
    2-D operands (BLAS) and batched ones (its own loop) with different roundings, and a batch's element must equal
    its single problem bitwise (the same linearised cost, hence the same Sinkhorn steps)."""
    batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    A3 = A.expand(*batch, *A.shape[-2:]).reshape(-1, *A.shape[-2:])
    B3 = B.expand(*batch, *B.shape[-2:]).reshape(-1, *B.shape[-2:])
    return torch.bmm(A3, B3).reshape(*batch, A.shape[-2], B.shape[-1])


def cross(Hx, P: torch.Tensor, Hy) -> torch.Tensor:
    r""":math:`H_x P H_y^\top` for dense or :class:`LowRank` factors (O(n m r) when both are low rank); each
    element of a batch bitwise equal to its own 2-D product."""
    if isinstance(Hx, LowRank) and isinstance(Hy, LowRank):
        core = _bmm(_bmm(Hx.V.mT, P), Hy.V)  # (rx, ry)
        return _bmm(Hx.U, _bmm(core, Hy.U.mT))
    left = _bmm(Hx.U, _bmm(Hx.V.mT, P)) if isinstance(Hx, LowRank) else _bmm(Hx, P)
    return _bmm(_bmm(left, Hy.V), Hy.U.mT) if isinstance(Hy, LowRank) else _bmm(left, Hy.mT)


@dataclass(frozen=True)
class Side:
    r"""One domain's part of the loss: ``fvec(p) = f(C) p`` and the matrix ``H = h(C)`` (dense or low rank)."""

    H: object
    F: object  # f(C): dense tensor or LowRank

    def fvec(self, p: torch.Tensor) -> torch.Tensor:
        return _matvec(self.F, p)

    def hvec(self, p: torch.Tensor) -> torch.Tensor:
        return _matvec(self.H, p)


def _matvec(H, p: torch.Tensor) -> torch.Tensor:
    return H.U @ (H.V.mT @ p) if isinstance(H, LowRank) else H @ p


def _intra(geom, name: str, loss: str):
    """(dense cost or LowRank, size) of an intra-domain input; validated (square, symmetric, finite)."""
    if isinstance(geom, PointCloud):
        n, m = geom.shape
        if not geom.symmetric:
            raise ValueError(f"{name}: expected an intra-domain geometry PointCloud(x) (y=None), got a PointCloud "
                             f"between two different clouds of {n} and {m} points")
        if len(geom.batch_shape):
            raise ValueError(f"{name}: expected points of shape (n, d) (a batch: pass tensors (B, n, d) to "
                             f"monge.gromov_wasserstein), got a batch of shape {tuple(geom.batch_shape)}")
        factors = geom.cost_factors() if loss == "sqeuclidean" else None  # s |x - y|^2 = U V^T (the geometry's)
        if factors is not None:
            return LowRank(*factors), n
        C = geom.cost()
    elif isinstance(geom, Geometry):
        C = geom.cost()
    else:
        C = as_tensor(geom, name)
        check_cost_matrix(C, name)
    check_square_symmetric(C, name)
    return C, C.shape[-1]


def check_square_symmetric(C: torch.Tensor, name: str) -> None:
    if C.dim() != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"{name}: expected a square intra-domain cost of shape (n, n) (a batch: pass tensors "
                         f"(B, n, n) to monge.gromov_wasserstein), got shape {tuple(C.shape)}")
    Cd = C.detach()
    asym = float((Cd - Cd.mT).abs().max())
    tol = 100 * torch.finfo(C.dtype).eps * max(float(Cd.abs().max()), 1e-300)
    if asym > tol:
        raise ValueError(f"{name}: expected a symmetric cost (C = C^T; the GW gradient identities assume it), got "
                         f"max |C - C^T| = {asym:.3g}; symmetrise it with (C + C.mT) / 2")


def _loss_sides(Cx, Cy, loss: str) -> tuple[Side, Side]:
    """The splitting :math:`L(s, t) = f_1(s) + f_2(t) - h_1(s) h_2(t)` applied to both costs."""
    if loss == "sqeuclidean":
        sq = lambda C: LowRank(khatri_rao(C.U), khatri_rao(C.V)) if isinstance(C, LowRank) else C * C  # noqa: E731
        return Side(Cx, sq(Cx)), Side(Cy.scaled(2.0) if isinstance(Cy, LowRank) else 2.0 * Cy, sq(Cy))
    Cx = Cx.matrix() if isinstance(Cx, LowRank) else Cx
    Cy = Cy.matrix() if isinstance(Cy, LowRank) else Cy
    return Side(Cx, torch.xlogy(Cx, Cx) - Cx), Side(torch.log(Cy), Cy)


def _check_kl(Cx, Cy) -> None:
    for name, C, strict in (("geom_xx", Cx, False), ("geom_yy", Cy, True)):
        C = C.matrix() if isinstance(C, LowRank) else C
        low = float(C.detach().min())
        if low < 0 or (strict and low <= 0):
            need = "positive" if strict else "nonnegative"
            raise ValueError(f"{name}: loss='kl' needs {need} intra-domain costs (similarities), found a minimum "
                             f"of {low:.3g}; use loss='sqeuclidean' or shift the costs")


@dataclass(frozen=True, init=False)
class QuadraticProblem:
    r"""Data of a (fused) Gromov-Wasserstein problem, validated once.

    .. math::
        \min_{P \in \Pi(a, b)} (1 - \alpha) \langle M, P\rangle
            + \alpha \sum_{i,j,k,l} L(C^x_{ik}, C^y_{jl}) P_{ij} P_{kl}

    Args:
        geom_xx: the source's intra-domain cost ``Cx (n, n)``: a tensor, a :class:`~monge.geometry.DenseCost`, or a
            :class:`~monge.geometry.PointCloud` ``PointCloud(x)`` (``x (n, d)``; the squared Euclidean cost is
            held in low rank ``d + 2`` for the square loss, others are materialised). Square, symmetric, finite.
        geom_yy: the target's intra-domain cost ``Cy (m, m)``, likewise.
        a: source weights ``(n,)``, nonnegative; ``None`` = uniform. b: target weights ``(m,)``.
        geom_xy: the fused (feature) cost ``M (n, m)`` between the two domains (tensor or geometry); ``None`` = pure GW.
        alpha: weight of the structure term in ``[0, 1]``; ``None`` = 1 without ``geom_xy``, 0.5 with it.
        loss: ``"sqeuclidean"`` :math:`L(s, t) = (s - t)^2` or ``"kl"`` :math:`s \log(s/t) - s + t`.
        rho_a, rho_b: KL marginal penalties (``None`` = hard constraint; one side alone is allowed): solved by
            :class:`~monge.solvers.gromov.EntropicGromovWasserstein`, rejected by the exact solver.

    Raises:
        ValueError: a non-square or asymmetric cost, NaN/inf, sizes that do not match ``a``/``b``/``M``, negative
            weights, ``alpha`` outside ``[0, 1]``, an unknown loss, non-positive costs for ``loss="kl"``.

    Example:
        >>> import torch
        >>> x, y = torch.rand(5, 2, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
        >>> prob = QuadraticProblem(PointCloud(x), PointCloud(y))
        >>> prob.shape, prob.alpha, prob.is_low_rank
        ((5, 4), 1.0, True)
    """

    geom_xx: object
    geom_yy: object
    a: torch.Tensor
    b: torch.Tensor
    geom_xy: object
    alpha: float
    loss: str
    rho_a: float | None
    rho_b: float | None

    def __init__(self, geom_xx, geom_yy, a=None, b=None, *, geom_xy=None, alpha=None, loss="sqeuclidean",
                 rho_a=None, rho_b=None):
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        Cx, n = _intra(geom_xx, "geom_xx", loss)
        Cy, m = _intra(geom_yy, "geom_yy", loss)
        like = Cx.U if isinstance(Cx, LowRank) else Cx
        other = Cy.U if isinstance(Cy, LowRank) else Cy
        if other.dtype != like.dtype or other.device != like.device:
            raise TypeError(f"geom_yy has dtype {other.dtype} on {other.device} but geom_xx has dtype {like.dtype} "
                            f"on {like.device}; use one dtype and device for all inputs")
        if loss == "kl":
            _check_kl(Cx, Cy)
        M = _fused(geom_xy, n, m, like)
        alpha = _alpha(alpha, M is not None)
        same = a is b and n == m
        a = check_weights(a, "a", n, like, size_name="n")
        b = a if same else check_weights(b, "b", m, like, size_name="m")
        if a.dim() != 1 or b.dim() != 1:
            raise ValueError(f"a, b: expected weights of shape (n,), (m,) (a batch: pass tensors (B, n) to "
                             f"monge.gromov_wasserstein), got {tuple(a.shape)} and {tuple(b.shape)}")
        check_positive(rho_a, "rho_a", allow_none=True)
        check_positive(rho_b, "rho_b", allow_none=True)
        if rho_a is None and rho_b is None and not same:
            b = balance_masses(a, b)
        for k, v in (("geom_xx", Cx), ("geom_yy", Cy), ("a", a), ("b", b), ("geom_xy", M), ("alpha", alpha),
                     ("loss", loss), ("rho_a", rho_a), ("rho_b", rho_b)):
            object.__setattr__(self, k, v)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.a.shape[-1], self.b.shape[-1])

    @property
    def is_balanced(self) -> bool:
        return self.rho_a is None and self.rho_b is None

    @property
    def is_low_rank(self) -> bool:
        """Both intra-domain costs held as factors (no ``n x n`` matrix anywhere)."""
        return isinstance(self.geom_xx, LowRank) and isinstance(self.geom_yy, LowRank)

    @property
    def M(self) -> torch.Tensor | None:
        """The fused cost ``(n, m)`` (``None`` for pure GW)."""
        return self.geom_xy

    def sides(self, detach: bool = False, dtype=None) -> tuple[Side, Side]:
        """The loss splitting on both costs (detached / converted for the solvers' loops)."""
        Cx, Cy = self.geom_xx, self.geom_yy
        if detach or dtype is not None:
            conv = lambda t: (t.detach() if detach else t).to(dtype or t.dtype)  # noqa: E731
            Cx = Cx.map(conv) if isinstance(Cx, LowRank) else conv(Cx)
            Cy = Cy.map(conv) if isinstance(Cy, LowRank) else conv(Cy)
        return _loss_sides(Cx, Cy, self.loss)

    def cost_scale(self) -> float:
        """An upper bound of the loss entries and of ``|M|``: the scale of the objective for unit mass."""
        sx, sy = _max_abs(self.geom_xx), _max_abs(self.geom_yy)
        s = sx * sx + sy * sy if self.loss == "sqeuclidean" else sx * (1 + abs(math.log(max(sx, 1e-300)))) + sy
        m = float(self.geom_xy.detach().abs().max()) if self.geom_xy is not None else 0.0
        return max(s, m, 1e-300)


def _max_abs(C) -> float:
    """``max |C|``; for squared-Euclidean factors ``U = s [|x|^2, 1, -2x]`` the bound ``4 |s| max |x_i|^2`` (points
    centred)."""
    if isinstance(C, LowRank):
        return 4.0 * float(C.U[:, 0].detach().abs().max())
    return float(C.detach().abs().max())


def _fused(geom_xy, n: int, m: int, like: torch.Tensor):
    if geom_xy is None:
        return None
    M = geom_xy.cost() if isinstance(geom_xy, Geometry) else as_tensor(geom_xy, "geom_xy")
    check_cost_matrix(M, "geom_xy")
    if tuple(M.shape) != (n, m):
        raise ValueError(f"geom_xy: expected the fused cost M of shape (n, m) = ({n}, {m}), got shape {tuple(M.shape)}")
    if M.dtype != like.dtype or M.device != like.device:
        raise TypeError(f"geom_xy has dtype {M.dtype} on {M.device} but the intra-domain costs have dtype {like.dtype} "
                        f"on {like.device}; use one dtype and device for all inputs")
    return M


def _alpha(alpha, fused: bool) -> float:
    if alpha is None:
        return 0.5 if fused else 1.0
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1] (the weight of the structure term), got {alpha!r}")
    if not fused and float(alpha) != 1.0:
        raise ValueError(f"alpha: {alpha} weighs a fused term, but geom_xy is None; pass geom_xy=M (n, m) or "
                         "alpha=None")
    return float(alpha)

