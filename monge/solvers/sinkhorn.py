r"""Entropic OT by Sinkhorn iterations in the log domain, over any geometry's ``softmin``.

.. math::
    \mathrm{OT}_\varepsilon(a, b) = \min_{P \ge 0} \langle P, C\rangle + \varepsilon\,\mathrm{KL}(P \,|\, a \otimes b)
        + \rho_a \mathrm{KL}(P 1 \,|\, a) + \rho_b \mathrm{KL}(P^\top 1 \,|\, b)

(the marginal terms are hard constraints when ``rho`` is None). The dual potentials are the state:

.. math::
    f \leftarrow \kappa_a\,\mathrm{softmin}_\varepsilon(g + \varepsilon \log b), \qquad
    g \leftarrow \kappa_b\,\mathrm{softmin}_\varepsilon(f + \varepsilon \log a), \qquad
    \kappa = \rho / (\rho + \varepsilon) \ (1 \text{ if balanced})
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import check_batch
from ..geometry.dense import DenseCost
from ..geometry.pointcloud import PointCloud
from ..problems.linear import LinearProblem
from ..results import SinkhornResult
from ._loop import WarmOmega, fixed_point, relaxed
from ._sinkhorn_compiled import CompiledStages, _CompiledLoop
from .marginals import KL, Hard, Marginal
from .schedules import EpsScaling

__all__ = ["Sinkhorn", "SinkhornData", "DEFAULT_TOL", "DENSE_LOOP_MAX_ENTRIES", "GRADS", "sinkhorn_loop"]

#: Default stopping tolerance on the l1 violation of both marginals (their sum), per dtype. float32: each marginal
#: of the returned plan carries a rounding floor of ~1e-5 at small eps (|g| u / eps per entry, on top of the
#: ~1e-6 of summing 10^4..10^5 weights), so 2e-5 for the two is the tightest reliable target there.
DEFAULT_TOL = {torch.float32: 2e-5, torch.float64: 1e-7}
GRADS = ("envelope", "unroll", "implicit")


@dataclass(frozen=True)
class SinkhornData:
    """The two marginal updates (:mod:`~monge.solvers.marginals`) and the event rank of the geometry.

    The loop state is ``(f, g, Sf, Sg)``: the potentials and the soft-mins ``Sf = softmin_0(f + eps log a)``,
    ``Sg = softmin_1(g + eps log b)`` that the next updates need, so the error of a state costs no soft-min.
    """

    ma: Marginal
    mb: Marginal
    k: int
    symmetric: bool = False  # OT(a, a) on one point cloud: f = g, averaged updates f <- (f + T(f)) / 2

    @classmethod
    def of(cls, prob: LinearProblem, detach: bool = False) -> "SinkhornData":
        a, b = (prob.a.detach(), prob.b.detach()) if detach else (prob.a, prob.b)
        ma = Hard(a) if prob.rho_a is None else KL(a, prob.rho_a)
        if prob.b is prob.a and prob.rho_b == prob.rho_a:  # one measure on both sides: its log-weights once
            mb = ma
        else:
            mb = Hard(b) if prob.rho_b is None else KL(b, prob.rho_b)
        sym = prob.geom.symmetric and prob.a is prob.b and prob.rho_a == prob.rho_b
        return cls(ma, mb, prob.geom.event_ndim, sym)

    @property
    def balanced(self) -> bool:
        return isinstance(self.ma, Hard) and isinstance(self.mb, Hard)

    def sf(self, geom, f, eps):
        r""":math:`\mathrm{softmin}_0(f + \varepsilon \log a)`, over the sources."""
        return geom.softmin(torch.add(f, self.ma.lw, alpha=eps), eps, 0)

    def sg(self, geom, g, eps):
        return geom.softmin(torch.add(g, self.mb.lw, alpha=eps), eps, 1)

    def f_update(self, geom, g, eps):
        """``(f, S)``: the row update from ``g`` and its soft-min ``S = softmin_1(g + eps log b)``."""
        S = self.sg(geom, g, eps)
        return self.ma.update(S, eps), S

    def g_update(self, geom, f, eps):
        return self.mb.update(self.sf(geom, f, eps), eps)

    def start(self, geom, f, g, eps):
        """The loop state at ``(f, g)``."""
        return f, g, self.sf(geom, f, eps), self.sg(geom, g, eps)

    def step(self, geom, state, eps, omega: float = 1.0):
        """One (over-relaxed) iteration: ``f`` from the cached ``Sg``, then ``g``, then the new soft-mins."""
        f, g, _, Sg = state
        if self.symmetric:  # averaged, one soft-min: by symmetry Sf = Sg
            f = 0.5 * (f + self.ma.update(Sg, eps))
            S = self.sg(geom, f, eps)  # (a is b)
            return f, f, S, S
        f = relaxed(f, self.ma.update(Sg, eps), omega)
        Sf = self.sf(geom, f, eps)
        g = relaxed(g, self.mb.update(Sf, eps), omega)
        return f, g, Sf, self.sg(geom, g, eps)

    def error(self, state, eps):
        r"""l1 violation of the optimality conditions of both marginals of the plan of ``(f, g)``, per batch element
        (balanced: :math:`\|P 1 - a\|_1 + \|P^\top 1 - b\|_1`)."""
        f, g, Sf, Sg = state
        return self.ma.residual(f, Sg, eps, self.k) + self.mb.residual(g, Sf, eps, self.k)

    def measure(self, state, eps):
        """``(error, rows)`` in one pass: the rows' residual is computed once for both."""
        f, g, Sf, Sg = state
        rows = self.ma.residual(f, Sg, eps, self.k)
        return rows + self.mb.residual(g, Sf, eps, self.k), rows

    def rows(self, state, eps):
        """The first marginal's residual alone: what the over-relaxation watches."""
        return self.ma.residual(state[0], state[3], eps, self.k)

    def dual(self, f, S, g, eps):
        """Dual objective at (f, g), with S = softmin(g + eps log b) giving the plan's total mass."""
        dims = tuple(range(-self.k, 0))
        mass = self.ma.marginal(f, S, eps).sum(dims) - self.ma.w.sum(dims) * self.mb.w.sum(dims)
        return self.ma.conjugate(f, self.k) + self.mb.conjugate(g, self.k) - eps * mass

    def freeze(self, active, old, new):
        """Keep converged batch elements where they are."""
        m = active.reshape(*active.shape, *([1] * self.k))
        return tuple(torch.where(m, u, v) for u, v in zip(new, old))


