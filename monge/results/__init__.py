"""Every OT result type, and :class:`Convergence`: frozen dataclasses with the same names everywhere
(``value, f, g, plan, marginals, convergence``). One module per family."""

from .apps import (
    CoordinatesResult,
    DictionaryResult,
    DisplacementInterpolation,
    JKOResult,
    ParticleFlowResult,
    UnmixResult,
)
from .barycenter import BarycenterResult
from .convergence import STATUSES, Convergence
from .free_support import FreeSupportResult, KMeansResult
from .graph import GraphW1Result
from .gromov import ExactGWResult, GWResult
from .linear import AssignmentResult, ExactResult, SinkhornResult
from .partial import PartialResult
from .semidiscrete import LloydResult, SemidiscreteResult

__all__ = [
    "STATUSES",
    "Convergence",
    "ExactResult",
    "AssignmentResult",
    "SinkhornResult",
    "PartialResult",
    "BarycenterResult",
    "FreeSupportResult",
    "KMeansResult",
    "CoordinatesResult",
    "DictionaryResult",
    "DisplacementInterpolation",
    "JKOResult",
    "ParticleFlowResult",
    "UnmixResult",
    "GraphW1Result",
    "GWResult",
    "ExactGWResult",
    "SemidiscreteResult",
    "LloydResult",
]
