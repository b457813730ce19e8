r"""Damped Newton for semi-discrete OT in 2-D (Kitagawa, Merigot and Thibert, 2019).

Solve :math:`G(\psi) = b` with :math:`G_j(\psi) = \mu(\mathrm{Lag}_j(\psi))`, the gradient condition of the
concave semi-dual

.. math::
    \Phi(\psi) = \sum_j \int_{\mathrm{Lag}_j(\psi)} (|x - y_j|^2 - \psi_j)\, d\mu(x) + \sum_j \psi_j b_j.

:math:`DG` is the weighted graph Laplacian of the diagram, :math:`\partial G_i / \partial \psi_j =
-\mu(F_{ij}) / (2|y_i - y_j|)` for adjacent cells, singular along constants (the first weight is fixed).
Damping: with :math:`\varepsilon_0 = \tfrac12 \min(\min_j G_j(\psi^0), \min_j b_j)`, the step
:math:`\psi + 2^{-\ell} d` is accepted for the smallest :math:`\ell` with
:math:`\min_j G_j \ge \varepsilon_0` and :math:`|G - b| \le (1 - 2^{-\ell-1}) |G(\psi) - b|`; this converges
globally, and quadratically near the solution. Stop when :math:`\max_j |G_j - b_j| / b_j \le` ``tol``.

Example:
    >>> import numpy as np
    >>> from monge.solvers.semidiscrete.integrate import GridDensity
    >>> box = (np.zeros(2), np.ones(2))
    >>> st = kmt_newton(np.array([[0.2, 0.5], [0.7, 0.5]]), np.array([0.3, 0.7]), GridDensity(np.ones((1, 1)), box))
    >>> st.error < 1e-9, st.masses.round(9).tolist()
    (True, [0.3, 0.7])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from .integrate import GridDensity, polygon_moments, segment_mass
from .power2d import PowerDiagram, power_diagram

__all__ = ["NewtonState", "evaluate", "kmt_newton", "kmt_homotopy"]


@dataclass
class NewtonState:
    """Everything measured on the returned weights."""

    psi: np.ndarray
    masses: np.ndarray
    moments: np.ndarray
    second: np.ndarray
    diagram: PowerDiagram
    error: float
    n_iters: int
    errors: list
    status: str = "converged"


def evaluate(y, psi, dens: GridDensity):
    """The diagram, cell masses, first and second moments of ``psi``."""
    diag = power_diagram(y, psi, (dens.lo, dens.hi))
    mass, mom, sec = polygon_moments(dens, diag.verts, diag.cell, len(y))
    return diag, mass, mom, sec


def laplacian(y, diag: PowerDiagram, dens: GridDensity):
    """:math:`DG(\\psi)`, sparse ``(n, n)``."""
    n = len(y)
    i, j = diag.pairs[:, 0], diag.pairs[:, 1]
    w = segment_mass(dens, diag.facets[:, 0], diag.facets[:, 1]) / (2 * np.linalg.norm(y[i] - y[j], axis=1))
    off = sp.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    return sp.diags(np.asarray(off.sum(1)).ravel()) - off


def _direction(y, diag, dens, resid):
    """Newton step: :math:`DG\\, d = b - G` with ``d_0 = 0``."""
    n = len(y)
    d = np.zeros(n)
    if n > 1:
        L = laplacian(y, diag, dens).tocsc()[1:, 1:]
        # symmetric mode with a minimum-degree ordering of L + L^T: half the fill of COLAMD on these planar graphs
        lu = splu(L, permc_spec="MMD_AT_PLUS_A", options=dict(SymmetricMode=True))
        d[1:] = lu.solve(resid[1:])
    return d


def _rel(mass, b):
    return float(np.max(np.abs(mass - b) / b))


def kmt_newton(y, b, dens: GridDensity, psi0=None, tol: float = 1e-9, max_iter: int = 100) -> NewtonState:
    """Damped Newton from ``psi0`` (default 0: the Voronoi diagram) to relative mass error ``tol``."""
    psi = np.zeros(len(y)) if psi0 is None else np.asarray(psi0, dtype=np.float64).copy()
    diag, mass, mom, sec = evaluate(y, psi, dens)
    eps0 = 0.5 * min(mass.min(), b.min())
    errors, it, status = [_rel(mass, b)], 0, "converged"
    if eps0 <= 0:
        status = "diverged"  # an initial cell carries no mass: DG is singular
    while status == "converged" and errors[-1] > tol:
        if it >= max_iter:
            status = "max_iter"
            break
        d = _direction(y, diag, dens, b - mass)
        norm0, alpha = np.linalg.norm(mass - b), 1.0
        while True:
            cand = psi + alpha * d
            c_diag, c_mass, c_mom, c_sec = evaluate(y, cand, dens)
            if c_mass.min() >= eps0 and np.linalg.norm(c_mass - b) <= (1 - alpha / 2) * norm0:
                break
            alpha /= 2
            if alpha < 1e-12:
                break
        if alpha < 1e-12:
            status = "stalled"
            break
        psi, diag, mass, mom, sec = cand, c_diag, c_mass, c_mom, c_sec
        it += 1
        errors.append(_rel(mass, b))
    psi = psi - psi.mean()
    return NewtonState(psi, mass, mom, sec, diag, errors[-1], it, errors, status)


def kmt_homotopy(y, b, dens: GridDensity, psi0=None, tol: float = 1e-9, max_iter: int = 100,
                 ts=(0.0, 0.5, 0.8, 0.95, 1.0)) -> NewtonState:
    r"""Newton along the densities :math:`(1 - t)\,\mathrm{uniform} + t\rho`, each solve warm-started from the
    last: the fallback when the damping crawls from a poor start (tiny initial cells on a rough density).
    Steps of every stage are counted in ``n_iters``; the state is the last stage's."""
    cells = dens.rho * dens.h[0] * dens.h[1]
    psi, total, errors = psi0, 0, []
    for t in ts:
        stage = GridDensity((1 - t) / cells.size + t * cells, (dens.lo, dens.hi))
        st = kmt_newton(y, b, stage, psi, tol if t == ts[-1] else max(tol, 1e-6), max_iter)
        total, errors = total + st.n_iters, errors + st.errors
        if st.status != "converged":
            break
        psi = st.psi
    st.n_iters, st.errors = total, errors
    return st
