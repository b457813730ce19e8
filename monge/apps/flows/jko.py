r"""Wasserstein gradient flows on grids: JKO steps with an entropic proximal operator (Peyre 2015).

One step of the Jordan-Kinderlehrer-Otto scheme with the entropic transport cost
:math:`W_\varepsilon(\mu, \nu) = \min_{P \ge 0, P 1 = \nu} \langle P, C\rangle + \varepsilon \sum_{ij} P_{ij}(\log P_{ij} - 1)`
(the second marginal :math:`P^\top 1 = \mu` is free), :math:`C_{ij} = |x_i - x_j|^2`:

.. math::
    \mu_{t+1} = \arg\min_\mu F(\mu) + \frac{1}{2\tau} W_\varepsilon(\mu, \mu_t)
    \iff \min_{P 1 = \mu_t} \langle P, C\rangle + \varepsilon \textstyle\sum P(\log P - 1) + 2\tau F(P^\top 1)

is solved by block coordinate ascent on its dual (a Sinkhorn loop, Chizat et al. 2018): the constraint on
:math:`\mu_t` is a hard projection, the free marginal goes through the KL proximal operator of :math:`2\tau F`,

.. math::
    f \leftarrow \varepsilon \log \mu_t + \mathrm{softmin}_\varepsilon(g), \qquad
    g \leftarrow \varepsilon \log \mathrm{prox}^{\mathrm{KL}}_{2\tau F / \varepsilon}(z) - \varepsilon \log z,
    \quad z = e^{-\mathrm{softmin}_\varepsilon(f) / \varepsilon},

all in the log domain over :meth:`monge.geometry.Grid.softmin` (separable, any dimension). Every functional here is
separable (a sum over cells of a convex function of the cell's mass), so the prox of any sum of them is one scalar
problem per cell, solved exactly (closed form, Lambert W by Newton, a min for the congestion cap): no Dykstra
splitting is needed.

**The entropic bias.** With the first marginal fixed, the entropy adds a conditional blur: for the quadratic
potential :math:`V = |x - x_0|^2/2` in 1-D the step maps a Gaussian of variance :math:`v` to one of variance
:math:`v / (1 + \tau)^2 + \varepsilon / (2 (1 + \tau))` (the unregularised step: :math:`v / (1+\tau)^2`), and for
the heat flow (:math:`F = \int \rho \log \rho`) the step variance solves :math:`(\alpha - 1)(\alpha v + \varepsilon/2)
= \tau`, :math:`v' = \alpha^2 v + \varepsilon\alpha/2`: to first order in :math:`\varepsilon`, the unregularised
:math:`v'_0 \approx v + 2\tau` plus :math:`\varepsilon \alpha_0 / (2(2\alpha_0 - 1)) \approx \varepsilon / 2` of
extra variance per step (:math:`\alpha_0 = \sqrt{v'_0/v}`). Keep :math:`\varepsilon \ll \tau` (and :math:`\varepsilon \gtrsim
h^2`, the squared cell size, or mass cannot move between cells).

References:
    Jordan, Kinderlehrer, Otto (1998). The variational formulation of the Fokker-Planck equation. SIAM J. Math. Anal.
    Peyre (2015). Entropic approximation of Wasserstein gradient flows. SIAM J. Imaging Sciences 8(4).
    Chizat, Peyre, Schmitzer, Vialard (2018). Scaling algorithms for unbalanced optimal transport problems.
    Mathematics of Computation 87.
"""

from __future__ import annotations

import math

import torch

from ..._validation import as_tensor, check_finite, check_positive, check_weights
from ...geometry.grid import Grid
from ...results import Convergence, JKOResult
from ...solvers._loop import Progress, warn_not_converged
from ...solvers.marginals import Hard, Prox
from ...solvers.sinkhorn import DEFAULT_TOL, SinkhornData, sinkhorn_loop

__all__ = [
    "Congestion",
    "Entropy",
    "Functional",
    "JKOResult",
    "PorousMedium",
    "PotentialEnergy",
    "SumFunctional",
    "grid_coordinates",
    "jko_flow",
    "jko_step",
]

