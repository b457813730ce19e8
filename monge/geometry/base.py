"""The geometry interface: everything a solver needs to know about the cost."""

from __future__ import annotations

import torch

__all__ = ["Geometry"]


class Geometry:
    """A ground cost between a source support of size ``n`` and a target support of size ``m``.

    Subclasses own every computation with the cost; solvers never look inside. ``cost()`` materialises the
    ``(..., n, m)`` matrix when that is affordable.
    """

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``: the sizes of the two supports."""
        raise NotImplementedError

    @property
    def event_ndim(self) -> int:
        """How many trailing dimensions of weights/potentials index the support (1; a d-D grid: d)."""
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        """Leading batch dimensions (``torch.Size([])`` for a single problem)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def cost(self) -> torch.Tensor:
        """The dense cost matrix ``(..., n, m)`` (differentiable w.r.t. whatever it was built from)."""
        raise NotImplementedError

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        r"""The soft-min (log-sum-exp) reduction of the cost against a potential, the core of entropic OT.

        .. math::
            \text{dim}=1:\quad \mathrm{out}_i = -\varepsilon \log \sum_j \exp\big((h_j - C_{ij})/\varepsilon\big),
            \qquad
            \text{dim}=0:\quad \mathrm{out}_j = -\varepsilon \log \sum_i \exp\big((h_i - C_{ij})/\varepsilon\big)

        Args:
            h: ``(..., m)`` for ``dim=1`` (reduce over the target index), ``(..., n)`` for ``dim=0``; usually a
                potential plus ``eps * log(weights)``; ``-inf`` entries (zero weights) are allowed.
            eps: the temperature, a positive float in cost units.
            dim: 1 to reduce over targets (gives a function of the source index), 0 over sources.

        Returns:
            ``(..., n)`` for ``dim=1``, ``(..., m)`` for ``dim=0``; differentiable in ``h`` and in the data the
            geometry was built from (points), computed stably in the log domain.
        """
        raise NotImplementedError

    @property
    def symmetric(self) -> bool:
        """Whether source and target are the same support and cost (self-transport, e.g. OT(a, a))."""
        return False

    def cost_scale(self) -> float:
        """An upper bound of the largest cost (the first temperature of eps-scaling); subclasses do it cheaper."""
        return float(self.cost().detach().max())

    def detach(self) -> "Geometry":
        """The same geometry on detached data: solver loops run on it, then one differentiable step follows."""
        raise NotImplementedError

    def like(self) -> torch.Tensor:
        """A tensor carrying the geometry's dtype and device, for allocating weights and potentials."""
        raise NotImplementedError
