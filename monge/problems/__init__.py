"""Problems: data plus marginal constraints or penalties, validated once."""

from .linear import LinearProblem

__all__ = ["LinearProblem"]
