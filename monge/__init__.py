"""monge: computational optimal transport for machine learning and imaging, in PyTorch.

The short public surface; see the README for conventions (cost = |x - y|^p, eps in cost units).
"""

from . import flows, gen, geometry, nn, problems, results
from .apps.coordinates import CoordinatesResult, barycentric_coordinates
from .divergences import mmd, sinkhorn_divergence, sinkhorn_divergence_hist
from .flows import jko_flow, particle_flow
from .functional import assignment, emd, solve, solve_grid, solve_points, wasserstein
from .geometry import DenseCost, PointCloud
from .interpolation import (
    DisplacementInterpolation,
    displacement_interpolation,
    gaussian_geodesic,
)
from .problems import BarycenterProblem, LinearProblem
from .results import AssignmentResult, Convergence, ExactResult, SinkhornResult
from .solvers.barycenter import Barycenter, BarycenterResult
from .solvers.barycenter_functional import barycenter, interpolate_histograms
from .solvers.exact.assignment import Assignment
from .solvers.exact.lp_barycenter import lp_barycenter
from .solvers.exact.network_simplex import NetworkSimplex
from .solvers.exact.one_d import wasserstein_1d
from .solvers.exact.sliced import sliced_wasserstein
from .solvers.free_support import (
    FreeSupportBarycenter,
    FreeSupportResult,
    free_support_barycenter,
)
from .solvers.kmeans import KMeans, KMeansResult, kmeans
from .solvers.schedules import EpsScaling
from .solvers.sinkhorn import Sinkhorn

__version__ = "0.1.0"

__all__ = [
    "solve",
    "solve_points",
    "solve_grid",
    "wasserstein",
    "wasserstein_1d",
    "sliced_wasserstein",
    "emd",
    "assignment",
    "sinkhorn_divergence",
    "sinkhorn_divergence_hist",
    "barycenter",
    "interpolate_histograms",
    "Barycenter",
    "BarycenterProblem",
    "BarycenterResult",
    "lp_barycenter",
    "barycentric_coordinates",
    "CoordinatesResult",
    "free_support_barycenter",
    "FreeSupportBarycenter",
    "FreeSupportResult",
    "kmeans",
    "KMeans",
    "KMeansResult",
    "displacement_interpolation",
    "DisplacementInterpolation",
    "gaussian_geodesic",
    "mmd",
    "DenseCost",
    "PointCloud",
    "LinearProblem",
    "NetworkSimplex",
    "Assignment",
    "Sinkhorn",
    "EpsScaling",
    "ExactResult",
    "AssignmentResult",
    "SinkhornResult",
    "Convergence",
    "geometry",
    "flows",
    "gen",
    "jko_flow",
    "particle_flow",
    "problems",
    "results",
    "nn",
]
