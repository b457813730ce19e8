r"""Epsilon schedules: anneal the temperature from a large value down to the target ``eps``."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .._validation import check_int, check_positive

__all__ = ["EpsScaling"]


@dataclass(frozen=True)
class EpsScaling:
    r"""Geometric epsilon-scaling: :math:`\varepsilon_k = \max(\varepsilon, \varepsilon_0\,\text{factor}^k)`.

    Each annealing stage runs ``iters_per_stage`` Sinkhorn iterations; then the solver iterates at the target
    ``eps`` until its stopping rule holds. Large ``eps`` smooths the dual problem, so early stages move the
    potentials quickly near their final values (Kosowsky & Yuille 1994; Schmitzer 2019; Feydy 2020).

    Args:
        factor: ratio between consecutive temperatures, in (0, 1). GeomLoss's ``scaling`` for cost degree p
            corresponds to ``factor = scaling ** p``.
        eps_init: the first temperature (cost units); ``None``: the largest cost (the diameter to the power p).
        iters_per_stage: iterations at each intermediate temperature.

    Example:
        >>> EpsScaling(factor=0.5, eps_init=1.0).temperatures(0.1)
        [1.0, 0.5, 0.25, 0.125, 0.1]
    """

    factor: float = 0.5
    eps_init: float | None = None
    iters_per_stage: int = 1

    def __post_init__(self):
        if not isinstance(self.factor, numbers.Real) or isinstance(self.factor, bool):
            raise TypeError(f"factor: expected a number in (0, 1), got {type(self.factor).__name__}")
        if not 0 < self.factor < 1:
            raise ValueError(f"factor: expected a number in (0, 1), got {self.factor}")
        check_positive(self.eps_init, "eps_init", allow_none=True)
        check_int(self.iters_per_stage, "iters_per_stage")

    def temperatures(self, eps: float, max_cost: float | None = None) -> list[float]:
        """The annealing temperatures, ending with ``eps`` itself.

        ``max_cost`` (the geometry's cost scale, the default first temperature) must be finite: an infinite one
        means that the costs themselves overflow the dtype, which no temperature can repair.
        """
        if max_cost is not None and not math.isfinite(max_cost):
            raise ValueError(
                f"the largest cost is {max_cost}: the costs overflow the floating-point range (points near 1e154 "
                "give squared distances beyond 1e308 in float64, near 1e19 in float32); rescale the inputs (e.g. "
                "x / s, y / s and eps / s**p) or use a cost of lower degree"
            )
        start = self.eps_init if self.eps_init is not None else (max_cost or eps)
        if start <= eps:
            return [eps]
        k = int(math.ceil(math.log(eps / start) / math.log(self.factor)))
        return [start * self.factor**i for i in range(k)] + [eps]
