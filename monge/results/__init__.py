"""Every OT result type, and :class:`Convergence`: frozen dataclasses with the same names everywhere
(``value, f, g, plan, marginals, convergence``). One module per family."""

from .convergence import STATUSES, Convergence
from .linear import AssignmentResult, ExactResult, SinkhornResult

__all__ = ["STATUSES", "Convergence", "ExactResult", "AssignmentResult", "SinkhornResult"]
from .free_support import FreeSupportResult, KMeansResult  # noqa: E402
from .apps import (  # noqa: E402
    CoordinatesResult,
    DictionaryResult,
    DisplacementInterpolation,
    JKOResult,
    ParticleFlowResult,
    UnmixResult,
)

__all__ += ["FreeSupportResult", "KMeansResult", "CoordinatesResult", "DictionaryResult",
            "DisplacementInterpolation", "JKOResult", "ParticleFlowResult", "UnmixResult"]
from .barycenter import BarycenterResult  # noqa: E402

__all__ += ["BarycenterResult"]
from .graph import GraphW1Result  # noqa: E402
from .gromov import GWResult  # noqa: E402

__all__ += ["GraphW1Result", "GWResult"]
from .semidiscrete import LloydResult, SemidiscreteResult  # noqa: E402
__all__ += ["SemidiscreteResult", "LloydResult"]
