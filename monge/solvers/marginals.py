r"""The marginal updates of scaling algorithms, as objects: one Sinkhorn loop for every kind of marginal.

A side of the plan :math:`P = \exp((f \oplus g - C)/\varepsilon)\, a \otimes b` carries weights ``w`` (its
reference measure) and a penalty :math:`\varphi` on the marginal :math:`m` of ``P`` along it. Given the soft-min
:math:`S` of the other side (:math:`m = w\, e^{(f - S)/\varepsilon}`), the block maximisation of the dual in ``f``
is the KL proximal step of :math:`\varphi / \varepsilon` (Chizat, Peyre, Schmitzer, Vialard 2018):

.. math::
    \log m^+ = \mathrm{prox}^{\mathrm{KL}}_{\varphi/\varepsilon}(\log w - S/\varepsilon), \qquad
    f^+ = \varepsilon (\log m^+ - \log w) + S

- :class:`Hard`: :math:`\varphi = \iota_{\{w\}}`, :math:`f^+ = S` (balanced OT).
- :class:`KL`: :math:`\varphi = \rho\,\mathrm{KL}(\cdot | w)`, :math:`f^+ = \kappa S`,
  :math:`\kappa = \rho/(\rho + \varepsilon)` (unbalanced OT; one side only: semi-unbalanced).
- :class:`Prox`: :math:`\varphi = 2\tau F` for a separable functional ``F`` with its own KL prox, on counting-
  measure weights (the free marginal of an entropic JKO step, :mod:`monge.apps.flows.jko`).

Each also gives its optimality residual, :math:`\|m - m^\star\|_1` (units of the weights), where :math:`m^\star`
is the marginal the first-order condition asks for; :class:`Hard` and :class:`KL` give their dual term.
"""

from __future__ import annotations

import torch

from ..ops.logsumexp import log_weights

__all__ = ["Marginal", "Hard", "KL", "Prox"]


def _esum(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.sum(tuple(range(-k, 0)))


class Marginal:
    """A constraint or penalty on one marginal of the plan, with weights ``w (*batch, *support)``."""

    def __init__(self, w: torch.Tensor):
        self.w, self.lw = w, log_weights(w)

    def update(self, S: torch.Tensor, eps: float) -> torch.Tensor:
        """The potential maximising the dual given the other side's soft-min ``S``."""
        raise NotImplementedError

    def target(self, f: torch.Tensor, S: torch.Tensor, eps: float) -> torch.Tensor:
        """The marginal that the first-order condition asks for at ``(f, S)``."""
        raise NotImplementedError

    def marginal(self, f: torch.Tensor, S: torch.Tensor, eps: float) -> torch.Tensor:
        """The plan's marginal along this side, :math:`w e^{(f - S)/\\varepsilon}`."""
        return torch.exp(self.lw + (f - S) / eps)

    def residual(self, f: torch.Tensor, S: torch.Tensor, eps: float, k: int) -> torch.Tensor:
        """:math:`\\|m - m^\\star\\|_1` over the last ``k`` dimensions (units of the weights)."""
        return _esum((self.marginal(f, S, eps) - self.target(f, S, eps)).abs(), k)

    def conjugate(self, f: torch.Tensor, k: int) -> torch.Tensor:
        """This side's term of the dual objective, :math:`-\\varphi^*(-f)`."""
        raise NotImplementedError(f"{type(self).__name__}: no dual objective")


class Hard(Marginal):
    """The hard constraint :math:`m = w` (balanced side).

    Example:
        >>> m = Hard(torch.tensor([0.5, 0.5]))
        >>> m.update(torch.tensor([1.0, 2.0]), 0.1).tolist(), float(m.residual(torch.zeros(2), torch.zeros(2), 1., 1))
        ([1.0, 2.0], 0.0)
    """

    def update(self, S, eps):
        return S

    def target(self, f, S, eps):
        return self.w

    def conjugate(self, f, k):
        return _esum(self.w * f, k)


class KL(Marginal):
    r""":math:`\rho\,\mathrm{KL}(m | w)` (unbalanced side): :math:`f^+ = \kappa S`, first-order condition
    :math:`m = w e^{-f/\rho}`.

    Example:
        >>> KL(torch.tensor([1.0]), rho=1.0).update(torch.tensor([2.0]), 1.0).item()  # kappa = 1/2
        1.0
    """

    def __init__(self, w: torch.Tensor, rho: float):
        super().__init__(w)
        self.rho = float(rho)

    def kappa(self, eps: float) -> float:
        return self.rho / (self.rho + eps)

    def update(self, S, eps):
        return self.kappa(eps) * S

    def target(self, f, S, eps):
        return self.w * torch.exp(-f / self.rho)

    def conjugate(self, f, k):
        return -self.rho * _esum(self.w * torch.expm1(-f / self.rho), k)


class Prox(Marginal):
    r"""The free marginal of an entropic JKO step: :math:`\varphi = \sigma\varepsilon F` on counting-measure weights
    (``w = 1``), through ``functional.prox(log z, sigma, volume)`` (the log of
    :math:`\arg\min_s \sigma F(s) + \mathrm{KL}(s | z)`); cells the prox empties get a ``-inf`` potential.

    Example:
        >>> from monge.apps.flows import PotentialEnergy
        >>> p = Prox(PotentialEnergy(torch.tensor([0.0, 1.0])), sigma=1.0, volume=1.0, like=torch.zeros(2))
        >>> [round(v, 4) for v in p.update(torch.zeros(2), 1.0).tolist()]  # s = z e^{-V}
        [0.0, -1.0]
    """

    def __init__(self, functional, sigma: float, volume: float, like: torch.Tensor):
        super().__init__(torch.ones_like(like))
        self.functional, self.sigma, self.volume = functional, float(sigma), float(volume)

    def _log_target(self, S, eps):
        return self.functional.prox(self.lw - S / eps, self.sigma, self.volume)

    def update(self, S, eps):
        log_s = self._log_target(S, eps)
        return torch.where(torch.isfinite(log_s), eps * (log_s - self.lw) + S, torch.full_like(S, -torch.inf))

    def target(self, f, S, eps):
        return torch.exp(self._log_target(S, eps))
