"""``torch.nn`` modules wrapping monge's losses (no math of their own)."""

from .losses import MMDLoss, SinkhornLoss

__all__ = ["SinkhornLoss", "MMDLoss"]
