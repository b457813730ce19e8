"""Solvers: small configured callables, ``solver(problem) -> result``."""

from .exact import Assignment, NetworkSimplex
from .schedules import EpsScaling
from .sinkhorn import Sinkhorn

__all__ = ["NetworkSimplex", "Assignment", "Sinkhorn", "EpsScaling"]
