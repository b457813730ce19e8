r"""Entry point of semi-discrete OT: :func:`semidiscrete`.

Transport a density :math:`\mu` on a box to :math:`\nu = \sum_j b_j \delta_{y_j}` for the cost
:math:`|x - y|^2`:

.. math::
    W_2^2(\mu, \nu) = \max_\psi \sum_j \int_{\mathrm{Lag}_j(\psi)} (|x - y_j|^2 - \psi_j)\, d\mu + \sum_j \psi_j b_j,
    \qquad \mathrm{Lag}_j(\psi) = \{x : |x - y_j|^2 - \psi_j \le |x - y_k|^2 - \psi_k\ \forall k\},

optimal when :math:`\mu(\mathrm{Lag}_j) = b_j` for all ``j``. ``method="newton"`` (2-D and 3-D): exact power
diagrams and the damped Newton of Kitagawa-Merigot-Thibert, to a relative mass error ``tol`` per cell; in 2-D the
domain may be a convex polygon (``domain``). ``method="sgd"`` (any dimension, and the cost :math:`|x - y|`, whose
Apollonius cells are bounded by hyperbola arcs, not polygons): averaged SGD from samples (``density`` may then be
a sampler ``k -> (k, d)``).

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
from .integrate3d import GridDensity3D
from .newton import evaluate, kmt_homotopy, kmt_newton, kmt_newton3d
from .polygon import ConvexPolygon
from .sgd import averaged_sgd, power_scores

__all__ = ["semidiscrete"]

#: Default tolerances on the relative mass error: Newton converges quadratically, so 1e-9 costs one more step;
#: SGD's error decreases like k^(-1/2), so 1e-2 is what it reaches in seconds.
TOL = {"newton": 1e-9, "sgd": 1e-2}


COSTS = ("sqeuclidean", "euclidean")


class _Value(torch.autograd.Function):
    """The value with its envelope gradients: ``grad_y`` in ``y`` (given), ``psi`` in ``b``."""

    @staticmethod
    def forward(ctx, y, b, value, psi, grad_y):
        ctx.save_for_backward(psi, grad_y)
        return value.clone()

    @staticmethod
    def backward(ctx, g):
        psi, gy = ctx.saved_tensors
        return g * gy, g * psi, None, None, None


def _box(box, d):
    if box is None:
        return np.zeros(d), np.ones(d)
    lo, hi = (np.asarray(torch.as_tensor(v, dtype=torch.float64).cpu(), dtype=np.float64).reshape(-1) for v in box)
    if lo.shape != (d,) or hi.shape != (d,) or not np.all(hi > lo):
        raise ValueError(f"box: expected (lo, hi), two vectors of length d = {d} with hi > lo, got {box!r}")
    return lo, hi


def _check(y, b, box, domain=None):
    if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[0] < 1 or not y.is_floating_point():
        raise ValueError(f"y: expected a float tensor of Dirac positions (m, d), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y: expected finite positions, found NaN or inf")
    lo, hi = _box(box, y.shape[1]) if domain is None else (domain.lo, domain.hi)
    yn = y.detach().cpu().double().numpy()
    if np.any(yn < lo) or np.any(yn > hi):
        raise ValueError(f"y: expected every Dirac inside the box [{lo.tolist()}, {hi.tolist()}], found positions "
                         f"from {yn.min(0).tolist()} to {yn.max(0).tolist()}; move them inside or pass a larger "
                         f"{'box' if domain is None else 'domain (its bounding box is the box)'}")
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


def _domain(domain, d):
    if domain is None:
        return None
    if d != 2:
        raise ValueError(f"domain: a convex polygon is a 2-D domain, got Diracs in d = {d}; use box in other "
                         "dimensions")
    return ConvexPolygon(torch.as_tensor(domain).detach().cpu().double().numpy())


def _grid(density, box, d, domain=None):
    make = (lambda w: GridDensity3D(w, box)) if d == 3 else (lambda w: GridDensity(w, box, domain))  # noqa: E731
    if density is None:
        return make(np.ones((1,) * d))
    w = torch.as_tensor(density).detach().cpu().double().numpy()
    if w.ndim != d or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"density: expected nonnegative finite cell masses of shape (n_1, ..., n_d) with d = {d} "
                         f"and a positive sum, got shape {w.shape}")
    return make(w)


def _sampler(density, box, y, domain=None):
    if callable(density):
        return density
    base = _box_sampler(density, box, y)
    if domain is None:
        return base
    nrm, off = (torch.as_tensor(v, dtype=y.dtype, device=y.device) for v in (domain.normals, domain.offsets))

    def draw(k):  # rejection from the bounding box
        out, have = [], 0
        while have < k:
            x = base(2 * k)
            x = x[(x @ nrm.T <= off).all(1)]
            out.append(x)
            have += len(x)
        return torch.cat(out)[:k]
    return draw


def _box_sampler(density, box, y):
    lo, hi = (torch.as_tensor(v, dtype=y.dtype, device=y.device) for v in box)
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


def _result(y, b, psi, masses, mom, value, conv, diag=None, grad_y=None, cost="sqeuclidean"):
    t = lambda a: torch.as_tensor(a, dtype=y.dtype, device=y.device)  # noqa: E731
    psi_t, masses_t = t(psi), t(masses)
    with np.errstate(invalid="ignore", divide="ignore"):
        cent = t(np.asarray(mom) / np.asarray(masses)[:, None])
    if grad_y is None:  # |x - y|^2: d/dy_j = 2 b_j (y_j - c_j)
        grad_y = 2 * b.detach()[:, None] * (y.detach() - cent)
    val = _Value.apply(y, b, t(value), psi_t, t(grad_y))
    return SemidiscreteResult(y=y, b=b, psi=psi_t, masses=masses_t, centroids=cent, value=val, convergence=conv,
                              polygon_vertices=None if diag is None else diag.verts,
                              polygon_cells=None if diag is None else diag.cell, cost=cost)


def _exact2d(y, b, dens, psi):
    """Masses, moments and value of ``psi`` on the exact diagram."""
    yn = y.detach().cpu().double().numpy()
    diag, mass, mom, sec = evaluate(yn, psi, dens)
    value = float((sec - 2 * (yn * mom).sum(1) + (yn ** 2).sum(1) * mass).sum())
    return diag, mass, mom, value


def semidiscrete(y, b=None, density=None, *, method: str = "newton", box=None, domain=None,
                 cost: str = "sqeuclidean", tol: float | None = None, max_iter: int | None = None, psi0=None,
                 eps: float | None = None, lr: float | None = None, batch_size: int = 256,
                 n_eval: int = 100_000) -> SemidiscreteResult:
    r"""Semi-discrete OT from a density on a box (or convex polygon) to the Diracs ``y (m, d)``, masses ``b (m,)``.

    Args:
        y: ``(m, d)`` distinct points inside the box. b: ``(m,)`` positive masses summing to 1 (None: uniform).
        density: None (uniform), cell masses ``(n_1, ..., n_d)`` of a piecewise-constant density on a regular
            grid of the box (axis k along coordinate k), or, for ``"sgd"``, a sampler ``k -> (k, d)``.
        method: ``"newton"`` (exact; d = 2 or 3) or ``"sgd"`` (any d).
        box: ``(lo, hi)``, default ``[0, 1]^d``. domain: 2-D only, the vertices ``(k, 2)`` of a convex polygon;
            mu is then restricted to it (and renormalised), the box is its bounding box, the cells are clipped to it.
        cost: ``"sqeuclidean"`` :math:`|x - y|^2` or ``"euclidean"`` :math:`|x - y|` (``"sgd"`` only: its cells
            are not polygons; masses, value and the value's gradient in ``y`` are then Monte-Carlo estimates).
        tol: relative mass error per cell, :math:`\max_j |\mu(\mathrm{Lag}_j) - b_j| / b_j` (Newton 1e-9, SGD
            1e-2). max_iter: Newton steps (100) or SGD steps (5000). psi0: initial weights (Newton: each initial
            cell must carry mass). eps: SGD's entropic temperature (None: unregularised). lr: SGD's step.
        n_eval: SGD outside the exact 2-D case: samples estimating masses, centroids and value.

    Returns:
        :class:`~monge.results.SemidiscreteResult`. On a grid density, if 30 damped steps from ``psi0`` do not
        converge (tiny initial cells on a rough density), Newton restarts along the densities
        :math:`(1 - t)\,\mathrm{uniform} + t\rho`, warm-started, and ``n_iters`` counts every step. A failed
        solve does not raise: ``convergence`` says why
        (``"diverged"``: an initial cell has no mass; ``"stalled"``: the damping found no descent).
    """
    if method not in TOL:
        raise ValueError(f"method: expected 'newton' or 'sgd', got {method!r}")
    if cost not in COSTS:
        raise ValueError(f"cost: expected one of {COSTS}, got {cost!r}")
    if method == "newton" and cost == "euclidean":
        raise ValueError("cost: method='newton' needs polygonal (Laguerre) cells, which the cost |x - y| does not "
                         "have (its cells are bounded by hyperbola arcs); use method='sgd' with cost='euclidean'")
    d = y.shape[1] if isinstance(y, torch.Tensor) and y.dim() == 2 else None
    dom = _domain(domain, d)
    b, box = _check(y, b, box, dom)
    tol = TOL[method] if tol is None else float(tol)
    if method == "newton":
        return _newton(y, b, density, box, tol, max_iter or 100, psi0, dom)
    return _sgd(y, b, density, box, dom, cost, tol, max_iter or 5000, psi0, eps, lr, batch_size, n_eval)


def _sgd(y, b, density, box, dom, cost, tol, max_iter, psi0, eps, lr, batch_size, n_eval):
    exact = y.shape[1] == 2 and not callable(density) and cost == "sqeuclidean"
    if exact:
        dens = _grid(density, box, 2, dom)
    draw = _sampler(density, box, y.detach(), dom)
    psi, _ = averaged_sgd(y.detach(), b, draw, eps=eps, lr=lr, batch_size=batch_size, n_steps=max_iter,
                          psi0=None if psi0 is None else torch.as_tensor(psi0), cost=cost)
    grad_y = None
    if exact:
        diag, mass, mom, value = _exact2d(y, b, dens, psi.double().cpu().numpy())
    else:
        diag, (mass, mom, value, grad_y) = None, _monte_carlo(y.detach(), psi, draw, n_eval, cost)
    err = float(np.max(np.abs(np.asarray(mass) - b.detach().cpu().double().numpy()) / b.detach().cpu().numpy()))
    conv = Convergence.build(torch.tensor(err, dtype=torch.float64), tol, max_iter, criterion="relative_mass_error")
    return _result(y, b, psi, mass, mom, value, conv, diag, grad_y if cost == "euclidean" else None, cost)


def _monte_carlo(y, psi, sampler, n, cost="sqeuclidean"):
    """Masses, moments, value and (for ``|x - y|``) the value's gradient in ``y``, from ``n`` samples."""
    x = sampler(n).to(y)
    j = power_scores(x, y, psi, cost).argmax(1)
    m = y.shape[0]
    mass = torch.bincount(j, minlength=m).to(y.dtype) / n
    mom = torch.zeros_like(y).index_add_(0, j, x) / n
    diff = y[j] - x
    dist = diff.norm(dim=1)
    value = float((dist.square() if cost == "sqeuclidean" else dist).mean())
    unit = diff / dist.clamp_min(torch.finfo(y.dtype).tiny)[:, None]
    grad_y = torch.zeros_like(y).index_add_(0, j, unit) / n  # d/dy_j of the integral of |x - y_j| over cell j
    return mass.cpu().double().numpy(), mom.cpu().double().numpy(), value, grad_y


def _newton(y, b, density, box, tol, max_iter, psi0, dom=None):
    d = y.shape[1]
    if d not in (2, 3):
        raise ValueError(f"y: method='newton' computes exact power diagrams in 2-D and 3-D, got d = {d}; use "
                         "method='sgd' in other dimensions")
    yn = y.detach().cpu().double().numpy()
    if len(np.unique(yn, axis=0)) < len(yn):
        raise ValueError("y: expected distinct Dirac positions, found duplicates; merge them and add their masses")
    p0 = None if psi0 is None else torch.as_tensor(psi0).detach().cpu().double().numpy()
    b64 = b.detach().cpu().double().numpy()
    b64 = b64 / b64.sum()  # float32 b: renormalised in float64
    dens = _grid(density, box, d, dom)
    uniform = dens.shape == (1,) * d
    cap = max_iter if uniform else min(max_iter, 30)
    if d == 3:
        st = kmt_newton3d(yn, b64, box, p0, tol, cap, None if uniform else dens)
    else:
        st = kmt_newton(yn, b64, dens, p0, tol, cap)
    if st.status != "converged" and not uniform:  # slow damping from a poor start: continuation
        first = st.n_iters
        st = kmt_homotopy(yn, b64, dens, p0, tol, max_iter)
        st.n_iters += first
    value = float((st.second - 2 * (yn * st.moments).sum(1) + (yn ** 2).sum(1) * st.masses).sum())
    err = float("inf") if st.status == "diverged" else st.error  # an initial cell carries no mass
    conv = Convergence.build(torch.tensor(err, dtype=torch.float64), tol, st.n_iters, criterion="relative_mass_error",
                             errors=torch.tensor(st.errors, dtype=torch.float64),
                             stalled=torch.tensor(st.status == "stalled"))
    return _result(y, b, st.psi, st.masses, st.moments, value, conv, st.diagram)
