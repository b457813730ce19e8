r"""Fixed-support entropic Wasserstein barycenters: iterative Bregman projections in the log domain.

.. math::
    \min_{b,\ P_1, \dots, P_K} \sum_{k=1}^K \lambda_k \big(\langle P_k, C\rangle
        + \varepsilon \mathrm{KL}(P_k \,|\, e^{-C/\varepsilon})\big)
    \quad \text{s.t.} \quad P_k 1 = a_k,\ P_k^\top 1 = b

(Benamou, Carlier, Cuturi, Nenna, Peyre 2015). With :math:`P_k = \exp((f_k \oplus g_k - C)/\varepsilon)`, one
iteration is, for all k at once (K is a batch dimension of one softmin call),

.. math::
    f_k \leftarrow \varepsilon \log a_k + \mathrm{softmin}_\varepsilon(g_k), \qquad
    S_k = \mathrm{softmin}^\top_\varepsilon(f_k), \qquad
    \log b = -\textstyle\sum_k \lambda_k S_k / \varepsilon, \qquad
    g_k \leftarrow \varepsilon \log b + S_k

(the barycenter is the weighted geometric mean of the couplings' second marginals; with :math:`g = 0` at the start,
:math:`\sum_k \lambda_k g_k = 0` at every step, hence the log-sum-exp-free update of :math:`\log b`).

- **Debiased** (Janati, Cuturi, Gramfort 2020): :math:`\log b = (h - \sum_k \lambda_k S_k)/\varepsilon` with the
  auto-correlation potential :math:`h \leftarrow (h + \varepsilon \log b + \mathrm{softmin}_\varepsilon(h))/2`,
  whose fixed point :math:`d \odot K d = b` (:math:`d = e^{h/\varepsilon}`) removes the entropic blur.
  At the joint fixed point :math:`K d = \prod_k (K^\top u_k)^{\lambda_k}`: a deconvolution, solved by the damped
  multiplicative update of ``h``. Where the kernel does not resolve the inputs (inputs sharper than
  :math:`\sqrt{\varepsilon}` on the support, e.g. near-Diracs; or ``eps`` large against its spacing), the limit has
  zero mass on some cells (:math:`h/\varepsilon \to -\infty` there) or is ill-conditioned, and the residual decays
  sublinearly: two near-Diracs on a 100-cell grid at :math:`\sqrt{\varepsilon}` = 3 cells need 18804 iterations
  for ``tol = 1e-7``. Reaching ``max_iter`` there is reported with that cause and an extrapolated iteration count.
  A residual below ``tol`` certifies the returned iterate's fixed-point equations, not its distance to the limit,
  which is larger in this regime (a step of 0.9 instead of 1/2 for ``h`` meets the same ``tol`` in 5444 iterations
  with 1e-3 less mass on the limit's two cells).
- **Unbalanced** (Chizat, Peyre, Schmitzer, Vialard 2018): KL penalties :math:`\rho` on both marginals of every
  coupling; with :math:`\kappa = \rho/(\rho + \varepsilon)`, :math:`f_k \leftarrow \kappa(\varepsilon \log a_k +
  \mathrm{softmin}(g_k))`, :math:`\log b = \frac{\rho+\varepsilon}{\varepsilon} \log \sum_k \lambda_k
  e^{-S_k/(\rho+\varepsilon)}`, :math:`g_k \leftarrow \kappa(\varepsilon \log b + S_k)`.

Speed: the K soft-mins of a step are one batched call; grids reduce axis by axis (one matrix product each); dense
costs go through their soft-min's kernel fast path (:mod:`~monge.geometry._backends.kernel`: shifted products, exact
log-sum-exp where they underflow); the soft-mins the error needs are those of the iteration, so a check costs O(n)
only. One float64 CPU problem on a :class:`~monge.geometry.DenseCost` with nothing to differentiate in the loop runs
compiled iterations (:mod:`~monge.solvers._barycenter_compiled`: one pass over the kernel per half iteration, the
upper triangle only for a symmetric cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .._warnings import warn
from ..ops.logsumexp import log_weights
from ..problems.barycenter import BarycenterProblem
from ..results.barycenter import BarycenterResult, k_back, k_first
from ._barycenter_compiled import CompiledBarycenter
from ._loop import fixed_point, relaxed, warn_not_converged
from .sinkhorn import DEFAULT_TOL

__all__ = ["Barycenter", "BarycenterResult", "BARYCENTER_GRADS"]

BARYCENTER_GRADS = ("unroll", "envelope")


def _esum(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.sum(tuple(range(-k, 0)))


@dataclass(frozen=True)
class _Data:
    """What the iterations need, K-first: log-inputs ``(K, *batch, *src)``, weights ``(K, *batch, 1...)``.

    The loop state is ``(f, g, h, S1, S0, lb, Sh)``: the potentials, the soft-mins ``S1 = softmin_1(g)``,
    ``S0 = softmin_0(f)``, ``Sh = softmin_0(h)`` and ``log b``, so the error of a state costs no soft-min.
    """

    a: torch.Tensor
    la: torch.Tensor
    lam: torch.Tensor
    rho: float | None
    k: int
    debias: bool

    @classmethod
    def of(cls, prob: BarycenterProblem, debias: bool, detach: bool = False) -> "_Data":
        k = prob.event_ndim
        batch = prob.batch_shape
        a = _lead(k_first(prob.hists, k), batch, k)
        lam = _lead(prob.weights.movedim(-1, 0), batch, 0).reshape(-1, *batch, *([1] * k))
        if detach:
            a, lam = a.detach(), lam.detach()
        return cls(a, log_weights(a), lam, prob.rho, k, debias)

    def kappa(self, eps: float) -> float:
        return 1.0 if self.rho is None else self.rho / (self.rho + eps)

    def log_barycenter(self, S: torch.Tensor, h: torch.Tensor | None, eps: float) -> torch.Tensor:
        """``log b`` from the column soft-mins ``S (K, *batch, *tgt)`` (and the debiasing potential ``h``)."""
        if self.rho is None:
            lb = -(self.lam * S).sum(0) / eps
        else:
            t = self.rho + eps
            lb = (t / eps) * torch.logsumexp(log_weights(self.lam) - S / t, dim=0)
        return lb if h is None else lb + h / eps

    def start(self, geom, f, g, h, eps):
        """The loop state at ``(f, g, h)``."""
        S0 = geom.softmin(f, eps, 0)
        Sh = None if h is None else geom.softmin(h, eps, 0)
        return f, g, h, geom.softmin(g, eps, 1), S0, self.log_barycenter(S0, h, eps), Sh

    def step(self, geom, state, eps, omega: float = 1.0):
        """One (over-relaxed) IBP iteration; the debiasing potential ``h`` keeps its own averaged update."""
        f, g, h, S1, _, _, Sh = state
        kap = self.kappa(eps)
        f = relaxed(f, kap * (eps * self.la + S1), omega)
        S0 = geom.softmin(f, eps, 0)
        lb = self.log_barycenter(S0, h, eps)
        g = relaxed(g, kap * (eps * lb + S0), omega)
        if h is not None:
            h = 0.5 * (h + eps * lb + Sh)
            Sh = geom.softmin(h, eps, 0)
        return f, g, h, geom.softmin(g, eps, 1), S0, lb, Sh

    def rows(self, state, eps, reduce: bool = True) -> torch.Tensor:
        """The first marginals' l1 residuals ``(K, *batch)``, or their max over k: what the over-relaxation watches."""
        f, S1 = state[0], state[3]
        ta = self.a if self.rho is None else torch.where(self.a > 0, self.a * torch.exp(-f / self.rho), 0.0)  # f = -inf
        err = _esum((torch.exp((f - S1) / eps) - ta).abs(), self.k)
        return err.amax(0) if reduce else err

    def error(self, state, eps) -> torch.Tensor:
        r"""Max over k of the l1 violations of both marginal conditions of coupling k, plus (debiased) the l1
        residual of the debiasing fixed point :math:`d \odot K d = b`; batch shape."""
        _, g, h, _, S0, lb, Sh = state
        tb = torch.exp(lb if self.rho is None else lb - g / self.rho)
        err = (self.rows(state, eps, False) + _esum((torch.exp((g - S0) / eps) - tb).abs(), self.k)).amax(0)
        return err if h is None else err + _esum((torch.exp((h - Sh) / eps) - torch.exp(lb)).abs(), self.k)

    def freeze(self, active, old, new):
        """Keep converged batch elements where they are (K-first potentials, batch-first ``h``, ``log b``)."""
        m = active.reshape(*active.shape, *([1] * self.k))
        return tuple(None if v is None else torch.where(m if v.dim() == m.dim() else m[None], v, o)
                     for v, o in zip(new, old))


