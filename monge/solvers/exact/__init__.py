"""Exact (unregularised) OT solvers."""

from .assignment import Assignment
from .graph import grid_graph, w1_graph
from .multiscale import multiscale_ot
from .network_simplex import NetworkSimplex
from .sparse import solve_sparse

__all__ = ["NetworkSimplex", "Assignment", "w1_graph", "grid_graph", "solve_sparse", "multiscale_ot"]
