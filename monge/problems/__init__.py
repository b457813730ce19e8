"""Problems: data plus marginal constraints or penalties, validated once."""

from .barycenter import BarycenterProblem
from .linear import LinearProblem
from .quadratic import QuadraticProblem

__all__ = ["LinearProblem", "BarycenterProblem", "QuadraticProblem"]
