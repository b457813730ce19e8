"""Stable primitives shared by the solvers: log-domain reductions, safe logs."""

from .logsumexp import dense_softmin, log_weights

__all__ = ["dense_softmin", "log_weights"]
