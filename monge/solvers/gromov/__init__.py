"""Gromov-Wasserstein: exact (conditional gradient, certified by the Frank-Wolfe gap) and entropic (mirror descent),
batches, and the GW barycenter."""

from .api import fused_gromov_wasserstein, gromov_wasserstein
from .barycenter import GWBarycenterResult, gromov_barycenter
from .cg import GromovWasserstein
from .common import GWResult
from .entropic import EntropicGromovWasserstein

__all__ = ["GWResult", "GromovWasserstein", "EntropicGromovWasserstein", "gromov_wasserstein",
           "fused_gromov_wasserstein", "gromov_barycenter", "GWBarycenterResult"]
