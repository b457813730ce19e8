r"""Several grid Sinkhorn iterations per call, on numpy views: the block step of the Sinkhorn driver for grids.

Each half step is the one-shift product of :func:`~monge.geometry._backends.grid_axes.fused_product` (scaling form
with the shift of the potential absorbed once per call):

.. math::
    f \leftarrow f + \omega(\kappa_a S_g - f), \quad
    S_f = -\Big(M + \varepsilon \log\, \big(K_1 \otimes \cdots \otimes K_d\big)\, e^{(f + \varepsilon\log a - M)/
    \varepsilon}\Big), \quad M = \max (f + \varepsilon \log a)

(then ``g`` and ``S_g`` the same way), ``K_k = e^{-C_k/\varepsilon}`` the 1-D Gibbs kernels. The products are
``d`` BLAS calls and the pointwise passes run in place in numpy, whose vectorised ``exp``/``log`` cost a third of
torch's on this CPU; the loop skips the per-call dispatch, masks and checks of the log-domain step. Every sum is
certified as in :func:`~monge.geometry._backends.shifted.unreliable` (``s >= N tiny / ulp``); at the first one
that is not, the block stops and returns the last certified state, and the solver continues with the log-domain
soft-min (per-axis products and exact fallbacks): the same iterates up to rounding, for any ``eps``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["GridLoop"]


class GridLoop:
    """:meth:`run` ``k`` Sinkhorn iterations on one (unbatched) float64 CPU grid problem at one ``eps``.

    Args:
        kernels: the ``d`` symmetric 1-D Gibbs kernels ``(n_k, n_k)``, float64 CPU tensors.
        eps: the temperature they were built at.
        on_fail: called (no argument) when a product was unreliable (the grid stops offering the loop at this eps
            after a few).

    Example:
        >>> import torch
        >>> from monge.geometry.grid import Grid
        >>> geom = Grid((6, 5), dtype=torch.float64)
        >>> loop = geom.scaling_loop(0.1)
        >>> a = torch.full((6, 5), 1 / 30, dtype=torch.float64); lw = a.log().numpy()
        >>> f = g = torch.zeros(6, 5, dtype=torch.float64)
        >>> Sg = geom.softmin(g + 0.1 * a.log(), 0.1, 1)
        >>> state, done, complete, rows, cols, trace = loop.run(f, g, Sg, lw, lw, 1.0, 1.0, 1.0, 3, a.numpy(),
        ...                                                       a.numpy(), float("inf"), float("inf"))
        >>> done, complete, bool(torch.allclose(state[3], geom.softmin(state[1] + 0.1 * a.log(), 0.1, 1)))
        (3, True, True)
    """

    def __init__(self, kernels: list, eps: float, on_fail=None):
        self.K = [k.numpy() for k in kernels]
        self.eps, self.on_fail = float(eps), on_fail
        self.grid = tuple(k.shape[0] for k in kernels)
        self.N = math.prod(self.grid)
        finfo = np.finfo(np.float64)
        self.floor = self.N * finfo.tiny / finfo.eps

    def half(self, pot: np.ndarray, elw: np.ndarray):
        r"""``softmin(pot + eps log w)`` over the grid by one shifted product, or ``None`` if a sum is unreliable."""
        x = np.add(pot, elw)
        M = x.max()
        if not np.isfinite(M):
            return None
        x -= M
        x *= 1.0 / self.eps
        np.exp(x, out=x)
        s = x.reshape(self.grid)
        s = np.matmul(s.reshape(-1, self.grid[-1]), self.K[-1]).reshape(self.grid)  # K is symmetric
        for k in range(len(self.grid) - 2, -1, -1):
            s = np.matmul(self.K[k], s.reshape(math.prod(self.grid[:k]), self.grid[k], -1)).reshape(self.grid)
        low = s.min()
        if not (low >= self.floor and np.isfinite(low)):  # underflow or NaN (every term is <= 1: no overflow)
            return None
        np.log(s, out=s)
        s *= -self.eps
        s -= M
        return s

    def run(self, f, g, Sg, lwa, lwb, ka: float, kb: float, omega: float, iters: int, wa, wb, rho_a: float,
            rho_b: float):
        r"""``iters`` over-relaxed iterations from ``(f, g, S_g)`` (grid-shaped float64 CPU tensors; ``lwa``, ``lwb``,
        ``wa``, ``wb`` log-weights and weights as numpy arrays; ``ka``, ``kb`` the KL factors
        :math:`\rho/(\rho + \varepsilon)`, 1 for a hard side; ``rho`` ``inf`` for a hard side).

        Returns ``((f, g, Sf, Sg), done, complete, rows, cols, trace)`` as the compiled dense loop does:
        ``complete`` False when a product was unreliable at iteration ``done`` (the state returned is the one
        before it, ``None`` if there is none); ``rows``, ``cols`` the l1 residuals of the two marginals' optimality
        conditions at the returned state; ``trace`` the rows residual after each iteration run (numpy), measured
        only where the driver reads it (every iteration when ``omega = 1``, its probe phase; else NaN but the last).
        """
        eps = self.eps
        ela, elb = eps * np.asarray(lwa), eps * np.asarray(lwb)
        f, g, Sg = (t.detach().numpy() for t in (f, g, Sg))
        if not all(np.isfinite(t).all() for t in (f, g, Sg)):  # a start the log-domain step must handle
            return None, 0, False, math.nan, math.nan, None
        Sf, done, complete = None, 0, True
        trace = np.full(max(int(iters), 1), math.nan)
        every = omega == 1.0  # the driver reads the trace only in its probe phase (plain iterations)
        for done in range(int(iters)):
            fn = _relax(f, Sg, ka, omega)
            sf = self.half(fn, ela)
            if sf is None:
                complete = False
                break
            gn = _relax(g, sf, kb, omega)
            sg = self.half(gn, elb)
            if sg is None:
                complete = False
                break
            f, g, Sf, Sg = fn, gn, sf, sg
            if every or done == iters - 1:
                trace[done] = _residual(f, Sg, lwa, wa, eps, rho_a)
        else:
            done = int(iters)
        if not complete and self.on_fail is not None:
            self.on_fail()
        if Sf is None:
            return None, done, complete, math.nan, math.nan, None
        rows = float(trace[done - 1]) if not math.isnan(trace[done - 1]) else _residual(f, Sg, lwa, wa, eps, rho_a)
        cols = _residual(g, Sf, lwb, wb, eps, rho_b)
        state = tuple(torch.from_numpy(np.ascontiguousarray(t)) for t in (f, g, Sf, Sg))
        return state, done, complete, rows, cols, trace[:done]


def _relax(pot: np.ndarray, S: np.ndarray, kappa: float, omega: float) -> np.ndarray:
    """``pot + omega (kappa S - pot)``; ``S`` is finite (a certified soft-min, or a start checked by the caller)."""
    new = S * kappa if kappa != 1.0 else S
    if omega == 1.0:
        return new.copy() if new is S else new
    out = np.subtract(new, pot)
    out *= omega
    out += pot
    return out


def _residual(pot, S, lw, w, eps: float, rho: float) -> float:
    r"""The l1 residual of one marginal's optimality condition, :math:`\| e^{\log w + (f - S)/\varepsilon} -
    w e^{-f/\rho} \|_1` (``rho = inf``: a hard side, target ``w``), as :mod:`monge.solvers.marginals` measures it."""
    m = np.subtract(pot, S)
    m *= 1.0 / eps
    m += lw
    np.exp(m, out=m)
    m -= w if math.isinf(rho) else w * np.exp(-pot / rho)
    return float(np.abs(m, out=m).sum())