def _esum(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.sum(tuple(range(-k, 0)))


_NEWTON_STEPS = 12  # Lambert-W Newton steps: monotone from a start right of the root, then quadratic (float64: ~6)
_CAP_SLACK = 1e-3  # the congestion cap holds up to the inner tolerance; value() tolerates this relative excess


class Functional:
    r"""A separable convex energy :math:`F(\mu) = \sum_i \varphi_i(\mu_i)` of a histogram on a grid.

    Masses ``mu`` are per cell; with the cell volume ``h`` the density is :math:`\rho = \mu / h`, so the energies
    are those of the continuous density (grid-independent time scales). Add functionals with ``+``.
    """

    def terms(self) -> tuple[Functional, ...]:
        return (self,)

    def __add__(self, other):
        if not isinstance(other, Functional):
            return NotImplemented
        return SumFunctional(*self.terms(), *other.terms())

    def cell_energy(self, mu: torch.Tensor, volume: float) -> torch.Tensor:
        """:math:`\\varphi_i(\\mu_i)` per cell."""
        raise NotImplementedError

    def value(self, mu: torch.Tensor, volume: float = 1.0, ndim: int | None = None) -> torch.Tensor:
        """:math:`F(\\mu)`, summed over the last ``ndim`` dimensions (``None``: all of them)."""
        k = mu.dim() if ndim is None else ndim
        return self.cell_energy(mu, volume).sum(tuple(range(-k, 0)))

    def prox(self, log_z: torch.Tensor, sigma: float, volume: float = 1.0) -> torch.Tensor:
        r"""The KL proximal operator in the log domain: :math:`\log \arg\min_s \sigma F(s) + \mathrm{KL}(s|z)`."""
        return _prox(self.terms(), log_z, sigma, volume)

    def check(self, mu0: torch.Tensor, geom: Grid) -> None:
        """Validate against the initial measure and the grid (shapes, feasibility); raises ``ValueError``."""


class PotentialEnergy(Functional):
    r""":math:`F(\mu) = \int V d\mu = \sum_i V_i \mu_i`: a drift down :math:`\nabla V`.

    Args:
        V: the potential at the cells, a tensor broadcastable to the grid shape (see :func:`grid_coordinates`).

    Example:
        >>> PotentialEnergy(torch.tensor([0.0, 1.0])).value(torch.tensor([0.5, 0.5])).item()
        0.5
    """

    def __init__(self, V):
        self.V = as_tensor(V, "V")
        check_finite(self.V, "V")

    def cell_energy(self, mu, volume):
        return self.V.to(mu) * mu

    def check(self, mu0, geom):
        k = len(geom.source_shape)
        tail = tuple(self.V.shape)[::-1]
        if len(tail) > k or any(v not in (1, n) for v, n in zip(tail, geom.source_shape[::-1])):
            raise ValueError(f"V: expected a potential broadcastable to the grid shape {geom.source_shape}, got shape "
                             f"{tuple(self.V.shape)}")


class Entropy(Functional):
    r""":math:`F(\mu) = w \int \rho \log \rho\, dx = w \sum_i \mu_i \log(\mu_i / h)`: the heat flow
    :math:`\partial_t \rho = w \Delta \rho`.

    Example:
        >>> round(Entropy().value(torch.tensor([0.5, 0.5]), volume=0.5).item(), 6)  # uniform density 1: 0
        0.0
    """

    def __init__(self, weight: float = 1.0):
        check_positive(weight, "weight")
        self.weight = float(weight)

    def cell_energy(self, mu, volume):
        return self.weight * torch.xlogy(mu, mu / volume)


class PorousMedium(Functional):
    r""":math:`F(\mu) = \frac{w}{m - 1} \int \rho^m dx`: the porous-medium (``m > 1``) or fast-diffusion
    (``0 < m < 1``) equation :math:`\partial_t \rho = w \Delta \rho^m` (Renyi/Tsallis energy). Its prox is a
    Lambert-W equation per cell, solved by Newton.

    Example:
        >>> PorousMedium(m=2).value(torch.tensor([0.5, 0.5]), volume=0.5).item()
        1.0
    """

    def __init__(self, m: float = 2.0, weight: float = 1.0):
        check_positive(m, "m")
        check_positive(weight, "weight")
        if m == 1:
            raise ValueError("m: expected m > 0 and m != 1 (m = 1 is the entropy: use Entropy())")
        self.m, self.weight = float(m), float(weight)

    def cell_energy(self, mu, volume):
        return self.weight * volume * (mu / volume) ** self.m / (self.m - 1)


class Congestion(Functional):
    r"""The congestion constraint :math:`\rho \le \kappa` (crowd motion): 0 if :math:`\mu_i \le \kappa h`, else
    :math:`+\infty`. The prox is a min with the cap. Add a :class:`PotentialEnergy` to make the crowd move.

    Example:
        >>> Congestion(kappa=2.0).value(torch.tensor([0.5, 1.5]), volume=0.5).item()
        inf
    """

    def __init__(self, kappa: float):
        check_positive(kappa, "kappa")
        self.kappa = float(kappa)

    def cell_energy(self, mu, volume):
        over = mu > self.kappa * volume * (1 + _CAP_SLACK)
        return torch.where(over, torch.full_like(mu, torch.inf), torch.zeros_like(mu))

    def check(self, mu0, geom):
        k = len(geom.source_shape)
        capacity = self.kappa * geom.cell_volume * math.prod(geom.source_shape)
        mass = float(_esum(mu0, k).max())
        if mass >= capacity:
            raise ValueError(f"kappa: the congestion cap kappa * |domain| = {capacity:.4g} must exceed the mass of mu0 "
                             f"({mass:.4g}); no measure of that mass fits under the cap. Raise kappa")


class SumFunctional(Functional):
    """A sum of separable functionals (``F1 + F2``); at most one :class:`PorousMedium` term."""

    def __init__(self, *terms: Functional):
        if sum(isinstance(t, PorousMedium) for t in terms) > 1:
            raise ValueError("functional: at most one PorousMedium term per sum (its prox is a Lambert-W solve)")
        self._terms = terms

    def terms(self):
        return self._terms

    def cell_energy(self, mu, volume):
        return sum(t.cell_energy(mu, volume) for t in self._terms)

    def check(self, mu0, geom):
        for t in self._terms:
            t.check(mu0, geom)


def _lambert_w_exp(L: torch.Tensor) -> torch.Tensor:
    """:math:`W(e^L)` (Lambert W of a possibly huge argument): Newton on :math:`e^y + y = L`, :math:`W = e^y`."""
    y = torch.where(L < 1, L, torch.log(L.clamp_min(1.0)))  # right of the root of a convex increasing function
    for _ in range(_NEWTON_STEPS):
        ey = torch.exp(y)
        y = y - (ey + y - L) / (ey + 1)
    return torch.exp(y)


def _prox(terms, log_z, sigma, volume):
    r"""Per cell, the root in :math:`r = \log s` of :math:`(r - \log z) + \sigma \varphi'(e^r) = 0`, then the caps.

    Linear terms give :math:`A (r - r_0)`; a porous term adds :math:`B e^{k (r - \log h)}` (``k = m - 1``),
    whose root is :math:`r = r_0 - W(e^L)/k`, :math:`L = \log(\sigma w m / A) + k (r_0 - \log h)`.
    """
    lv = math.log(volume)
    A, num = 1.0, log_z
    for t in terms:
        if isinstance(t, PotentialEnergy):
            num = num - sigma * t.V.to(log_z)
        elif isinstance(t, Entropy):
            A += sigma * t.weight
            num = num + sigma * t.weight * (lv - 1.0)
    r = num / A
    finite = torch.isfinite(r)
    for t in terms:
        if isinstance(t, PorousMedium):
            k = t.m - 1.0
            L = math.log(sigma * t.weight * t.m / A) + k * (r - lv)
            r = r - _lambert_w_exp(torch.where(finite, L, torch.zeros_like(L))) / k
    for t in terms:
        if isinstance(t, Congestion):
            r = r.clamp_max(math.log(t.kappa * volume))
    return torch.where(finite, r, torch.full_like(r, -torch.inf))


def grid_coordinates(geom: Grid) -> tuple[torch.Tensor, ...]:
    """The cell positions of a grid, one ``(n_1, ..., n_d)`` tensor per axis (for potentials ``V(x)``).

    Example:
        >>> x, y = grid_coordinates(Grid((2, 3), dtype=torch.float64))
        >>> x[1, 0].item(), y[0, 2].item()
        (0.5, 0.6666666666666666)
    """
    return tuple(torch.meshgrid(*geom.axes(), indexing="ij"))


def jko_step(mu: torch.Tensor, geom: Grid, functional: Functional, tau: float, eps: float, *, tol: float | None = None,
             max_iter: int = 2000, check_every: int = 10, init: torch.Tensor | None = None,
             omega: float | str = "auto"):
    r"""One entropic JKO step :math:`\mu_{t+1} = \arg\min F + W_\varepsilon(\cdot, \mu)/(2\tau)` (no validation).

    The Sinkhorn loop of :mod:`monge.solvers.sinkhorn` with a hard first marginal ``mu`` and the free second
    marginal through the prox of :math:`2\tau F` (:class:`~monge.solvers.marginals.Prox`).

    Returns ``(mu_next, g, n_iters, error, trace)``: the new measure (exactly the mass of ``mu``: it is the second
    marginal of a plan whose first marginal is ``mu``), the dual potential ``g`` (to warm-start the next step),
    the inner iterations, the final error per batch element (both optimality conditions of the returned plan,
    l1), the trace of errors at check points. It does not warn: :func:`jko_flow` reports once.
    """
    data = SinkhornData(Hard(mu), Prox(functional, 2.0 * tau / eps, geom.cell_volume, mu), len(geom.source_shape))

    def finish(state):  # the exact projection on P 1 = mu, then the free marginal of that plan
        f, g = data.f_update(geom, state[1], eps)[0], state[1]
        Sf = data.sf(geom, f, eps)
        return (data.mb.marginal(g, Sf, eps), g), data.error((f, g, Sf, state[3]), eps)

    g = mu.new_zeros(mu.shape) if init is None else init
    run = sinkhorn_loop(geom, data, data.f_update(geom, g, eps)[0], g, eps, max_iter=max_iter, check_every=check_every,
                        tol=DEFAULT_TOL[mu.dtype] if tol is None else tol, omega=omega, finish=finish, quiet=True,
                        check_start=False)
    (mu_next, g), conv = run.state, run.convergence
    return mu_next, g, run.n_iters, conv.error, conv.errors


def _check_inputs(mu0, geom, functional, tau, eps, n_steps):
    mu0 = as_tensor(mu0, "mu0")
    if geom is None:
        geom = Grid(tuple(mu0.shape), dtype=mu0.dtype, device=mu0.device)
    if not isinstance(geom, Grid):
        raise TypeError(f"grid_or_geom: expected a monge.geometry.Grid or None, got {type(geom).__name__}")
    if geom.p != 2.0:
        raise ValueError(f"grid_or_geom: the JKO scheme uses the squared distance, expected a Grid with p=2, got "
                         f"p={geom.p:g}")
    k = len(geom.source_shape)
    if mu0.dim() < k or tuple(mu0.shape[mu0.dim() - k:]) != geom.source_shape:
        raise ValueError(f"mu0: expected shape (..., {', '.join(map(str, geom.source_shape))}) (the grid shape), got "
                         f"{tuple(mu0.shape)}")
    if mu0.dtype != geom.dtype or mu0.device != geom.device:
        raise TypeError(f"mu0: has dtype {mu0.dtype} on {mu0.device} but the grid has dtype {geom.dtype} on "
                        f"{geom.device}; build Grid(..., dtype=mu0.dtype, device=mu0.device)")
    check_weights(mu0, "mu0", geom.source_shape, mu0, size_name="grid shape")  # the one histogram validator
    if not isinstance(functional, Functional):
        raise TypeError(f"functional: expected a monge.apps.flows Functional (PotentialEnergy, Entropy, PorousMedium, "
                        f"Congestion or a sum of them), got {type(functional).__name__}")
    check_positive(tau, "tau")
    check_positive(eps, "eps")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"n_steps: expected a nonnegative int, got {n_steps!r}")
    functional.check(mu0, geom)
    return mu0, geom


