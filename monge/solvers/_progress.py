"""The progress report and the one non-convergence warning of the fixed-point loops (:mod:`._loop`)."""

from __future__ import annotations

import sys
import time

import torch

from .._warnings import warn

__all__ = ["Progress", "WARNINGS", "warn_not_converged"]


class Progress:
    """An opt-in progress report over iterations, updated only at check points (no device syncs otherwise): a tqdm
    bar, or without tqdm one line on stderr at most every second."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar, self.text, self.desc, self.total = None, False, desc, total
        self.last, self.line = 0.0, None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # no tqdm: plain text
                self.text = True
                return
            self.bar = tqdm(total=total, desc=desc, leave=False)

    def update(self, it: int, err: float, eps: float | None = None) -> None:
        if self.bar is not None:
            self.bar.n = it
            post = {"err": f"{err:.2e}"} if eps is None else {"err": f"{err:.2e}", "eps": f"{eps:.2e}"}
            self.bar.set_postfix(**post, refresh=False)
            self.bar.refresh()
        elif self.text:
            self.line = f"{self.desc}: {it}/{self.total}, error {err:.2e}"
            if time.monotonic() - self.last >= 1.0:
                self.last = time.monotonic()
                print(self.line, file=sys.stderr, flush=True)
                self.line = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.line is not None:
            print(self.line, file=sys.stderr, flush=True)


#: The non-convergence warning of each loop: (what is counted, the error's name, what to try).
WARNINGS = {
    "sinkhorn": ("problems", "marginal error", "raise max_iter, use eps-scaling (schedule=EpsScaling()) or a "
                 "larger eps"),
    "barycenter": ("problems", "marginal error", "raise max_iter or use a larger eps"),
    "jko_flow": ("(step, flow) pairs", "marginal error", "raise max_iter, take a larger eps or a smaller tau"),
    "dictionary_learning": ("problems", "marginal error", "raise n_iter or the learning rate (the change is the "
                            "relative loss change)"),
    "partial_wasserstein": ("problems", "KKT residual", "raise max_iter or use a larger eps (the block ascent slows "
                            "down as eps shrinks)"),
}
_DIVERGED_HINT = ("costs / eps beyond the dtype's exponent range are the usual cause: rescale the costs, raise "
                  "eps, or use float64")


def warn_not_converged(name: str, converged: torch.Tensor, errors: torch.Tensor, tol: float, max_iter: int,
                       *, fixed: bool = False, diverged_at: int | None = None, stalled_at: int | None = None) -> None:
    """The one warning of a loop, pointing at the user's line: elements with a NaN/inf error diverged (their own
    text, with the iteration); elements above ``tol`` reached ``max_iter`` (silent when ``fixed``: exactly that
    many iterations were asked for). Texts per loop in :data:`WARNINGS`."""
    what, label, hint = WARNINGS.get(name, WARNINGS["sinkhorn"])
    bad = ~torch.isfinite(errors)
    if bool(bad.any()):
        where = f"at iteration {diverged_at}" if diverged_at is not None else f"by iteration {max_iter}"
        warn(f"{name}: {int(bad.sum())} of {bad.numel()} {what} diverged: NaN or inf appeared in the iterates "
             f"{where}; {_DIVERGED_HINT}. The result reports status 'diverged'.")
    late = ~converged & ~bad
    if fixed or not bool(late.any()):
        return
    worst = float(errors[late].max())
    if stalled_at is not None:
        warn(f"{name}: {int(late.sum())} of {converged.numel()} {what} stalled: the {label} stopped decreasing "
             f"(iteration {stalled_at}) at {worst:.3g} > tol={tol:g}; in float32 this is usually the rounding floor "
             f"(use float64 or a larger tol), otherwise {hint}. The result reports status 'stalled'.")
        return
    warn(f"{name}: {int(late.sum())} of {converged.numel()} {what} reached max_iter={max_iter} with a {label} "
         f"of {worst:.3g} > tol={tol:g}; {hint}. The result reports converged=False.")
