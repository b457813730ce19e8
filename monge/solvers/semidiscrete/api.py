r"""Entry point of semi-discrete OT: :func:`semidiscrete`.

Transport a density :math:`\mu` on a box to :math:`\nu = \sum_j b_j \delta_{y_j}` for the cost
:math:`|x - y|^2`:

.. math::
    W_2^2(\mu, \nu) = \max_\psi \sum_j \int_{\mathrm{Lag}_j(\psi)} (|x - y_j|^2 - \psi_j)\, d\mu + \sum_j \psi_j b_j,
    \qquad \mathrm{Lag}_j(\psi) = \{x : |x - y_j|^2 - \psi_j \le |x - y_k|^2 - \psi_k\ \forall k\},

optimal when :math:`\mu(\mathrm{Lag}_j) = b_j` for all ``j``. ``method="newton"`` (2-D): exact power diagrams and
the damped Newton of Kitagawa-Merigot-Thibert, to a relative mass error ``tol`` per cell. ``method="sgd"`` (any
dimension): averaged SGD from samples (``density`` may then be a sampler ``k -> (k, d)``).

Example:
    >>> import torch
    >>> r = semidiscrete(torch.tensor([[0.25, 0.5], [0.75, 0.5]], dtype=torch.float64))
    >>> r.masses.tolist(), round(float(r.value), 6)  # each half of the square: 1/48 + 1/12
    ([0.5, 0.5], 0.104167)
"""

from __future__ import annotations

import numpy as np
import torch

from ...results.convergence import Convergence
from ...results.semidiscrete import SemidiscreteResult
from .integrate import GridDensity
from .newton import evaluate, kmt_homotopy, kmt_newton
from .sgd import averaged_sgd, power_scores

__all__ = ["semidiscrete"]

#: Default tolerances on the relative mass error: Newton converges quadratically, so 1e-9 costs one more step;
#: SGD's error decreases like k^(-1/2), so 1e-2 is what it reaches in seconds.
TOL = {"newton": 1e-9, "sgd": 1e-2}


class _Value(torch.autograd.Function):
    """The value with its closed-form envelope gradients in ``y`` and ``b``."""

    @staticmethod
    def forward(ctx, y, b, value, psi, centroids):
        ctx.save_for_backward(y, b, psi, centroids)
        return value.clone()

    @staticmethod
    def backward(ctx, g):
        y, b, psi, c = ctx.saved_tensors
        return g * 2 * b[:, None] * (y - c), g * psi, None, None, None


def _box(box, d):
    if box is None:
        return np.zeros(d), np.ones(d)
    lo, hi = (np.asarray(torch.as_tensor(v, dtype=torch.float64).cpu(), dtype=np.float64).reshape(-1) for v in box)
    if lo.shape != (d,) or hi.shape != (d,) or not np.all(hi > lo):
        raise ValueError(f"box: expected (lo, hi), two vectors of length d = {d} with hi > lo, got {box!r}")
    return lo, hi


def _check(y, b, box):
    if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[0] < 1 or not y.is_floating_point():
        raise ValueError(f"y: expected a float tensor of Dirac positions (m, d), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y: expected finite positions, found NaN or inf")
    lo, hi = _box(box, y.shape[1])
    yn = y.detach().cpu().double().numpy()
    if np.any(yn < lo) or np.any(yn > hi):
        raise ValueError(f"y: expected every Dirac inside the box [{lo.tolist()}, {hi.tolist()}], found positions "
                         f"from {yn.min(0).tolist()} to {yn.max(0).tolist()}; move them inside or pass a larger box")
    m = y.shape[0]
    if b is None:
        return y.new_full((m,), 1.0 / m), (lo, hi)
    b = torch.as_tensor(b, dtype=y.dtype, device=y.device)
    bd = b.detach()
    if b.shape != (m,):
        raise ValueError(f"b: expected masses of shape (m,) with m = {m}, got shape {tuple(b.shape)}")
    if not bool(torch.isfinite(bd).all()) or bool((bd <= 0).any()):
        raise ValueError(f"b: expected positive finite masses, found a minimum of {float(bd.min()):.3g}; drop the "
                         "Diracs of zero mass")
    if abs(float(bd.sum()) - 1) > (1e-8 if y.dtype == torch.float64 else 1e-5):
        raise ValueError(f"b: expected masses summing to 1 (mu is a probability), got a sum of {float(bd.sum())!r}; "
                         "pass b / b.sum()")
    return b / b.sum(), (lo, hi)