@dataclass(frozen=True)
class Barycenter:
    r"""Fixed-support entropic barycenter solver (log-domain iterative Bregman projections).

    Args:
        eps: entropic regularisation, absolute, in cost units (> 0).
        tol: stop when the error of :class:`~monge.results.barycenter.BarycenterResult` (max over the K couplings
            of the l1 violation of both marginals, units of the weights; debiased: plus the debiasing residual)
            is below it, checked every ``check_every`` iterations; ``None``:
            :data:`~monge.solvers.sinkhorn.DEFAULT_TOL` of the dtype. ``converged`` and ``convergence.error``
            describe the returned barycenter and potentials. ``0``: an alias of ``fixed_iters=True`` (``converged``
            is then reported against the default tolerance).
        max_iter: iteration cap; reaching it is reported (``converged=False`` + one warning), never raised.
        fixed_iters: run exactly ``max_iter`` plain IBP iterations (the "L iterations" map of barycentric
            coordinates): no stop test, no over-relaxation for ``omega="auto"``, no warning.
        check_every: iterations between checks (the only device synchronisations of the loop), plus one extra
            check where the measured contraction predicts the tolerance to be met before the next regular one.
        omega: over-relaxation of the potentials, :math:`f \leftarrow f + \omega (T f - f)` (same fixed point;
            5-6x fewer iterations on a 128x128 grid at eps = 2e-3 and at eps = 1e-3 on 1000 points).
            ``"auto"`` (default) picks it from the measured contraction as Sinkhorn does
            (:class:`~monge.solvers._loop.Relaxation`). A number in (0, 2) fixes it.
        debias: the debiased barycenter (needs the same support on both sides: a square, symmetric geometry).
        grad: ``"unroll"`` (default: autograd through every iteration where an input requires grad, exact
            derivatives of the computed barycenter w.r.t. ``hists``, ``weights`` and the geometry; each iteration is
            checkpointed, so memory holds O(L) potentials and one iteration's intermediates, never L dense
            matrices) or ``"envelope"`` (opt-in, APPROXIMATE: detached iterations, then one differentiable step;
            cheap, but a barycenter is a minimiser, not an optimal value, so the envelope theorem does not hold and
            its gradients w.r.t. ``weights`` and ``hists`` can point the wrong way).
        verbose: a progress report (tqdm, or lines on stderr without it).

    Failure modes: ``eps`` too small for ``max_iter`` -> ``converged=False``; NaN/inf -> status ``"diverged"``;
    float32 works at small eps (log domain) down to its rounding floor (``tol`` >= 1e-5).

    References:
        Benamou, Carlier, Cuturi, Nenna, Peyre (2015), SIAM J. Sci. Comput. 37(2). Janati, Cuturi, Gramfort (2020),
        ICML. Chizat, Peyre, Schmitzer, Vialard (2018), Math. Comp. 87.

    Example:
        >>> import torch
        >>> from monge.geometry import Grid
        >>> a = torch.zeros(2, 32, dtype=torch.float64); a[0, 4] = a[1, 20] = 1  # two Diracs on a 1-D grid
        >>> res = Barycenter(eps=1e-3)(BarycenterProblem(Grid(32, dtype=torch.float64), a))
        >>> int(res.barycenter.argmax()), res.convergence.all_converged  # the midpoint 12
        (12, True)
    """

    eps: float
    tol: float | None = None
    max_iter: int = 2000
    check_every: int = 10
    debias: bool = False
    grad: str = "unroll"
    verbose: bool = False
    omega: float | str = "auto"
    fixed_iters: bool = False

    def __post_init__(self):
        from .._validation import check_loop, check_positive

        check_positive(self.eps, "eps")
        if self.tol is not None and (not isinstance(self.tol, (int, float)) or isinstance(self.tol, bool)
                                     or not 0 <= self.tol < float("inf")):
            raise ValueError(f"tol: expected None or a finite number >= 0 (0: fixed_iters=True), got {self.tol!r}")
        check_loop(self.max_iter, self.check_every, self.omega)
        if self.grad not in BARYCENTER_GRADS:
            raise ValueError(f"grad: expected one of {BARYCENTER_GRADS}, got {self.grad!r}")
        if not isinstance(self.debias, bool):
            raise TypeError(f"debias: expected a bool, got {type(self.debias).__name__}")

    def __call__(self, prob: BarycenterProblem) -> BarycenterResult:
        if not isinstance(prob, BarycenterProblem):
            raise TypeError(f"prob: expected a monge BarycenterProblem, got {type(prob).__name__}")
        self._check_debias(prob)
        mode = torch.is_grad_enabled()
        unroll = self.grad == "unroll" and mode
        data = _Data.of(prob, self.debias, detach=not unroll)
        eps, tol = self.eps, DEFAULT_TOL[data.la.dtype] if not self.tol else float(self.tol)
        fixed = self.fixed_iters or self.tol == 0
        with torch.set_grad_enabled(unroll):
            geom = prob.geom.loop_geometry(unroll)
            init = self._init(prob, data)
            fast = CompiledBarycenter.of(geom, data, init, eps)  # first: the start's soft-mins share its kernel
            state = (fast and fast.start(*init)) or data.start(geom, *init, eps)
            ckpt = unroll and any(t is not None and t.requires_grad for t in state)  # only potentials are stored

            def step(s, w):  # checkpointed: one iteration's intermediates are recomputed in the backward pass
                return checkpoint(lambda *t: data.step(geom, t, eps, w), *s, use_reentrant=False) if ckpt else \
                    data.step(geom, s, eps, w)

            run = fixed_point(step, lambda s: data.error(s, eps), state, tol=tol, max_iter=self.max_iter,
                              check_every=self.check_every, omega=self.omega,
                              fixed_iters=fixed, quiet=self.debias and not fixed,
                              freeze=data.freeze if prob.batch_shape else None, verbose=self.verbose,
                              name="barycenter", finish=lambda s: self._finish(prob, s, mode, fast),
                              watch=fast.watch if fast else lambda s: data.rows(s, eps),
                              measure=fast.measure if fast else None, block=fast.block if fast else None)
        if self.debias and not fixed:
            _warn_debiased(run, tol, self.max_iter)
        barycenter, f, g = run.state
        return BarycenterResult(barycenter=barycenter, f=f, g=g, eps=eps, problem=prob, convergence=run.convergence)

    def _check_debias(self, prob):
        if not self.debias:
            return
        if prob.rho is not None:
            raise ValueError("debias: the debiased barycenter is balanced only; use rho=None with debias=True")
        n, m = prob.geom.shape
        if n != m:
            raise ValueError(f"debias: needs the same support for the inputs and the barycenter (a square geometry), "
                             f"got geom.shape = {(n, m)}")

    def _init(self, prob, data):
        tgt, batch = prob.support_shape, prob.batch_shape
        g = data.la.new_zeros((data.la.shape[0], *batch, *tgt))
        return torch.zeros_like(data.la), g, data.la.new_zeros((*batch, *tgt)) if self.debias else None

    def _finish(self, prob, state, mode: bool, fast=None):
        """The returned object: one more plain iteration on the problem's own geometry and data (differentiable in
        the caller's grad mode; compiled where nothing is differentiated), and its error (the soft-mins of that
        iteration give it)."""
        eps, k, (f, g, h) = self.eps, prob.event_ndim, state[:3]
        dt = prob.hists.dtype
        if fast is not None and not (mode and _needs_grad(prob)):
            state = fast.block(state, 1.0, 1)[0]
            return tuple(t.to(dt) for t in (torch.exp(state[5]), state[0], state[1])), fast.measure(state)[0]
        f, g, h = (None if t is None else t.to(dt) for t in (f, g, h))  # float32 inputs may iterate in float64
        with torch.set_grad_enabled(mode):
            geom, data = prob.geom, _Data.of(prob, self.debias)
            if self.grad == "envelope":
                f, g, h = f.detach(), g.detach(), (None if h is None else h.detach())
            Sh = None if h is None else geom.softmin(h, eps, 0)
            state = data.step(geom, (f, g, h, geom.softmin(g, eps, 1), None, None, Sh), eps)
            out = torch.exp(state[5]), k_back(state[0], k), k_back(state[1], k)
        with torch.no_grad():
            return out, data.error(state, eps)


