"""Exact (unregularised) OT solvers."""

from .assignment import Assignment
from .network_simplex import NetworkSimplex

__all__ = ["NetworkSimplex", "Assignment"]
