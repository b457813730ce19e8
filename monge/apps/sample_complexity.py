r"""Sample complexity of W_2, Sinkhorn divergences and MMD: how fast estimates from n samples reach their limit.

For :math:`\alpha_n, \beta_n` empirical measures of n i.i.d. samples of :math:`\alpha, \beta` in
:math:`\mathbb{R}^d`, the plug-in estimates converge at rates that depend on the dimension for OT and not for
kernel norms (Dudley 1969; Fournier & Guillin 2015; Weed & Bach 2019; Genevay, Chizat, Bach, Cuturi & Peyré 2019):

.. math::
    \mathbb{E}\,|W_2(\alpha_n, \beta_n) - W_2(\alpha, \beta)| \sim n^{-1/d}\ (d \ge 3;\ n^{-1/2}\sqrt{\log n}
    \text{ at } d = 2), \qquad
    \mathbb{E}\,|\mathrm{MMD}(\alpha_n, \beta_n) - \mathrm{MMD}(\alpha, \beta)| \sim n^{-1/2},

and the Sinkhorn divergence :math:`S_\varepsilon` interpolates: :math:`n^{-1/2}` with a constant growing like
:math:`\varepsilon^{-d/2}` as :math:`\varepsilon \to 0` (so small eps behaves like W at moderate n). Quantities
are compared in distance units: :math:`W_2`, :math:`\sqrt{S_\varepsilon}` (cost :math:`\|x-y\|^2`) and the energy
distance :math:`\|\alpha - \beta\|_k = \sqrt{2\,\mathrm{mmd}}` (:func:`monge.mmd`, kernel :math:`-\|x - y\|`).

:func:`study` samples both measures ``repeats`` times per ``(d, n)``, measures the mean absolute error against
the limit (0 when :math:`\beta = \alpha`; with ``shift``, :math:`\beta` is :math:`\alpha` translated by ``shift``
along the first axis: :math:`W_2 = \mathrm{shift}` exactly, the other limits estimated at ``n_ref`` samples),
and fits the log-log slope of error against n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SampleComplexity", "study", "loglog_slope", "uniform_cube"]


def uniform_cube(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points uniform on ``[0, 1]^d`` (float64): the default law of :func:`study`."""
    return torch.rand(n, d, generator=generator, dtype=torch.float64)


def loglog_slope(ns, errors) -> float:
    """Least-squares slope of ``log(error)`` against ``log(n)``.

    Example:
        >>> round(loglog_slope([10, 100, 1000], [1.0, 0.1, 0.01]), 6)
        -1.0
    """
    x, y = np.log(np.asarray(ns, float)), np.log(np.asarray(errors, float))
    return float(np.polyfit(x, y, 1)[0])


@dataclass(frozen=True)
class SampleComplexity:
    """Errors ``errors[i, k, j]`` (mean over repeats) and their standard errors ``stderr`` for ``dims[i]``,
    ``quantities[k]``, ``ns[j]``; ``slopes[i, k]`` the fitted log-log slopes; ``theory[i, k]`` the asymptotic
    slope (NaN where it depends on eps and n)."""

    ns: tuple
    dims: tuple
    quantities: tuple
    errors: np.ndarray
    stderr: np.ndarray
    slopes: np.ndarray
    theory: np.ndarray

    def slope(self, quantity: str, d: int) -> float:
        return float(self.slopes[self.dims.index(d), self.quantities.index(quantity)])

    def table(self) -> str:
        """The fitted slopes next to the theory, one line per quantity and dimension."""
        lines = [f"{'quantity':<16}{'d':>3}  {'fitted slope':>12}  {'theory':>8}"]
        for i, d in enumerate(self.dims):
            for k, q in enumerate(self.quantities):
                th = "eps-dep." if math.isnan(self.theory[i, k]) else f"{self.theory[i, k]:+.3f}"
                lines.append(f"{q:<16}{d:>3}  {self.slopes[i, k]:>+12.3f}  {th:>8}")
        return "\n".join(lines)


