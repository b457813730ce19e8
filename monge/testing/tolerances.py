"""Tolerances keyed by dtype, in one place."""

from __future__ import annotations

import torch

__all__ = ["tol", "assert_close"]

_TOL = {
    torch.float64: {"rtol": 1e-9, "atol": 1e-12},
    torch.float32: {"rtol": 1e-4, "atol": 1e-6},
}


def tol(dtype: torch.dtype, scale: float = 1.0) -> dict:
    """``{"rtol", "atol"}`` for comparisons in ``dtype``, optionally loosened by ``scale``."""
    t = _TOL[dtype]
    return {"rtol": t["rtol"] * scale, "atol": t["atol"] * scale}


def assert_close(actual, expected, *, scale: float = 1.0, msg: str | None = None) -> None:
    """``torch.testing.assert_close`` with monge's dtype-keyed tolerances (``scale`` loosens them).

    Example:
        >>> import torch
        >>> assert_close(torch.tensor(1.0, dtype=torch.float64), 1.0 + 1e-12)
    """
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected, dtype=actual.dtype, device=actual.device)
    torch.testing.assert_close(actual, expected, **tol(actual.dtype, scale), msg=msg)