def sinkhorn_loop(geom, data: SinkhornData, f, g, eps: float, *, tol: float, max_iter: int, check_every: int = 10,
                  omega="auto", fixed_iters: bool = False, verbose: bool = False, start: int = 0, finish=None,
                  name: str = "sinkhorn", quiet: bool = False, check_start: bool = True, fast="auto",
                  stop_each: bool = False):
    """The Sinkhorn iterations at ``eps`` from ``(f, g)`` over :func:`~monge.solvers._loop.fixed_point`, for any
    pair of marginal updates (balanced, unbalanced, semi-unbalanced, the JKO step). ``finish(state)`` makes the
    returned object and its error (default: the state ``(f, g, Sf, Sg)`` and its error). ``fast``: the
    :class:`_CompiledLoop` to use (``"auto"``: built here where it applies; None: the torch iterations)."""
    if fast == "auto":
        fast = _CompiledLoop.of(geom, data, f, eps)  # first: the start's soft-mins then share its kernel
    state = fast.start(f, g) if fast else None
    return fixed_point(
        lambda s, w: data.step(geom, s, eps, w), lambda s: data.error(s, eps),
        data.start(geom, f, g, eps) if state is None else state,
        tol=tol, max_iter=max_iter, check_every=check_every, omega=1.0 if data.symmetric else omega,
        fixed_iters=fixed_iters, freeze=data.freeze if f.dim() > data.k else None, verbose=verbose, name=name,
        finish=finish, start=start, quiet=quiet, check_start=check_start,
        watch=fast.watch if fast else lambda s: data.rows(s, eps),
        measure=fast.measure if fast else lambda s: data.measure(s, eps), block=fast.block if fast else None,
        stop_each=stop_each)


