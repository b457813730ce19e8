"""``torch.nn`` modules wrapping monge's losses (no math of their own)."""

from .losses import MMDLoss, SinkhornLoss
from .multilabel import WassersteinLoss

__all__ = ["SinkhornLoss", "MMDLoss", "WassersteinLoss"]
