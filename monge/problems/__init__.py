"""Problems: data plus marginal constraints or penalties, validated once."""

from .barycenter import BarycenterProblem
from .linear import LinearProblem

__all__ = ["LinearProblem", "BarycenterProblem"]
