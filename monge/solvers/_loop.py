"""The fixed-point driver of every entropic loop, its stop rules and its progress reporting (no OT math here).

:func:`fixed_point` runs ``state <- step(state, omega)`` and owns everything around it: the checks (every
``check_every`` iterations, plus an early one where the tolerance is predicted to be met), the adaptive
over-relaxation (:class:`Relaxation`), the freezing of converged batch elements, the progress report, the error
trace, the one :class:`~monge.results.Convergence` (through :meth:`~monge.results.Convergence.build`) and the
one warning. A solver gives only ``step(state, omega)`` and ``error(state)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..results.convergence import Convergence, tol_in
from ._progress import WARNINGS, Progress, warn_not_converged

__all__ = ["Checks", "FixedPoint", "Progress", "Relaxation", "Stall", "WARNINGS", "early_check", "fixed_point",
           "relaxed", "warn_not_converged", "WarmOmega"]


def relaxed(old: torch.Tensor, new: torch.Tensor, omega: float) -> torch.Tensor:
    """``old + omega (new - old)`` where ``new`` is finite (``-inf``, a cell without mass, stays ``-inf``)."""
    if omega == 1.0:
        return new
    return torch.where(torch.isfinite(new), torch.lerp(old, new, omega), new)


def early_check(previous: float | None, err: float, tol: float, it: int, check_every: int) -> int | None:
    """The iteration before the next regular check where the error is predicted to reach ``tol``, if any.

    The contraction per iteration is taken from the last two regular checks (``previous`` then ``err``,
    ``check_every`` iterations apart); one extra check there saves up to ``check_every - 1`` iterations of
    overshoot, at the price of one error evaluation (O(n), against O(nm) for an iteration).
    """
    if previous is None or not 0.0 < tol < err < previous:
        return None
    rate = (err / previous) ** (1.0 / check_every)
    if not 0.0 < rate < 1.0:
        return None
    k = math.ceil(math.log(tol / err) / math.log(rate))
    return it + k if 1 <= k < check_every else None


class Checks:
    """When a loop checks its error: every ``check_every`` iterations (regular checks), plus one extra check where
    :func:`early_check` predicts the tolerance to be met before the next regular one (``tol <= 0``: never)."""

    def __init__(self, check_every: int, tol: float, each: bool = False):
        self.every, self.tol, self.each = check_every, tol, each
        self.extra: int | None = None
        self.last: float | None = None  # the error at the last regular check

    def due(self, it: int) -> bool:
        return self.each or it % self.every == 0 or it == self.extra

    def regular(self, it: int) -> bool:
        return it % self.every == 0

    def record(self, it: int, worst: float) -> None:
        """After a check that did not stop the loop: schedule the next extra check, if any."""
        if not self.regular(it):
            self.extra = None
            return
        self.extra = early_check(self.last, worst, self.tol, it, self.every)
        self.last = worst


class Stall:
    """Elements whose error stopped decreasing: the median error of the last ``window / 2`` regular checks is
    not below ``(1 - rel)`` times the median of the ``window / 2`` before them, while above ``tol``: a rounding
    floor (float32 at small eps) or an oscillation. The loop stops when every unconverged element has stalled; they
    report status ``"stalled"``, not ``"max_iter"``. Progress of more than ``rel`` per half window never counts,
    nor does an error that rose and is coming down again."""

    def __init__(self, window: int = 50, rel: float = 1e-3):
        self.half, self.rel, self.errors = window // 2, rel, []

    def update(self, err, active):
        """After a regular check: the stalled mask (None while fewer than ``window`` checks were seen). An
        unbatched loop passes a float and a bool and gets a bool (lower medians, as ``torch.median``)."""
        if isinstance(err, float):
            self.errors.append(err if math.isfinite(err) else math.inf)
            if len(self.errors) < 2 * self.half:
                return None
            del self.errors[: len(self.errors) - 2 * self.half]
            med = lambda v: sorted(v)[(len(v) - 1) // 2]  # noqa: E731
            return active and med(self.errors[self.half :]) > (1.0 - self.rel) * med(self.errors[: self.half])
        self.errors.append(torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf"))))
        if len(self.errors) < 2 * self.half:
            return None
        del self.errors[: len(self.errors) - 2 * self.half]
        before = torch.stack(self.errors[: self.half]).median(0).values  # medians: one outlying check (a transient)
        recent = torch.stack(self.errors[self.half :]).median(0).values  # decides nothing
        return active & (recent > (1.0 - self.rel) * before)


class WarmOmega(float):
    """An ``omega`` for :func:`fixed_point`: the ``"auto"`` over-relaxation switched to this value (an optimum
    already measured, e.g. on a coarse level of the same problem) at the first check after at least one plain
    iteration, instead of estimating a rate from probes: plain iterations first, as a multigrid smoother, damp
    the local errors a coarse start leaves (over-relaxed, they would decay by only ``omega - 1`` per iteration).
    The safety nets stay (restore and halve on a blow-up, halve on an oscillation), so do the raises by Young's
    relation."""


class Relaxation:
    r"""Adaptive over-relaxation for fixed-point loops (no OT math): ``omega`` in use, and when to change it.

    ``"auto"`` starts with plain iterations and records the error at every iteration up to :attr:`PROBES` (kept on
    the device; read at the next check, so the loop synchronises no more often). At each check it estimates the
    plain contraction rate ``r`` from three errors at equal spacing (3 iterations apart from the probes, else
    ``check_every``), once the two ratios agree within 25%, and switches to the SOR optimum
    :math:`\omega^* = 2/(1+\sqrt{1-r})`, damped towards 1 (x 0.85) and capped at 1.8: the optimum sits next to an
    unstable region (1.9 diverges where 1.8 is 9x faster than plain, at eps = 1e-3).

    Relaxed, the rate ``lam`` it observes gives back the plain rate by Young's relation for SOR below the optimum,
    :math:`(\lambda + \omega - 1)^2 = \lambda \omega^2 r`, so an early, low estimate is raised (at most twice).
    The iterate is saved when omega changes; if the error then exceeds 10x its value at the change, the saved
    iterate is restored and the over-relaxation halved, and omega never returns to within 10% of that value; if it
    oscillates without a new low over five checks, the over-relaxation is halved from the current iterate. After
    three such events the iterations stay plain.
    """

    PROBES = 10  #: iterations whose error the auto mode records before its first check-point decision
    _SPACING = 3  # iterations between the probe errors used for the first rate estimate

    def __init__(self, omega, check_every: int):
        self.auto = omega == "auto" or isinstance(omega, WarmOmega)
        self.omega = 1.0 if self.auto else float(omega)
        self.warm = float(omega) if isinstance(omega, WarmOmega) else None  # taken after some plain iterations
        self.check_every = check_every
        self.saved = None
        self.err_at_switch = None
        self.retries = 0
        self.raises = 0
        self.failed = 2.0  # omega at or above which an attempt failed (halved and restored)
        self.history: list = []  # (iteration, error) pairs since the last change of omega; errors as floats
        self._pending: list = []  # (iteration, error tensor) probes not yet read

    def wants_probe(self, it: int) -> bool:
        """Whether the loop should pass the error at iteration ``it`` (not a check) to :meth:`probe`."""
        return self.auto and self.omega == 1.0 and self.retries == 0 and (it < self.PROBES or self.warm is not None)

    def probe(self, it: int, err: torch.Tensor) -> None:
        self._pending.append((it, err))

    def update(self, trace, state, it: int | None = None):
        """Call at each check with the error trace and the current iterate (and its iteration number, for the
        probes); returns an iterate to restore or None."""
        if not self.auto:
            return None
        last = _worst(trace[-1])
        if self._pending:  # tensors read in one synchronisation; floats (compiled loops) as they are
            held = [e.max() for _, e in self._pending if isinstance(e, torch.Tensor)]
            read = iter(torch.stack(held).tolist() if held else ())
            vals = [next(read) if isinstance(e, torch.Tensor) else e for _, e in self._pending]
            self.history += [(i, v) for (i, _), v in zip(self._pending, vals)]
            self._pending = []
        step = self.check_every if it is None else None
        self.history.append((it if it is not None else len(trace) * self.check_every, last))
        if self.omega != 1.0:
            errs = [e for _, e in self.history]
            window = errs[-6:]  # (errs[0]: at the change) oscillating, no lower than five checks ago
            stalled = len(errs) >= 7 and window[-1] >= window[0] and any(
                y < x for x, y in zip(window, window[1:]))
            if last > 10.0 * self.err_at_switch:  # blown up: back to the saved iterate, never this omega again
                self.retries += 1
                self.failed = min(self.failed, self.omega)
                self.omega = 1.0 if self.retries > 3 else 1.0 + 0.5 * (self.omega - 1.0)
                self.history = []
                return self.saved
            if stalled:  # no progress (an oscillation, or a plateau of the problem): keep the iterate, calm down
                self.retries += 1
                self._switch(1.0 if self.retries > 3 else 1.0 + 0.5 * (self.omega - 1.0), state, last)
                return None
            if self.raises < 2 and len(self.history) >= 4:
                lam = self._rate(self.history[1:], step)
                w = self.omega
                if lam is not None and lam > 1.1 * (w - 1.0):
                    plain = (lam + w - 1.0) ** 2 / (lam * w * w)
                    new = self._damped(plain, 0.95) if plain < 1.0 else None
                    if new is not None and new > w + 0.05:
                        self.raises += 1
                        self._switch(new, state, last)
            return None
        if self.warm is not None and len(self.history) >= 2:  # plain iterations have smoothed the local errors
            self._switch(self._damped(0.0) if self.warm <= 1.0 else min(self.warm, 1.8), state, last)
            self.warm = None
            return None
        if self.retries > 3 or last >= _worst(trace[0]):  # not below the start: still in the transient
            return None
        rate = self._rate(self.history, step)
        if rate is not None:
            self._switch(self._damped(rate), state, last)
        return None

    def _switch(self, omega: float, state, err: float) -> None:
        self.omega = omega
        self.saved, self.err_at_switch = state, err
        self.history = [self.history[-1]]

    def _damped(self, rate: float, damping: float = 0.85) -> float:
        optimum = 2.0 / (1.0 + (1.0 - rate) ** 0.5)
        omega = min(1.8, 1.0 + damping * (optimum - 1.0))
        return min(omega, 1.0 + 0.9 * (self.failed - 1.0))

    def _rate(self, history, step):
        """The per-iteration contraction from the last three errors ``w`` iterations apart, if both ratios are
        decreasing and agree within 25%; else None."""
        if len(history) < 3:
            return None
        at = dict(history)
        it_last = history[-1][0]
        for w in ((self._SPACING, self.check_every) if step is None else (step,)):
            e = [at.get(it_last - k * w) for k in (2, 1, 0)]
            if None in e:
                continue
            if not 0 < e[2] < e[1] < e[0]:
                continue
            r1, r2 = e[1] / e[0], e[2] / e[1]
            if r1 / 1.25 <= r2 <= 1.25 * r1:
                return r2 ** (1.0 / w)
        return None


@dataclass(frozen=True)
class FixedPoint:
    """What :func:`fixed_point` returns: the final state (``finish``'s output if given), the iterations run, the
    error trace at check points and the convergence record of the returned object."""

    state: object
    n_iters: int
    trace: list
    convergence: Convergence


def fixed_point(step, error, state, *, tol: float, max_iter: int, check_every: int = 10, omega="auto",
                fixed_iters: bool = False, freeze=None, verbose: bool = False, name: str = "sinkhorn",
                finish=None, start: int = 0, quiet: bool = False, criterion: str = "marginal_l1",
                watch=None, check_start: bool = True, measure=None, block=None,
                stop_each: bool = False) -> FixedPoint:
    r"""Iterate ``state <- step(state, omega)`` until ``error(state) <= tol`` for every batch element.

    Args:
        step: ``(state, omega) -> state``, one (over-relaxed) iteration. error: ``state -> (*batch,)`` tensor.
        state: the initial state (anything :class:`Relaxation` may save and ``freeze`` understands).
        tol: the tolerance on ``error``; max_iter: the iteration cap (counted from ``start``, iterations already
            run by the caller, e.g. annealing; checks fall on multiples of ``check_every`` of the total).
        omega: ``"auto"`` (see :class:`Relaxation`) or a fixed over-relaxation. fixed_iters: run exactly
            ``max_iter`` iterations (no stop test, plain iterations for ``"auto"``, no warning for the count).
        freeze: ``(active, old, new) -> state`` keeping converged batch elements where they are (None: no batch).
        finish: ``state -> (returned object, its error)``: the error reported and compared with ``tol`` is that of
            the returned object (default: ``(state, error(state))``).
        verbose: a progress report; name: the loop's name in it and in the warning (:data:`WARNINGS`).
        quiet: no warning here (an outer loop that aggregates its inner solves reports them itself).
        watch: ``state -> (*batch,)``, the signal :class:`Relaxation` decides from (default: ``error``); the scaling
            loops pass their first marginal's residual, which the relaxed second half step does not perturb, so
            the rule keeps the calibration of its benchmarks while the stop test measures both marginals.
        check_start: whether to measure the initial state (False: a warm start whose first marginal is exact by
            construction, which would tell the over-relaxation nothing about the transient).
        measure: optional ``state -> (error(state), watch(state))`` in one pass, used at the checks (the scaling
            loops share the first marginal's residual between the two).
        block: optional ``(state, omega, k) -> (state, seen)``, ``k`` iterations of ``step`` in one call (a compiled
            loop) and ``watch`` of the state after each (for the probes of ``"auto"``): used from check to check,
            for unbatched states.
        stop_each: test the stop after every iteration too (an iteration costing far more than a check, e.g. a
            soft-min over 10^8+ entries); the over-relaxation and the stall test still decide every ``check_every``.

    The loop never stops before one full step; a NaN/inf error freezes its element, which ends ``"diverged"``;
    the loop stops early when every unconverged element has stalled (:class:`Stall`), reported ``"stalled"``.

    Example:
        >>> run = fixed_point(lambda x, w: 0.5 * x, lambda x: x.abs(), torch.tensor([1.0]), tol=1e-3, max_iter=100,
        ...                   omega=1.0)
        >>> run.n_iters, run.convergence.status
        (10, ('converged',))
    """
    relax = Relaxation(1.0 if fixed_iters and omega == "auto" else omega, check_every)
    checks = Checks(check_every, 0.0 if fixed_iters else tol, stop_each and not fixed_iters)
    bar = Progress(start + max_iter, verbose, name)
    rec = _Record(tol, start, fixed_iters, freeze is not None)
    it, end = start, start + max_iter
    watch = error if watch is None else watch
    while it < end:
        if checks.due(it) and (check_start or it > start):
            if measure is not None:
                err, sig = measure(state)
            else:
                err = error(state)
                sig = err if watch is error else watch(state)
            stop, worst = rec.check(it, _detached(err), _detached(sig), checks)
            bar.update(it, worst)
            if stop:
                break
            if checks.each and not checks.regular(it) and relax.wants_probe(it):
                relax.probe(it, _detached(sig))  # a stop test between the regular checks still feeds the probes
            restore = relax.update(rec.signal, state, it) if checks.regular(it) else None
            if restore is not None:
                state, it = restore, it + 1
                continue
        elif relax.wants_probe(it):
            relax.probe(it, _detached(watch(state)))
        if block is not None and freeze is None:
            nxt = it + 1 if checks.each else min(end, (it // check_every + 1) * check_every,
                                                 checks.extra if (checks.extra or 0) > it else end)
            probing = relax.wants_probe(it)
            state, seen = block(state, relax.omega, nxt - it)
            for q in range(it + 1, min(nxt, relax.PROBES) if probing else it + 1):
                relax.probe(q, _detached(seen[q - it - 1]))  # what the probe at iteration q would have watched
            it = nxt
            continue
        new = step(state, relax.omega)
        if freeze is not None and rec.active is not None and not fixed_iters:
            new = freeze(rec.active, state, new)
        state, it = new, it + 1
    bar.close()
    out, final = finish(state) if finish is not None else (state, error(state))
    return FixedPoint(out, it, rec.trace, rec.convergence(final.detach(), it, end, criterion, name, quiet))


def _detached(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def _worst(x) -> float:
    """The largest entry of an error (a tensor, or a float from an unbatched loop)."""
    return x if isinstance(x, float) else float(x.max())


class _Record:
    """What :func:`fixed_point` learns at its checks: the error trace, the relaxation signal, the active mask, the
    first divergence, the stall test, when each frozen element stopped, and from them the convergence record.

    An unbatched loop (a 0-d error, or a float from a compiled measure) is read once per check (one host
    synchronisation) and decided on Python floats; a batch keeps its masks on the device."""

    def __init__(self, tol: float, start: int, fixed: bool, freezes: bool):
        self.tol, self.start, self.fixed, self.freezes = tol, start, fixed, freezes
        self.trace, self.signal, self.active, self.diverged_at = [], [], None, None
        self.stall, self.stalled, self.done_at = Stall(), None, None

    def check(self, it: int, err, sig, checks: Checks):
        """Record the check at ``it``: ``(stop, worst finite error)``."""
        if isinstance(err, float) or err.dim() == 0:
            tol = self.tol if isinstance(err, float) else tol_in(err.dtype, self.tol)  # as a tensor test rounds it
            same = sig is err
            err = float(err)
            sig = err if same else float(sig)
            fin = math.isfinite(err)
            first = it <= self.start  # before the first step, NaN/inf is an unfitted start, not a blow-up
            active = not (err <= tol) if first else (fin and err > tol)
            finite, worst = fin or first, err if fin else 0.0
            any_active, any_finite, all_finite = active, finite, finite
        else:
            if it > self.start:
                finite = torch.isfinite(err)
                active = finite & (err > self.tol)
                if self.freezes and not self.fixed:
                    done = torch.full_like(err, -1, dtype=torch.int64) if self.done_at is None else self.done_at
                    self.done_at = torch.where(~active & (done < 0), it, done)
            else:
                finite, active = torch.ones_like(err, dtype=torch.bool), ~(err <= self.tol)
            worst = float(torch.where(torch.isfinite(err), err, torch.zeros_like(err)).max())
            any_active, any_finite, all_finite = bool(active.any()), bool(finite.any()), bool(finite.all())
        self.trace.append(err)
        self.signal.append(sig)
        self.active = active
        if self.diverged_at is None and not all_finite:
            self.diverged_at = it
        if not any_active and (not self.fixed or not any_finite):
            if it > self.start or not any_finite:
                return True, worst
            checks.extra = it + 1  # converged at the start (a warm start): one full step, then check again
            return False, worst
        checks.record(it, worst)
        if checks.regular(it) and not self.fixed and it > self.start:
            self.stalled = self.stall.update(err, active)
            if isinstance(self.stalled, bool):
                return self.stalled, worst  # a stalled unbatched loop is every unconverged element stalled
            if self.stalled is not None and bool(self.stalled.any()) and bool((self.stalled | ~active).all()):
                return True, worst
        return False, worst

    def convergence(self, final: torch.Tensor, it: int, end: int, criterion: str, name: str,
                    quiet: bool) -> Convergence:
        """The convergence record of the returned object (error ``final``), and the loop's one warning."""
        st = self.stalled
        stopped = st is not None and it < end and (st if isinstance(st, bool) else bool(st.any()))
        n_iters = it if self.done_at is None else torch.where(self.done_at >= 0, self.done_at, it)
        if not self.trace:
            errors = final[None]
        elif isinstance(self.trace[0], float):
            errors = final.new_tensor(self.trace)
        else:
            errors = torch.stack(self.trace)
        conv = Convergence.build(final, self.tol, n_iters, criterion=criterion, fixed=self.fixed, errors=errors,
                                 stalled=st if stopped else None)
        if not quiet and not all(s == "converged" for s in conv.status):
            warn_not_converged(name, conv.converged, final, self.tol, end, fixed=self.fixed,
                               diverged_at=self.diverged_at, stalled_at=it if stopped else None)
        return conv