def _grid(density, box, d):
    if density is None:
        return GridDensity(np.ones((1,) * d), box)
    w = torch.as_tensor(density).detach().cpu().double().numpy()
    if w.ndim != d or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"density: expected nonnegative finite cell masses of shape (n_1, ..., n_d) with d = {d} "
                         f"and a positive sum, got shape {w.shape}")
    return GridDensity(w, box)


def _sampler(density, box, y):
    lo, hi = (torch.as_tensor(v, dtype=y.dtype, device=y.device) for v in box)
    if callable(density):
        return density
    if density is None:
        return lambda k: lo + (hi - lo) * torch.rand(k, y.shape[1], dtype=y.dtype, device=y.device)
    w = torch.as_tensor(density, dtype=y.dtype, device=y.device)
    shape = torch.tensor(w.shape, dtype=y.dtype, device=y.device)
    flat = w.reshape(-1) / w.sum()

    def draw(k):
        idx = torch.multinomial(flat, k, replacement=True)
        cell = torch.stack(torch.unravel_index(idx, tuple(w.shape)), 1).to(y.dtype)
        return lo + (hi - lo) * (cell + torch.rand_like(cell)) / shape
    return draw


def _result(y, b, psi, masses, mom, value, conv, diag=None):
    t = lambda a: torch.as_tensor(a, dtype=y.dtype, device=y.device)  # noqa: E731
    psi_t, masses_t = t(psi), t(masses)
    with np.errstate(invalid="ignore", divide="ignore"):
        cent = t(np.asarray(mom) / np.asarray(masses)[:, None])
    val = _Value.apply(y, b, t(value), psi_t, cent)
    return SemidiscreteResult(y=y, b=b, psi=psi_t, masses=masses_t, centroids=cent, value=val, convergence=conv,
                              polygon_vertices=None if diag is None else diag.verts,
                              polygon_cells=None if diag is None else diag.cell)


def _exact2d(y, b, dens, psi):
    """Masses, moments and value of ``psi`` on the exact diagram."""
    yn = y.detach().cpu().double().numpy()
    diag, mass, mom, sec = evaluate(yn, psi, dens)
    value = float((sec - 2 * (yn * mom).sum(1) + (yn ** 2).sum(1) * mass).sum())
    return diag, mass, mom, value


