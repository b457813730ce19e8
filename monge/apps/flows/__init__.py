"""Gradient flows: particle flows of an OT loss, and entropic JKO steps on grids."""

from .jko import (
    Congestion,
    Entropy,
    Functional,
    JKOResult,
    PorousMedium,
    PotentialEnergy,
    SumFunctional,
    grid_coordinates,
    jko_flow,
    jko_step,
)
from .particles import LOSSES, ParticleFlowResult, particle_flow

__all__ = [
    "Congestion",
    "Entropy",
    "LOSSES",
    "ParticleFlowResult",
    "Functional",
    "JKOResult",
    "PorousMedium",
    "PotentialEnergy",
    "SumFunctional",
    "grid_coordinates",
    "jko_flow",
    "jko_step",
    "particle_flow",
]
