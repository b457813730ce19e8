"""How a solve ended: :class:`Convergence` and its one builder, shared by every solver."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["STATUSES", "Convergence"]


#: The statuses a :class:`Convergence` reports, per batch element, and what each means.
STATUSES = {
    "converged": "the error measured on the returned object is within tol (exact solvers: optimal, certified)",
    "max_iter": "the iteration cap was reached with the error above tol (or a fixed iteration count was asked)",
    "stalled": "the error stopped decreasing before reaching tol",
    "diverged": "NaN or inf appeared in the iterates or the error",
}


@dataclass(frozen=True)
class Convergence:
    """How a solve ended, per batch element; built by :meth:`Convergence.build` everywhere.

    Attributes:
        converged: bool tensor of the batch shape; True only where ``status`` is ``"converged"`` (and, for a
            nested solver, where every inner level converged too).
        n_iters: int64 tensor of the batch shape (pivots, augmentations or iterations).
        status: one of :data:`STATUSES` per batch element, in flattened (row-major) order.
        error: the final error, measured on the returned object, batch shape; ``criterion`` says what it is.
        criterion: what ``error`` measures, e.g. ``"marginal_l1"`` (``|P 1 - a|_1 + |P^T 1 - b|_1``, units of
            the weights), ``"fw_gap"``, ``"relative_change"``, ``"duality_gap"``.
        duality_gap: primal minus dual objective (cost units), batch shape, where the solver has one.
        errors: the trace of errors at check points ``(n_checks, *batch)``, where the solver has one.
        levels: nested solvers: ``((name, Convergence), ...)`` of the inner loops, so a user sees which failed.
    """

    converged: torch.Tensor
    n_iters: torch.Tensor
    status: tuple[str, ...]
    error: torch.Tensor
    criterion: str = "marginal_l1"
    duality_gap: torch.Tensor | None = None
    errors: torch.Tensor | None = None
    levels: tuple = ()

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    def level(self, name: str) -> "Convergence":
        """The convergence record of the inner loop called ``name``."""
        for key, conv in self.levels:
            if key == name:
                return conv
        raise KeyError(f"level: no inner loop named {name!r}; have {[k for k, _ in self.levels]}")

    @classmethod
    def build(cls, error, tol: float, n_iters, *, criterion: str = "marginal_l1", errors=None, duality_gap=None,
              stalled=None, fixed: bool = False, levels: tuple = ()) -> "Convergence":
        """The one builder of convergence records.

        Args:
            error: the final error per batch element (a tensor of the batch shape, or a float), measured on the
                returned object.
            tol: the tolerance ``error`` is compared with (``error <= tol`` converged).
            n_iters: iterations (an int or an int tensor of the batch shape).
            criterion: what ``error`` measures. errors: the trace at check points. duality_gap: the certificate.
            stalled: optional bool tensor: elements that stopped improving (status ``"stalled"`` where not
                converged).
            fixed: a fixed iteration count was asked for: elements above ``tol`` are ``"max_iter"`` as usual;
                the caller should not warn (:func:`monge.solvers._loop.warn_not_converged` handles that).
            levels: ``((name, Convergence), ...)`` of inner loops; an element converges only if every level
                converged (inner batch shapes must broadcast to this one, or be reduced by the caller).
        """
        err = torch.as_tensor(error).detach()
        if err.dim() == 0 and not levels and isinstance(n_iters, int):  # one problem: decided on one float
            return cls._scalar(err, tol, n_iters, criterion, errors, duality_gap, stalled, fixed)
        finite = torch.isfinite(err)
        conv = finite & (err <= tol)
        for _, inner in levels:  # an element converges only if its inner loops did
            ok = inner.converged.to(conv.device)
            conv = conv & (ok if ok.shape == conv.shape else ok.all())
        stl = None if stalled is None else torch.as_tensor(stalled, device=conv.device).expand_as(conv)
        status = ("converged",) * conv.numel() if bool(conv.all()) else _statuses(conv, ~finite, stl)
        if isinstance(n_iters, int):  # the common scalar count: no round trip through a 0-d tensor
            its = torch.full(conv.shape, n_iters, dtype=torch.int64, device=conv.device)
        else:
            its = torch.as_tensor(n_iters, device=conv.device)
            its = (its.to(torch.int64) if its.dim() else torch.full_like(conv, int(its), dtype=torch.int64))
        return cls(converged=conv, n_iters=its, status=status, error=err, criterion=criterion,
                   duality_gap=duality_gap, errors=errors, levels=tuple(levels))

    @classmethod
    def _scalar(cls, err: torch.Tensor, tol: float, n_iters: int, criterion: str, errors, duality_gap, stalled,
                fixed: bool) -> "Convergence":
        """:meth:`Convergence.build` for one problem (a 0-d error, an int count): one read of the error, no masks."""
        e = float(err)
        ok = math.isfinite(e) and e <= tol_in(err.dtype, tol)
        status = "converged" if ok else "diverged" if not math.isfinite(e) else \
            "stalled" if stalled is not None and bool(stalled) else "max_iter"
        return cls(converged=torch.tensor(ok, device=err.device),
                   n_iters=torch.tensor(n_iters, dtype=torch.int64, device=err.device), status=(status,), error=err,
                   criterion=criterion, duality_gap=duality_gap, errors=errors, levels=())


def tol_in(dtype: torch.dtype, tol: float) -> float:
    """``tol`` rounded to ``dtype``, as a tensor comparison ``err <= tol`` rounds it (float32 errors read as floats
    compare with this). Example: ``tol_in(torch.float32, 0.1) == 0.10000000149011612``."""
    if dtype == torch.float64 or not math.isfinite(tol):
        return tol
    key = (dtype, tol)
    if key not in _TOLS:
        _TOLS[key] = float(torch.tensor(tol, dtype=dtype))
    return _TOLS[key]


_TOLS: dict = {}


def _statuses(conv: torch.Tensor, bad: torch.Tensor, stalled: torch.Tensor | None) -> tuple[str, ...]:
    """Per element (row-major): converged, else diverged (non-finite error), else stalled, else max_iter."""
    stl = [False] * conv.numel() if stalled is None else stalled.reshape(-1).tolist()
    return tuple("converged" if c else "diverged" if d else "stalled" if s else "max_iter"
                 for c, d, s in zip(conv.reshape(-1).tolist(), bad.reshape(-1).tolist(), stl))
