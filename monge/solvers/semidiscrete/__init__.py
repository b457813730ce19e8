"""Semi-discrete OT: a density to a discrete measure through Laguerre cells (exact 2-D/3-D Newton, SGD in any d)."""

from .api import semidiscrete
from .lloyd import laguerre_lloyd

__all__ = ["semidiscrete", "laguerre_lloyd"]
