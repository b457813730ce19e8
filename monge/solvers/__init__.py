"""Solvers: small configured callables, ``solver(problem) -> result``."""

from .barycenter import Barycenter
from .exact import Assignment, NetworkSimplex
from .gromov import EntropicGromovWasserstein, GromovWasserstein
from .schedules import EpsScaling
from .sinkhorn import Sinkhorn

__all__ = ["NetworkSimplex", "Assignment", "Sinkhorn", "EpsScaling", "Barycenter", "GromovWasserstein",
           "EntropicGromovWasserstein"]