def _theory(q: str, d: int) -> float:
    if q == "W2":
        return -0.5 if d <= 2 else -1.0 / d  # (d = 2: up to the sqrt(log n) factor)
    if q == "MMD":
        return -0.5
    return float("nan")


def _estimates(x, y, eps_list):
    from ..api import solve_points
    from ..divergences import mmd, sinkhorn_divergence

    out = [float(solve_points(x, y).value) ** 0.5]
    for eps in eps_list:
        s = float(sinkhorn_divergence(x, y, eps=eps, tol=1e-4))
        out.append(max(s, 0.0) ** 0.5)
    out.append(max(2 * float(mmd(x, y)), 0.0) ** 0.5)
    return out


def _limits(sampler, d, shift, eps_list, n_ref, gen):
    if shift == 0:
        return np.zeros(len(eps_list) + 2)
    from ..divergences import mmd, sinkhorn_divergence

    x = sampler(n_ref, d, gen)
    y = sampler(n_ref, d, gen)
    y[:, 0] += shift
    lim = [abs(shift)]  # W_2 between a measure and its translate is the length of the translation
    lim += [max(float(sinkhorn_divergence(x, y, eps=e, tol=1e-4, backend="lazy")), 0.0) ** 0.5 for e in eps_list]
    lim.append(max(2 * float(mmd(x, y)), 0.0) ** 0.5)
    return np.asarray(lim)


def study(ns=(50, 100, 200, 400), dims=(2, 3, 5), eps=(0.01, 0.1, 1.0), *, repeats: int = 5, shift: float = 0.0,
          sampler=uniform_cube, n_ref: int = 5000, seed: int = 0, progress=None) -> SampleComplexity:
    r"""Run the sample-complexity study (see the module docstring).

    Args:
        ns: sample sizes (increasing). dims: dimensions. eps: temperatures of the Sinkhorn divergences (cost
            units of :math:`\|x - y\|^2`); ``()`` for none.
        repeats: independent draws per ``(d, n)``; the error is the mean absolute deviation from the limit.
        shift: translation of the second measure along the first axis (0: both measures equal, limits 0).
        sampler: ``sampler(n, d, generator) -> (n, d)`` float64 samples of :math:`\alpha` (default: uniform cube).
        n_ref: sample size of the reference estimates of the limits (only with ``shift``).
        progress: optional callable ``progress(message)`` called once per ``(d, n)``.

    Returns:
        :class:`SampleComplexity` (``.table()`` prints fitted slopes next to the theory).

    Example:
        >>> res = study(ns=(16, 64), dims=(2,), eps=(), repeats=2)
        >>> res.quantities, res.errors.shape
        (('W2', 'MMD'), (1, 2, 2))
    """
    if repeats < 1 or not all(int(n) >= 2 for n in ns) or len(ns) < 2:
        raise ValueError(f"ns: expected at least two sample sizes >= 2 and repeats >= 1, got ns={ns}, "
                         f"repeats={repeats}")
    quantities = ("W2", *[f"S_eps={e:g}" for e in eps], "MMD")
    gen = torch.Generator().manual_seed(seed)
    errs = np.zeros((len(dims), len(quantities), len(ns)))
    sem = np.zeros_like(errs)
    for i, d in enumerate(dims):
        lim = _limits(sampler, d, shift, eps, n_ref, gen)
        for j, n in enumerate(ns):
            if progress is not None:
                progress(f"d = {d}, n = {n}")
            vals = []
            for _ in range(repeats):
                x, y = sampler(n, d, gen), sampler(n, d, gen)
                y[:, 0] += shift
                vals.append(np.abs(np.asarray(_estimates(x, y, eps)) - lim))
            vals = np.asarray(vals)
            errs[i, :, j] = vals.mean(0)
            sem[i, :, j] = vals.std(0, ddof=1) / math.sqrt(repeats) if repeats > 1 else 0.0
    slopes = np.array([[loglog_slope(ns, errs[i, k]) for k in range(len(quantities))] for i in range(len(dims))])
    theory = np.array([[_theory(q, d) for q in quantities] for d in dims])
    return SampleComplexity(tuple(ns), tuple(dims), quantities, errs, sem, slopes, theory)