@dataclass(frozen=True)
class Sinkhorn:
    r"""Log-domain Sinkhorn solver, stopped on the l1 marginal violation of both marginals.

    Args:
        eps: entropic regularisation, absolute, in cost units (> 0).
        tol: stop when :math:`\|P 1 - a\|_1 + \|P^\top 1 - b\|_1 \le` tol (units of the weights; a penalised
            side: the violation of its first-order condition :math:`P 1 = a e^{-f/\rho}`), checked every
            ``check_every`` iterations, never before one full iteration. ``None``: :data:`DEFAULT_TOL`. The
            reported ``convergence.error`` (criterion ``"marginal_l1"``) and ``converged`` are measured on the
            returned potentials, after the final half step.
        max_iter: iteration cap (annealing iterations included). Reaching it is reported, never raised.
        fixed_iters: run exactly ``max_iter`` iterations (no stop test, plain iterations for ``omega="auto"``, no
            warning); ``converged`` still compares the final error with ``tol``.
        check_every: iterations between checks (the only device synchronisations of the loop), plus one extra
            check where the measured contraction predicts the tolerance to be met before the next regular one.
            Where one soft-min reduces at least :data:`STOP_EACH_ENTRIES` cost entries, the stop is also tested
            after every iteration (from the iteration's own soft-mins, O(n + m)); the over-relaxation still decides
            every ``check_every``.
        schedule: an :class:`~monge.solvers.schedules.EpsScaling` to anneal eps (``None``: fixed eps).
        grad: ``"envelope"`` (default: detached iterations, one differentiable step), ``"unroll"`` (autograd
            through all iterations) or ``"implicit"`` (implicit function theorem, conjugate gradient).
        omega: over-relaxation :math:`f \leftarrow f + \omega (T(g) - f)` (same fixed point, far fewer iterations
            at small eps). ``"auto"`` (default): 10 plain iterations, then a damped SOR optimum from the measured
            contraction rate, raised later by Young's relation; a blow-up restores the saved iterate, an
            oscillation halves omega (see :class:`~monge.solvers._loop.Relaxation`). A number in (0, 2) fixes it.
        verbose: a progress report (tqdm, or lines on stderr without it).

    A NaN or inf (costs / eps beyond the dtype's range) ends the element with status ``"diverged"`` and a warning.

    Example:
        >>> import torch, monge
        >>> x, y = torch.rand(30, 2, dtype=torch.float64), torch.rand(20, 2, dtype=torch.float64)
        >>> res = Sinkhorn(eps=0.05)(LinearProblem(monge.PointCloud(x, y)))
        >>> res.convergence.all_converged, res.f.shape
        (True, torch.Size([30]))
    """

    eps: float
    tol: float | None = None
    max_iter: int = 5000
    check_every: int = 10
    schedule: EpsScaling | None = None
    grad: str = "envelope"
    omega: float | str = "auto"
    verbose: bool = False
    fixed_iters: bool = False

    def __post_init__(self):
        from .._validation import check_loop, check_positive

        check_positive(self.eps, "eps")
        check_positive(self.tol, "tol", allow_none=True)
        check_loop(self.max_iter, self.check_every, self.omega)
        if self.grad not in GRADS:
            raise ValueError(f"grad: expected one of {GRADS}, got {self.grad!r}")
        if self.schedule is not None and not isinstance(self.schedule, EpsScaling):
            raise TypeError(f"schedule: expected an EpsScaling or None, got {type(self.schedule).__name__}")

    def __call__(self, prob: LinearProblem, init=None) -> SinkhornResult:
        """Solve ``prob``; ``init=(f, g)`` warm-starts from given potentials."""
        if not isinstance(prob, LinearProblem):
            raise TypeError(f"prob: expected a monge LinearProblem, got {type(prob).__name__}")
        unroll = self.grad == "unroll"
        f, g = self._init(prob, init, prob.geom.event_ndim)
        tol = self.tol if self.tol is not None else DEFAULT_TOL[f.dtype]
        mode = torch.is_grad_enabled()  # the final half step runs in the caller's mode
        with torch.set_grad_enabled(unroll):
            geom, data = _loop_geometry(prob.geom, unroll), SinkhornData.of(prob, detach=not unroll)
            wide = not unroll and _widened(geom, data)
            if wide:  # a small float32 dense cost: the float64 compiled loop, the returned step in float32
                geom, data, f, g = *wide, f.double(), g.double()
            f, g, n_it, omega = self._anneal(geom, data, f, g, prob.geom)
            fast = _CompiledLoop.of(geom, data, f, self.eps)
            quick = fast is not None and self.grad != "implicit" and not (mode and _needs_grad(prob))
            dtype = prob.a.dtype
            back = (lambda st: tuple(t.to(dtype) for t in st)) if wide else (lambda st: st)  # noqa: E731
            own = None if wide or prob.a.requires_grad or prob.b.requires_grad else data  # = SinkhornData.of(prob)
            run = sinkhorn_loop(geom, data, f, g, self.eps, tol=tol, max_iter=self.max_iter - n_it,
                                check_every=self.check_every, omega=omega, fixed_iters=self.fixed_iters,
                                verbose=self.verbose, start=n_it, fast=fast, stop_each=_expensive(prob.geom),
                                finish=lambda st: (quick and fast.finish(st[1], dtype)) or
                                self._finish(prob, back(st), mode, None if wide else fast, own))
        prob.geom.release()  # caches for the next soft-min (a multiscale cloud's block lists); a backward keeps its own
        f, g, value = run.state
        return SinkhornResult(f=f, g=g, value=value, eps=self.eps, problem=prob, convergence=run.convergence)

    def _init(self, prob, init, k):
        n_shape, m_shape = prob.a.shape[prob.a.dim() - k :], prob.b.shape[prob.b.dim() - k :]
        batch = check_batch(geom=prob.geom.batch_shape, a=prob.a.shape[: prob.a.dim() - k],
                            b=prob.b.shape[: prob.b.dim() - k])  # = prob.batch_shape, equal shapes without torch
        like = prob.geom.like()
        if init is None:
            return like.new_zeros((*batch, *n_shape)), like.new_zeros((*batch, *m_shape))
        f0, g0 = init
        for name, t, shp in (("init f", f0, n_shape), ("init g", g0, m_shape)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape[t.dim() - k :]) != tuple(shp):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name}: expected a tensor of shape (..., {', '.join(map(str, shp))}), got {got}")
        return (f0.detach().to(like).expand(*batch, *n_shape).clone(),
                g0.detach().to(like).expand(*batch, *m_shape).clone())

    def _anneal(self, geom, data, f, g, own):
        """The annealing stages of the schedule (if any), plain iterations on ``geom``, from the temperatures of the
        problem's own geometry ``own``: ``(f, g, iterations, omega)``, ``omega`` the over-relaxation the final loop
        starts with (:attr:`omega`, or a rate carried over from a coarse level)."""
        if self.schedule is None:
            return f, g, 0, self.omega
        temps = self.schedule.temperatures(self.eps, own.cost_scale())
        run = _coarse_start(geom, data, f, g, temps, self)
        if run is not None:  # a multiscale cloud anneals on its cluster centres first
            return run
        fast = CompiledStages.of(geom, data, f, self.eps) if len(temps) > 1 else None
        k = 0
        if fast is not None:  # the stages it can, compiled; from the first unreliable one on, torch
            f, g, k = fast.run_all(f, g, temps[:-1], self.schedule.iters_per_stage)
        for e in temps[k:-1]:
            for _ in range(self.schedule.iters_per_stage):
                f = data.f_update(geom, g, e)[0]
                g = data.g_update(geom, f, e)
        return f, g, (len(temps) - 1) * self.schedule.iters_per_stage, self.omega

    def _finish(self, prob, state, mode: bool, fast=None, data=None):
        """The returned object: one (differentiable) half step from ``g`` on the problem's own geometry and
        weights, the value, and the error of the returned ``(f, g)`` on both marginals (one more soft-min; with
        ``fast``, a float64 :class:`_CompiledLoop` of the same problem, in one compiled call). ``data``: the loop's
        :class:`SinkhornData` where it equals ``SinkhornData.of(prob)`` (weights without gradients, not widened)."""
        geom, eps, g = prob.geom, self.eps, state[1]
        with torch.set_grad_enabled(mode):
            data = SinkhornData.of(prob) if data is None else data
            if self.grad == "implicit":
                from ..autodiff import implicit_potential

                g = implicit_potential(geom, data, g, eps)
            elif self.grad == "envelope":
                g = g.detach()
            f, S = data.f_update(geom, g, eps)
            value = data.dual(f, S, g, eps)
        out = fast.measured(f, g) if fast is not None else None
        if out is not None:
            return (f, g, value), out
        with torch.no_grad():
            err = data.error((f, g, data.sf(geom, f, eps), S), eps)
        return (f, g, value), err


