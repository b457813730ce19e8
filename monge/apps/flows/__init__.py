"""Gradient flows: particle flows of an OT loss, and entropic JKO steps on grids."""

from . import jko, particles
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

__all__ = [*jko.__all__, *particles.__all__]
