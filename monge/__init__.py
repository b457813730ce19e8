"""monge: computational optimal transport for machine learning and imaging, in PyTorch.

The short public surface; see the README for conventions (cost = |x - y|^p, eps in cost units). The pipeline is
``(x, a), (y, b) -> geometry -> problem -> solver -> result``: :mod:`monge.geometry`, :mod:`monge.problems`,
:mod:`monge.solvers`, :mod:`monge.results`; one-line shortcuts in :mod:`monge.api`. Applications
(:mod:`monge.apps`) and the command line (:mod:`monge.cli`) load on first use, so ``import monge`` stays fast.
"""

import importlib as _importlib

from . import geometry, nn, problems, results
from .api import (
    assignment,
    barycenter,
    emd,
    fused_gromov_wasserstein,
    gromov_wasserstein,
    interpolate_histograms,
    semidiscrete,
    solve,
    solve_grid,
    solve_points,
    wasserstein,
)
from .divergences import mmd, sinkhorn_divergence, sinkhorn_divergence_hist
from .geometry import DenseCost, Grid, GridSpec, PointCloud
from .problems import BarycenterProblem, LinearProblem, QuadraticProblem
from .results import AssignmentResult, Convergence, ExactGWResult, ExactResult, GWResult, SinkhornResult
from .solvers.barycenter import Barycenter, BarycenterResult
from .solvers.exact.assignment import Assignment
from .solvers.exact.lp_barycenter import lp_barycenter
from .solvers.exact.graph import grid_graph, w1_graph
from .solvers.exact.network_simplex import NetworkSimplex
from .solvers.gromov import EntropicGromovWasserstein, GromovWasserstein, gromov_barycenter
from .solvers.exact.one_d import solve_1d, wasserstein_1d
from .solvers.exact.sliced import max_sliced_wasserstein, sliced_wasserstein
from .solvers.free_support import FreeSupportBarycenter, FreeSupportResult, free_support_barycenter
from .solvers.partial import partial_wasserstein
from .solvers.schedules import EpsScaling
from .solvers.sinkhorn import Sinkhorn

__version__ = "0.1.0"

#: Names served from application modules, imported on first access (``monge.kmeans`` loads ``monge.apps.kmeans``).
_LAZY = {
    "barycentric_coordinates": "monge.apps.coordinates",
    "CoordinatesResult": "monge.apps.coordinates",
    "CoordinatesFit": "monge.apps.coordinates",
    "kmeans": "monge.apps.kmeans",
    "KMeans": "monge.apps.kmeans",
    "KMeansResult": "monge.apps.kmeans",
    "kmeans_inertia": "monge.apps.kmeans",
    "OTDomainAdapter": "monge.apps.domain_adaptation",
    "displacement_interpolation": "monge.apps.interpolation",
    "DisplacementInterpolation": "monge.apps.interpolation",
    "gaussian_geodesic": "monge.apps.interpolation",
    "jko_flow": "monge.apps.flows",
    "particle_flow": "monge.apps.flows",
    "color_transfer": "monge.apps.color",
    "register": "monge.apps.registration",
    "bures_wasserstein": "monge.apps.gaussian",
    "gaussian_map": "monge.apps.gaussian",
    "gaussian_barycenter": "monge.apps.gaussian",
    "ot_pairs": "monge.apps.minibatch",
    "quadratic_ot": "monge.solvers.quadratic_reg",
    "laguerre_lloyd": "monge.solvers.semidiscrete",
    "w1_map": "monge.apps.w1_map",
}
#: Subpackages served lazily under a short name (``monge.gen`` is kept for earlier code).
_LAZY_MODULES = {"apps": "monge.apps", "flows": "monge.apps.flows", "gen": "monge.apps.generative",
                 "cli": "monge.cli", "data": "monge.data", "testing": "monge.testing"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
    elif name in _LAZY_MODULES:
        value = _importlib.import_module(_LAZY_MODULES[name])
    else:
        raise AttributeError(f"module 'monge' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


__all__ = [
    "solve",
    "solve_points",
    "solve_grid",
    "wasserstein",
    "wasserstein_1d",
    "solve_1d",
    "sliced_wasserstein",
    "max_sliced_wasserstein",
    "emd",
    "partial_wasserstein",
    "semidiscrete",
    "w1_graph",
    "grid_graph",
    "gromov_wasserstein",
    "gromov_barycenter",
    "fused_gromov_wasserstein",
    "GromovWasserstein",
    "EntropicGromovWasserstein",
    "QuadraticProblem",
    "GWResult",
    "ExactGWResult",
    "assignment",
    "sinkhorn_divergence",
    "sinkhorn_divergence_hist",
    "barycenter",
    "interpolate_histograms",
    "Barycenter",
    "BarycenterProblem",
    "BarycenterResult",
    "lp_barycenter",
    "free_support_barycenter",
    "FreeSupportBarycenter",
    "FreeSupportResult",
    "mmd",
    "DenseCost",
    "PointCloud",
    "Grid",
    "GridSpec",
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
    "problems",
    "results",
    "nn",
    *_LAZY,
]
