"""Stop rules and progress reporting for iterative solvers (no OT math here)."""

from __future__ import annotations

import warnings

import torch

__all__ = ["Progress", "warn_not_converged"]


class Progress:
    """An opt-in tqdm progress bar over iterations, updated only at check points (no device syncs otherwise)."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is optional
                warnings.warn("verbose=True needs tqdm (pip install tqdm); continuing without a progress bar")
                return
            self.bar = tqdm(total=total, desc=desc, leave=False)

    def update(self, it: int, err: float, eps: float) -> None:
        if self.bar is not None:
            self.bar.n = it
            self.bar.set_postfix(err=f"{err:.2e}", eps=f"{eps:.2e}", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def warn_not_converged(name: str, converged: torch.Tensor, errors: torch.Tensor, tol: float, max_iter: int):
    """One warning naming the marginal error reached, when some batch element hit ``max_iter``."""
    if bool(converged.all()):
        return
    worst = float(errors.max())
    warnings.warn(
        f"{name}: {int((~converged).sum())} of {converged.numel()} problems reached max_iter={max_iter} with a "
        f"marginal error of {worst:.3g} > tol={tol:g}; raise max_iter, use eps-scaling (schedule=EpsScaling()) "
        "or a larger eps. The result reports converged=False.",
        RuntimeWarning,
        stacklevel=4,
    )