def semidiscrete(y, b=None, density=None, *, method: str = "newton", box=None, tol: float | None = None,
                 max_iter: int | None = None, psi0=None, eps: float | None = None, lr: float | None = None,
                 batch_size: int = 256, n_eval: int = 100_000) -> SemidiscreteResult:
    r"""Semi-discrete OT from a density on a box to the Diracs ``y (m, d)`` with masses ``b (m,)``.

    Args:
        y: ``(m, d)`` distinct points inside the box. b: ``(m,)`` positive masses summing to 1 (None: uniform).
        density: None (uniform on the box), cell masses ``(n_1, ..., n_d)`` of a piecewise-constant density on a
            regular grid of the box (axis k along coordinate k), or, for ``"sgd"``, a sampler ``k -> (k, d)``.
        method: ``"newton"`` (d = 2, exact) or ``"sgd"`` (any d). box: ``(lo, hi)``, default ``[0, 1]^d``.
        tol: relative mass error per cell, :math:`\max_j |\mu(\mathrm{Lag}_j) - b_j| / b_j` (Newton 1e-9, SGD
            1e-2). max_iter: Newton steps (100) or SGD steps (5000). psi0: initial weights (Newton: each initial
            cell must carry mass). eps: SGD's entropic temperature (None: unregularised). lr: SGD's step.
        n_eval: SGD outside 2-D: samples estimating masses, centroids and value.

    Returns:
        :class:`~monge.results.SemidiscreteResult`. On a grid density, if 30 damped steps from ``psi0`` do not
        converge (tiny initial cells on a rough density), Newton restarts along the densities
        :math:`(1 - t)\,\mathrm{uniform} + t\rho`, warm-started, and ``n_iters`` counts every step. A failed
        solve does not raise: ``convergence`` says why
        (``"diverged"``: an initial cell has no mass; ``"stalled"``: the damping found no descent).
    """
    if method not in TOL:
        raise ValueError(f"method: expected 'newton' or 'sgd', got {method!r}")
    b, box = _check(y, b, box)
    d = y.shape[1]
    tol = TOL[method] if tol is None else float(tol)
    if method == "newton":
        return _newton(y, b, density, box, tol, max_iter or 100, psi0)
    if d == 2 and not callable(density):
        dens = _grid(density, box, 2)
    psi, _ = averaged_sgd(y.detach(), b, _sampler(density, box, y.detach()), eps=eps, lr=lr, batch_size=batch_size,
                          n_steps=max_iter or 5000, psi0=None if psi0 is None else torch.as_tensor(psi0))
    if d == 2 and not callable(density):
        diag, mass, mom, value = _exact2d(y, b, dens, psi.double().cpu().numpy())
    else:
        diag, (mass, mom, value) = None, _monte_carlo(y.detach(), psi, _sampler(density, box, y.detach()), n_eval)
    err = float(np.max(np.abs(np.asarray(mass) - b.detach().cpu().double().numpy()) / b.detach().cpu().numpy()))
    conv = Convergence.build(torch.tensor(err, dtype=torch.float64), tol, max_iter or 5000,
                             criterion="relative_mass_error")
    return _result(y, b, psi, mass, mom, value, conv, diag)


def _monte_carlo(y, psi, sampler, n):
    x = sampler(n).to(y)
    j = power_scores(x, y, psi).argmax(1)
    m = y.shape[0]
    mass = torch.bincount(j, minlength=m).to(y.dtype) / n
    mom = torch.zeros_like(y).index_add_(0, j, x) / n
    value = float(((x - y[j]) ** 2).sum(1).mean())
    return mass.cpu().double().numpy(), mom.cpu().double().numpy(), value


def _newton(y, b, density, box, tol, max_iter, psi0):
    if y.shape[1] != 2:
        raise ValueError(f"y: method='newton' computes exact power diagrams in 2-D, got d = {y.shape[1]}; use "
                         "method='sgd' in other dimensions")
    yn = y.detach().cpu().double().numpy()
    if len(np.unique(yn, axis=0)) < len(yn):
        raise ValueError("y: expected distinct Dirac positions, found duplicates; merge them and add their masses")
    dens = _grid(density, box, 2)
    p0 = None if psi0 is None else torch.as_tensor(psi0).detach().cpu().double().numpy()
    b64 = b.detach().cpu().double().numpy()
    b64 = b64 / b64.sum()  # float32 b: renormalised in float64
    st = kmt_newton(yn, b64, dens, p0, tol, min(max_iter, 30) if dens.shape != (1, 1) else max_iter)
    if st.status != "converged" and dens.shape != (1, 1):  # slow damping from a poor start: continuation
        first = st.n_iters
        st = kmt_homotopy(yn, b64, dens, p0, tol, max_iter)
        st.n_iters += first
    value = float((st.second - 2 * (yn * st.moments).sum(1) + (yn ** 2).sum(1) * st.masses).sum())
    err = float("inf") if st.status == "diverged" else st.error  # an initial cell carries no mass
    conv = Convergence.build(torch.tensor(err, dtype=torch.float64), tol, st.n_iters, criterion="relative_mass_error",
                             errors=torch.tensor(st.errors, dtype=torch.float64),
                             stalled=torch.tensor(st.status == "stalled"))
    return _result(y, b, st.psi, st.masses, st.moments, value, conv, st.diagram)
