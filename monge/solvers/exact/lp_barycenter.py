r"""The exact fixed-support Wasserstein barycenter as one linear program (scipy HiGHS), for small problems.

.. math::
    \min_{b \ge 0,\ P_k \ge 0} \sum_{k=1}^K \lambda_k \langle P_k, C\rangle
    \quad\text{s.t.}\quad P_k 1 = a_k,\quad P_k^\top 1 = b \qquad (k = 1, \dots, K)

``K n m + m`` variables and ``K (n + m)`` equality constraints in a sparse matrix: the reference that the entropic
barycenter's cost converges to as ``eps -> 0`` (Anderes, Borgwardt, Miller 2016; Cuturi and Doucet 2014).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import torch

from ..._validation import MASS_RTOL, as_tensor, check_cost_matrix, check_simplex, check_weights

__all__ = ["lp_barycenter", "LPBarycenterResult", "LP_MAX_VARIABLES"]

#: Refuse LPs with more variables than this (K n m + m): HiGHS takes minutes beyond.
LP_MAX_VARIABLES = 2_000_000


@dataclass(frozen=True)
class LPBarycenterResult:
    """The exact barycenter ``(m,)``, the optimal value :math:`\\sum_k \\lambda_k \\langle P_k, C\\rangle`, the
    optimal couplings ``(K, n, m)`` and the solver status (``"optimal"`` or HiGHS's message)."""

    barycenter: torch.Tensor
    value: torch.Tensor
    plans: torch.Tensor
    status: str


def lp_barycenter(hists, weights, C) -> LPBarycenterResult:
    r"""The exact (unregularised) fixed-support barycenter of K histograms, by one sparse LP (scipy HiGHS).

    .. math::
        \min_{b,\ P_k \ge 0} \sum_k \lambda_k \langle P_k, C\rangle, \quad P_k 1 = a_k,\ P_k^\top 1 = b

    Args:
        hists: ``(K, n)`` input histograms of equal mass (within :data:`monge._validation.MASS_RTOL`).
        weights: ``(K,)`` barycentric weights in the simplex (``None``: uniform).
        C: ``(n, m)`` cost between the inputs' support and the barycenter's.

    Returns:
        :class:`LPBarycenterResult`, tensors in the dtype and device of ``hists`` (solved in float64 on the CPU).
        An LP that HiGHS does not solve to optimality raises a ``RuntimeError`` naming its message.

    Example:
        >>> import torch
        >>> x = torch.linspace(0, 1, 5, dtype=torch.float64)
        >>> C = (x[:, None] - x[None]) ** 2
        >>> hists = torch.eye(5, dtype=torch.float64)[[0, 4]]   # Diracs at 0 and 1
        >>> res = lp_barycenter(hists, None, C)
        >>> res.barycenter.tolist(), round(float(res.value), 6)   # the midpoint, cost 0.5^2
        ([0.0, 0.0, 1.0, 0.0, 0.0], 0.25)
    """
    C = as_tensor(C, "C")
    check_cost_matrix(C, "C")
    if C.dim() != 2:
        raise ValueError(f"C: expected one (n, m) cost matrix (no batches), got shape {tuple(C.shape)}")
    n, m = C.shape
    hists = check_weights(as_tensor(hists, "hists", dtype=C.dtype, device=C.device), "hists", n, C, like_name="C")
    if hists.dim() != 2:
        raise ValueError(f"hists: expected (K, n) histograms with n = {n}, got shape {tuple(hists.shape)}")
    K = hists.shape[0]
    lam = check_simplex(weights, "weights", K, hists)
    if lam.dim() != 1:
        raise ValueError(f"weights: expected (K,) weights with K = {K}, got shape {tuple(lam.shape)}")
    if K * n * m + m > LP_MAX_VARIABLES:
        raise ValueError(f"hists, C: the LP has K n m + m = {K * n * m + m} variables (limit {LP_MAX_VARIABLES}); "
                         "use the entropic barycenter (monge.barycenter) for problems this large")
    A = hists.detach().cpu().double().numpy()
    mass = A.sum(1)
    if np.abs(mass - mass[0]).max() > MASS_RTOL[hists.dtype] * mass.max():
        raise ValueError(f"hists: the exact barycenter needs histograms of equal mass, got masses {mass.tolist()}")
    A = A / mass[:, None]  # unit masses (the LP is linear in them): tolerances act alike at any mass; scaled back
    lam64, C64 = lam.detach().cpu().double().numpy(), C.detach().cpu().double().numpy()
    # HiGHS's feasibility and optimality tolerances are absolute: solve on C / max|C| (a power of two, exact), so
    # that costs near 1e-300 or 1e300 are optimised as accurately as costs near 1; the value uses C itself
    scale = float(np.abs(C64).max())
    scale = 2.0 ** np.floor(np.log2(scale)) if scale > 0 else 1.0
    x, status = _solve(C64 / scale, A, lam64)
    x = x * mass[0]
    plans = x[: K * n * m].reshape(K, n, m)
    value = float((lam64[:, None, None] * plans * C64).sum())

    def to(v):
        return torch.as_tensor(v, dtype=hists.dtype, device=hists.device)

    return LPBarycenterResult(barycenter=to(x[K * n * m:]), value=to(value), plans=to(plans), status=status)


def _solve(C: np.ndarray, A: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, str]:
    """HiGHS on the sparse constraint matrix; returns the primal solution and the status."""
    K, n = A.shape
    m = C.shape[1]
    rows = sp.kron(sp.eye(n), np.ones((1, m)))  # (n, n m): sum_j P_ij
    cols = sp.kron(np.ones((1, n)), sp.eye(m))  # (m, n m): sum_i P_ij
    eye_k = sp.eye(K)
    top = sp.hstack([sp.kron(eye_k, rows), sp.csr_matrix((K * n, m))])
    bottom = sp.hstack([sp.kron(eye_k, cols), -sp.kron(np.ones((K, 1)), sp.eye(m))])
    A_eq = sp.vstack([top, bottom]).tocsr()
    b_eq = np.concatenate([A.reshape(-1), np.zeros(K * m)])
    c = np.concatenate([(lam[:, None, None] * C[None]).reshape(-1), np.zeros(m)])
    res = scipy.optimize.linprog(c, A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs",
                                 options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise RuntimeError(f"lp_barycenter: HiGHS did not solve the LP: {res.message}")
    return np.maximum(res.x, 0.0), "optimal"  # HiGHS may return -0.0 or -1e-17 for zero entries