def _needs_grad(prob: LinearProblem) -> bool:
    """Whether the result must carry gradients (a weight, or a tensor of the geometry: its :meth:`detach` is itself
    exactly when nothing in it requires them)."""
    return prob.a.requires_grad or prob.b.requires_grad or prob.geom.requires_grad


#: A soft-min over at least this many cost entries (all batch elements) costs so much more than a stop test (O(n + m)
#: on the iteration's own soft-mins) that :class:`Sinkhorn` tests the stop after every iteration: at n = 10^6 each
#: iteration past the tolerance costs two soft-mins of tens of CPU-seconds.
STOP_EACH_ENTRIES = 10**8


def _expensive(geom) -> bool:
    n, m = geom.shape
    return n * m * geom.batch_shape.numel() >= STOP_EACH_ENTRIES


#: A float64 CPU point cloud of at most this many cost entries (all batch elements) iterates on its materialised
#: cost (envelope/implicit loops): the dense kernel path and the compiled loop instead of a lazy reduction per
#: soft-min (n = 64, divergence: ~4x less time per call). 8 MB for the cost, as much for its Gibbs kernel.
DENSE_LOOP_MAX_ENTRIES = 1 << 20


def _loop_geometry(geom, unroll: bool):
    """The geometry the iterations run on (:meth:`~monge.geometry.Geometry.loop_geometry`): detached for
    envelope/implicit loops (a small float64 CPU point cloud: its detached cost matrix, see
    :data:`DENSE_LOOP_MAX_ENTRIES`); for unrolling, the geometry's cheapest differentiable equivalent. The returned
    potentials and gradients come from the problem's own geometry (the final half step)."""
    C = None if unroll or type(geom) is not PointCloud else geom.dense_loop_cost(DENSE_LOOP_MAX_ENTRIES)
    if C is not None:
        try:  # DenseCost checks its finiteness
            return DenseCost(C)
        except ValueError:  # overflowing costs (or points modified in place since validated): the cloud's own errors
            pass
    return geom.loop_geometry(unroll)


