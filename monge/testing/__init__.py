"""Closed forms and tolerances for testing OT solvers (used by monge's own tests, useful for users')."""

from .closed_forms import (
    dirac_wasserstein,
    gaussian_w2,
    grid_cost,
    grid_histograms,
    permutation_problem,
    quantile_wasserstein_1d,
)
from .tolerances import assert_close, tol

__all__ = [
    "assert_close",
    "tol",
    "dirac_wasserstein",
    "gaussian_w2",
    "permutation_problem",
    "grid_histograms",
    "grid_cost",
    "quantile_wasserstein_1d",
]
