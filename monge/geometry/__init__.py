"""Geometries: the ground cost and every computation with it."""

from .base import Geometry
from .costs import CallableCost, Cosine, Cost, Euclidean, SqEuclidean, get_cost
from .dense import DenseCost
from .grid import Grid
from .pointcloud import PointCloud
from .sharded import ShardedPointCloud
from .spec import GridSpec

__all__ = [
    "Geometry",
    "DenseCost",
    "PointCloud",
    "ShardedPointCloud",
    "Grid",
    "GridSpec",
    "Cost",
    "SqEuclidean",
    "Euclidean",
    "Cosine",
    "CallableCost",
    "get_cost",
]