def _warn_debiased(run, tol: float, max_iter: int) -> None:
    """The one warning of a debiased solve: where it ended at ``max_iter`` still decreasing like a power of the
    iteration count (the error's factor per doubling of the iterations, ``q``, is about constant: sublinear), what
    that means and about how many iterations ``tol`` needs; otherwise the driver's warning."""
    conv = run.convergence
    err = conv.error.reshape(-1)
    trace = [] if conv.errors is None else list(conv.errors.reshape(conv.errors.shape[0], -1))
    late = [i for i, st in enumerate(conv.status) if st == "max_iter"]
    worst = max(late, key=lambda i: float(err[i])) if late else None
    L = len(trace)
    if worst is None or L < 8 or not all(math.isfinite(float(t[worst])) for t in trace[L // 4:]):
        return warn_not_converged("barycenter", conv.converged, conv.error, tol, max_iter,
                                  stalled_at=run.n_iters if "stalled" in conv.status else None)
    e1, e2 = (float(trace[(L - 1) // d][worst]) for d in (4, 2))  # at ~it/4, ~it/2 (checks every check_every)
    q_late, q_early = e2 / max(float(err[worst]), 1e-300), e1 / max(e2, 1e-300)
    if not (1.0 < q_late < q_early ** 1.5):  # not decreasing, or faster than a power law: the usual report
        return warn_not_converged("barycenter", conv.converged, conv.error, tol, max_iter)
    need = run.n_iters * (float(err[worst]) / tol) ** (math.log(2) / math.log(q_late))
    warn(f"barycenter: {len(late)} of {err.numel()} debiased problems reached max_iter={max_iter} with an error of "
         f"{float(err[worst]):.3g} > tol={tol:g}, still decreasing but sublinearly (a factor {q_late:.3g} per "
         f"doubling of the iterations): the debiasing potential h solves the deconvolution K e^(h/eps) = "
         f"prod_k (K^T u_k)^lambda_k by a damped multiplicative update, which slows down where the kernel does not "
         f"resolve the inputs (inputs sharper than sqrt(eps), e.g. near-Diracs, or eps large against the spacing "
         f"of the support): the limit then has zero mass on some cells (h -> -inf there) or is ill-conditioned. "
         f"Extrapolating the last doubling, tol needs about {need:.2g} iterations: raise max_iter, use a larger "
         f"eps for sharp inputs, or debias=False. The result reports converged=False.")


def _needs_grad(prob: BarycenterProblem) -> bool:
    """Whether an input of ``prob`` (histograms, weights, the geometry's tensor) requires grad."""
    return any(t.requires_grad for t in (prob.hists, prob.weights, prob.geom.like()))


def _lead(t: torch.Tensor, batch: torch.Size, k: int) -> torch.Tensor:
    """``(K, *b, *event)`` with ``b`` broadcastable to ``batch`` -> expanded to ``(K, *batch, *event)``."""
    extra = len(batch) - (t.dim() - 1 - k)
    t = t.reshape(t.shape[0], *([1] * extra), *t.shape[1:])
    return t.expand(t.shape[0], *batch, *t.shape[t.dim() - k:])
