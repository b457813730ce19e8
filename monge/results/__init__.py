"""Every OT result type, and :class:`Convergence`: frozen dataclasses with the same names everywhere
(``value, f, g, plan, marginals, convergence``). One module per family."""

from .convergence import STATUSES, Convergence
from .linear import AssignmentResult, ExactResult, SinkhornResult

__all__ = ["STATUSES", "Convergence", "ExactResult", "AssignmentResult", "SinkhornResult"]
