"""Warnings that point at the user's line, and one warning per outer loop instead of one per inner solve."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

__all__ = ["InnerWarnings", "user_stacklevel", "warn"]

_PKG = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` (for a ``warnings.warn`` in the caller) of the first frame outside the monge package."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PKG):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """``warnings.warn`` pointing at the user's line (the first caller outside monge)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())


class InnerWarnings:
    """Collects the ``RuntimeWarning``\\ s of an outer loop's inner solves, to report them once.

    Example:
        >>> inner = InnerWarnings()
        >>> for _ in range(3):
        ...     with inner.collect():
        ...         warnings.warn("inner solve: not converged", RuntimeWarning)
        >>> inner.count, inner.first
        (3, 'inner solve: not converged')
    """

    def __init__(self):
        self.count, self.first = 0, None

    @contextmanager
    def collect(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            yield self
        for w in caught:
            if issubclass(w.category, RuntimeWarning):
                self.count += 1
                self.first = self.first or str(w.message)
            else:  # anything else passes through unchanged
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def summary(self, what: str) -> str | None:
        """One clause for the outer warning, e.g. ``"the inner solves warned 3 times (first: ...)"`` (``None`` if
        nothing was caught)."""
        if not self.count:
            return None
        return f"{what} warned {self.count} time{'s' if self.count > 1 else ''} (first: {self.first!r})"