def _widened(geom, data: SinkhornData):
    """``(geometry, data)`` in float64 for a float32 dense CPU cost of one problem of at most
    :data:`DENSE_LOOP_MAX_ENTRIES` entries with hard or KL marginals (the compiled loop then applies: the iterates
    are float64 ones, the returned half step and its certificate are computed on the float32 problem); None
    otherwise."""
    if not isinstance(geom, DenseCost) or geom.dtype != torch.float32 or geom.device.type != "cpu":
        return None
    C = geom.cost()
    if C.dim() != 2 or C.numel() > DENSE_LOOP_MAX_ENTRIES or not all(type(m) in (Hard, KL) for m in (data.ma, data.mb)):
        return None
    wide = lambda m: Hard(m.w.double()) if type(m) is Hard else KL(m.w.double(), m.rho)  # noqa: E731
    ma = wide(data.ma)
    mb = ma if data.mb is data.ma else wide(data.mb)
    return DenseCost(C.detach().double()), SinkhornData(ma, mb, data.k, data.symmetric)


def _coarse_start(geom, data, f, g, temps, solver: "Sinkhorn"):
    """A nested (multigrid-style) start for a multiscale cloud: its coarse problem (cell centres and masses,
    :meth:`~monge.geometry.Geometry.coarse_view`) annealed by ``solver`` through the stages down to the final eps, or
    to the coarse view's threshold where even its finest cells are wider than the final kernel (itself from its own
    coarse start while large), and iterated to the solver's tolerance there; its potentials are prolonged to the
    points (a soft-min against the other side's cells, to first order in the point's offset from its cell) and
    the stages below the threshold, if any, run on them. The fine loop then only damps local errors; after a
    coarse loop at the final eps, from the over-relaxation it ended with (a :class:`~monge.solvers._loop.WarmOmega`
    for ``omega="auto"``). ``None`` where it does not apply
    (no coarse view, a warm start, marginals other than hard or KL, no annealing, a coarse solve that did not end
    finite): the caller anneals as usual. Returns ``(f, g, iterations, omega)``; the certificates are those of the
    fine loop that follows (the start is only a start)."""
    if f.dim() != 1 or len(temps) < 2 or bool(f.any()) or bool(g.any()):
        return None
    if not all(type(m) in (Hard, KL) for m in (data.ma, data.mb)):
        return None
    view = geom.coarse_view(data.ma.w, data.mb.w, temps[-1])
    if view is None:
        return None
    coarse, A, B, prolong, threshold = view
    stages = [e for e in temps if e >= max(threshold, temps[-1])]  # where the cells are finer than the kernel
    if not stages:  # even the finest cells are wider than the first stage's kernel
        return None
    marg = lambda m, w: Hard(w) if type(m) is Hard else KL(w, m.rho)  # noqa: E731
    ma = marg(data.ma, A)
    cdata = SinkhornData(ma, ma if data.symmetric else marg(data.mb, B), 1, data.symmetric)
    with torch.no_grad():
        F, G, w = _coarse_solve(coarse, cdata, stages, solver)
    if not (bool(torch.isfinite(F).all()) and bool(torch.isfinite(G).all())):
        return None
    e = stages[-1]
    with torch.no_grad():
        f = data.ma.update(prolong(G + e * cdata.mb.lw, e, 0), e).to(f.dtype)
        g = data.mb.update(prolong(F + e * cdata.ma.lw, e, 1), e).to(g.dtype)
    for e in temps[len(stages):-1]:  # kernels narrower than the cells: anneal on the points
        for _ in range(solver.schedule.iters_per_stage):
            f = data.f_update(geom, g, e)[0]
            g = data.g_update(geom, f, e)
    warm = solver.omega == "auto" and not solver.fixed_iters and not data.symmetric and w > 1.0
    warm = warm and len(stages) == len(temps)  # a rate measured at the final eps only
    return f, g, (len(temps) - 1) * solver.schedule.iters_per_stage, WarmOmega(w) if warm else solver.omega


def _coarse_solve(coarse, cdata, temps, solver):
    """``(F, G, omega)``: the coarse problem annealed over ``temps`` (recursively through its own coarse start) and
    iterated at ``temps[-1]`` to the solver's tolerance (no warning: only a start), and the over-relaxation its
    loop ended with."""
    zero = cdata.ma.w.new_zeros
    F, G, _, omega = solver._anneal(coarse, cdata, zero(cdata.ma.w.shape), zero(cdata.mb.w.shape), coarse)
    eps, used = temps[-1], [1.0]
    tol = solver.tol if solver.tol is not None else DEFAULT_TOL[F.dtype]

    def step(s, w):
        used[0] = w
        return cdata.step(coarse, s, eps, w)

    run = fixed_point(step, lambda s: cdata.error(s, eps), cdata.start(coarse, F, G, eps), tol=tol,
                      max_iter=solver.max_iter, check_every=solver.check_every,
                      omega=1.0 if cdata.symmetric else omega, quiet=True, stop_each=_expensive(coarse),
                      watch=lambda s: cdata.rows(s, eps), measure=lambda s: cdata.measure(s, eps))
    return run.state[0], run.state[1], float(used[0])