def jko_flow(mu0, grid_or_geom: Grid | None, functional: Functional, tau: float, eps: float, n_steps: int, *,
             max_iter: int = 2000, tol: float | None = None, check_every: int = 10, callback=None,
             verbose: bool = False) -> JKOResult:
    r"""A Wasserstein gradient flow of ``functional`` on a grid by ``n_steps`` entropic JKO steps.

    .. math::
        \mu_{t+1} = \arg\min_\mu F(\mu) + \frac{1}{2\tau} W_\varepsilon(\mu, \mu_t), \qquad
        \text{e.g. } F = \int V d\mu + \int \rho \log \rho: \ \partial_t \rho = \nabla\cdot(\rho \nabla V) + \Delta \rho

    Args:
        mu0: ``(..., n_1, ..., n_d)`` nonnegative masses per cell (leading dimensions: independent flows).
        grid_or_geom: a :class:`~monge.geometry.Grid` with ``p=2`` (its spacing sets the cell volume that turns
            masses into densities), or ``None`` for ``Grid(mu0.shape)`` on :math:`[0, 1)^d`.
        functional: :class:`PotentialEnergy`, :class:`Entropy`, :class:`PorousMedium`, :class:`Congestion` or a sum.
        tau: the time step; eps: the entropic temperature in cost units (squared lengths): the flow carries an
            extra blur of about ``eps / 2`` variance per step (module docstring).
        n_steps: JKO steps; max_iter: cap on inner iterations per step; tol: l1 error of the inner plan on both
            optimality conditions (the first marginal, the prox condition of the free one; default 1e-7 float64,
            2e-5 float32), checked every ``check_every`` iterations.
        callback: ``callback(step, mu)`` after each step. verbose: a tqdm bar over the steps.

    Returns:
        :class:`JKOResult`; a step that hits ``max_iter`` is reported (``converged=False``) and warned once per
        flow, not raised.

    Example:
        >>> import torch
        >>> from monge.apps.flows import Entropy
        >>> geom = Grid(32, dtype=torch.float64)
        >>> x, = grid_coordinates(geom)
        >>> mu0 = torch.exp(-(x - 0.5) ** 2 / (2 * 0.05 ** 2)); mu0 = mu0 / mu0.sum()
        >>> res = jko_flow(mu0, geom, Entropy(), tau=1e-3, eps=2e-4, n_steps=3)
        >>> res.snapshots.shape, res.convergence.all_converged
        (torch.Size([4, 32]), True)
        >>> bool(res.energies[-1] < res.energies[0]), round(float(res.final.sum()), 12)
        (True, 1.0)
    """
    mu0, geom = _check_inputs(mu0, grid_or_geom, functional, tau, eps, n_steps)
    k, vol = len(geom.source_shape), geom.cell_volume
    snaps, energies, traces, iters, errs = [mu0], [functional.value(mu0, vol, k)], [], [], []
    bar = Progress(n_steps, verbose, "jko")
    mu, g = mu0, None
    for step in range(n_steps):
        mu, g, it, err, trace = jko_step(mu, geom, functional, tau, eps, tol=tol, max_iter=max_iter,
                                         check_every=check_every, init=g)
        snaps.append(mu)
        energies.append(functional.value(mu, vol, k))
        traces.append(trace)
        iters.append(it)
        errs.append(err)
        bar.update(step + 1, float(err.max()), eps)
        if callback is not None:
            callback(step + 1, mu)
    bar.close()
    return JKOResult(torch.stack(snaps), torch.stack(energies), _convergence(errs, iters, mu0, k, tol, max_iter),
                     tuple(traces), float(tau), float(eps))


def _convergence(errs, iters, mu0, k, tol, max_iter) -> Convergence:
    """One record for the whole flow, ``(n_steps, *batch)``, and one warning."""
    batch = mu0.shape[: mu0.dim() - k]
    tol = DEFAULT_TOL[mu0.dtype] if tol is None else tol
    err = torch.stack(errs) if errs else mu0.new_zeros((0, *batch))
    n_iters = torch.tensor(iters, dtype=torch.int64, device=mu0.device).reshape(-1, *([1] * len(batch)))
    conv = Convergence.build(err, tol, n_iters.expand(err.shape).clone(), errors=err)
    warn_not_converged("jko_flow", conv.converged, err, tol, max_iter)
    return conv
