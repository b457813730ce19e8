r"""Wasserstein unmixing and dictionary learning (NMF with an optimal-transport fit) for histograms.

Unmixing finds, for a histogram :math:`x` and a dictionary of :math:`K` atoms :math:`D = (d_1, \dots, d_K)`,
the weights :math:`\lambda \in \Delta_K` of the mixture closest to :math:`x` in an entropic OT loss:

.. math::
    \min_{\lambda \in \Delta_K} \; (1 - \alpha)\, L_\varepsilon\big(x, \textstyle\sum_k \lambda_k d_k\big)
        + \alpha\, \mathrm{OT}_{\varepsilon_0}(\lambda_0, \lambda)

(the second term, optional, is a Wasserstein prior towards :math:`\lambda_0` under a cost :math:`C_0` between
atoms, as in Nakhostin et al. 2016). :math:`L_\varepsilon` is the debiased Sinkhorn divergence
(``loss="divergence"``, the default: zero iff the mixture equals :math:`x`, convex in the mixture) or the plain
entropic cost :math:`\mathrm{OT}_\varepsilon` (``loss="ot"``). Both are convex in :math:`\lambda` for a linear
mixture, so the Frank-Wolfe gap :math:`\langle \nabla, \lambda\rangle - \min_k \nabla_k` bounds the
suboptimality: it is the stopping certificate reported in the result. With ``mixing="barycenter"`` (Wasserstein
barycentric coordinates, Bonneel, Peyre & Cuturi 2016) the problem is not convex and the gap certifies
stationarity only; for an l2 or KL fit of the barycenter, see :func:`monge.apps.coordinates.barycentric_coordinates`.

Dictionary learning (Wasserstein NMF; Sandler & Lindenbaum 2011, Rolet, Cuturi & Peyre 2016) learns atoms and
weights together:

.. math::
    \min_{D \in \Delta_n^K,\ \Lambda \in \Delta_K^N} \sum_{i=1}^N L_\varepsilon\big(x_i, \textstyle\sum_k
        \Lambda_{ik} d_k\big)

with the gradients of the Sinkhorn losses w.r.t. the mixtures given by the dual potentials (envelope theorem).
``mixing="barycenter"`` replaces the linear mixture by the entropic Wasserstein barycenter of the atoms
(Schmitz et al. 2018), differentiated through its unrolled iterations.
"""

from __future__ import annotations

import warnings

import torch

from .._validation import as_tensor, check_positive, check_weights
from .._warnings import InnerWarnings, warn
from ..geometry.base import Geometry
from ..problems import LinearProblem
from ..results import Convergence, DictionaryResult, UnmixResult
from ..solvers._loop import Progress
from ..solvers.schedules import EpsScaling
from ..solvers.sinkhorn import Sinkhorn

__all__ = ["UnmixResult", "DictionaryResult", "unmix", "dictionary_learning", "LOSSES", "MIXINGS"]

LOSSES = ("divergence", "ot")
MIXINGS = ("linear", "barycenter")


def _check_geom(geom, k_support, name="atoms", lead="K"):
    if not isinstance(geom, Geometry):
        raise TypeError(f"geom: expected a monge Geometry (DenseCost, Grid, PointCloud), got {type(geom).__name__}")
    n, m = geom.shape
    if n != m:
        raise ValueError(f"geom: histograms and atoms share one support, expected shape (n, n), got {(n, m)}")
    support = tuple(geom.source_shape)
    if k_support != support:
        raise ValueError(f"{name}: expected shape ({lead}, {', '.join(map(str, support))}) to match geom, got "
                         f"support {k_support}")
    return support


def _check_hist(x, name, support, like):
    x = check_weights(x, name, support, like, size_name="support")  # the one histogram validator
    k = len(support)
    mass = x.sum(tuple(range(-k, 0)))
    return x / mass.reshape(*mass.shape, *([1] * k))


def _mix(atoms, weights, k, mixing, geom, eps, bary_iter):
    """The mixture of ``atoms (K, *support)`` with ``weights (..., K)``: linear, or the entropic barycenter.

    The barycenter after a fixed number of iterations has a mass off 1 by its last marginal error; it is divided by
    its mass (differentiably), so the fit compares histograms of equal mass.
    """
    if mixing == "linear":
        return torch.tensordot(weights, atoms, dims=([-1], [0]))
    from ..api import (
        barycenter,  # the unrolled, checkpointed IBP loop
    )

    hists = atoms.expand(*weights.shape[:-1], *atoms.shape)
    q = barycenter(hists, weights, geom=geom, eps=eps, grad="unroll", tol=0, max_iter=bary_iter).barycenter
    return q / q.sum(tuple(range(-k, 0)), keepdim=True)


#: Inner Sinkhorn solves of a fit: a loss-grade tolerance (units of the weights). Mixtures put small masses where
#: the data has almost none, and routing the last 1e-5 of mass takes Sinkhorn thousands of iterations for no
#: visible change of the loss; what the inexactness costs shows in the reported Frank-Wolfe gap instead.
INNER = {"tol": 1e-5, "max_iter": 2000}


class _Fit:
    """The loss ``L(x, q)`` (batch shape, differentiable in ``q``) with Sinkhorn potentials carried from one call to
    the next: an optimiser moves ``q`` a little per step, so warm starts replace eps-scaling after the first call."""

    def __init__(self, x, geom, eps, loss, solver_kw):
        self.x, self.geom, self.loss = x, geom, loss
        kw = {**INNER, **solver_kw}
        self.warm = Sinkhorn(eps=eps, **kw)
        self.cold = Sinkhorn(eps=eps, **{"schedule": EpsScaling(0.5), **kw})
        self.init = {}
        self.half_xx = 0.0
        if loss == "divergence":
            with torch.no_grad():
                self.half_xx = 0.5 * self._solve("xx", LinearProblem(geom, x, x))

    def _solve(self, name, prob):
        init = self.init.get(name)
        with warnings.catch_warnings():  # inner solves: their accuracy shows in the outer certificate
            warnings.simplefilter("ignore", RuntimeWarning)
            res = (self.cold if init is None else self.warm)(prob, init=init)
        self.init[name] = (res.f.detach(), res.g.detach())
        return res.value

    def __call__(self, q):
        value = self._solve("xq", LinearProblem(self.geom, self.x, q))
        if self.loss == "divergence":
            value = value - 0.5 * self._solve("qq", LinearProblem(self.geom, q, q)) - self.half_xx
        return value


def _check_common(eps, loss, mixing):
    check_positive(eps, "eps")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if mixing not in MIXINGS:
        raise ValueError(f"mixing: expected one of {MIXINGS}, got {mixing!r}")


def unmix(target, atoms, geom: Geometry, *, eps: float, loss: str = "divergence", mixing: str = "linear",
          prior=None, alpha: float = 0.0, max_iter: int = 100, tol: float = 1e-4, bary_iter: int = 50,
          verbose: bool = False, **solver_kw) -> UnmixResult:
    r"""Weights :math:`\lambda \in \Delta_K` of the atoms whose mixture is closest to ``target`` (see the module).

    Args:
        target: ``(..., *support)`` histograms (normalised here); leading dims are independent problems.
        atoms: ``(K, *support)`` nonnegative atoms (normalised here).
        geom: the ground cost on the support (``DenseCost(C, symmetric=True)``, ``Grid(shape)``, ...).
        eps: entropic temperature of the fit (cost units).
        loss: ``"divergence"`` (debiased, default) or ``"ot"``. mixing: ``"linear"`` or ``"barycenter"``.
        prior: ``None`` or ``(lambda0 (K0,), C0 (K0, K), eps0)``: a Wasserstein prior on the weights, weight ``alpha``.
        alpha: in ``[0, 1)``, the weight of the prior.
        max_iter: L-BFGS iterations (on softmax logits); tol: the Frank-Wolfe gap (loss units) that counts as
            converged; the inner solves' tolerance (:data:`INNER`, 1e-5) limits how small it can get.
        bary_iter: the fixed number of barycenter iterations (``mixing="barycenter"`` only): the mixture is the
            unrolled barycenter after ``bary_iter`` iterations, normalised to unit mass.
        **solver_kw: :class:`~monge.solvers.sinkhorn.Sinkhorn` options of the inner solves (``tol``, ``max_iter``).

    Returns:
        :class:`UnmixResult`; ``converged`` where the Frank-Wolfe gap is below ``tol``.

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> x = torch.linspace(0, 1, 30, dtype=torch.float64)
        >>> bump = lambda c: torch.softmax(-((x - c) / 0.15) ** 2, 0)
        >>> atoms = torch.stack([bump(0.2), bump(0.5), bump(0.8)])
        >>> target = 0.6 * atoms[0] + 0.4 * atoms[2]
        >>> res = unmix(target, atoms, DenseCost((x[:, None] - x) ** 2, symmetric=True), eps=1e-3)
        >>> [round(v, 2) for v in res.weights.tolist()]
        [0.6, 0.0, 0.4]
    """
    _check_common(eps, loss, mixing)
    atoms = as_tensor(atoms, "atoms")
    support = _check_geom(geom, tuple(atoms.shape[1:]))
    like = geom.like()
    atoms = _check_hist(atoms.to(like), "atoms", support, like)
    target = _check_hist(target, "target", support, like)
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha: expected a number in [0, 1), got {alpha!r}")
    prior_fn = _prior(prior, atoms.shape[0], like) if alpha > 0 else None
    K, k = atoms.shape[0], len(support)
    batch = target.shape[: target.dim() - k]
    theta = like.new_zeros((*batch, K)).requires_grad_()

    fit = _Fit(target, geom, eps, loss, solver_kw)

    def objective(lam):
        q = _mix(atoms, lam, k, mixing, geom, eps, bary_iter)
        J = (1 - alpha) * fit(q)
        return (J if prior_fn is None else J + alpha * prior_fn(lam)), q

    opt = torch.optim.LBFGS([theta], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14)
    trace, bar, inner = [], Progress(max_iter, verbose, "unmix"), InnerWarnings()

    def closure():
        opt.zero_grad()
        with inner.collect():  # the prior's solves: one summary for the call, not one warning per evaluation
            J = objective(torch.softmax(theta, -1))[0].sum()
        J.backward()
        trace.append(float(J.detach()))
        bar.update(len(trace), trace[-1], eps)
        return J

    opt.step(closure)
    bar.close()
    lam = torch.softmax(theta.detach(), -1).requires_grad_()
    with inner.collect():
        J, q = objective(lam)
    (grad,) = torch.autograd.grad(J.sum(), lam)
    gap = (grad * lam).sum(-1) - grad.min(-1).values
    conv = _convergence(gap.detach(), tol, opt.state[theta].get("n_iter", 0), max_iter,
                        inner.summary("the prior's inner solves"))
    return UnmixResult(weights=lam.detach(), mixture=q.detach(), value=J.detach(),
                       trace=like.new_tensor(trace), convergence=conv)


def _prior(prior, K, like):
    try:
        lam0, C0, eps0 = prior
    except (TypeError, ValueError):
        raise ValueError("prior: expected None or a tuple (lambda0 (K0,), C0 (K0, K), eps0)") from None
    from ..geometry import DenseCost

    C0 = as_tensor(C0, "prior C0", dtype=like.dtype, device=like.device)
    if C0.dim() != 2 or C0.shape[1] != K:
        raise ValueError(f"prior C0: expected shape (K0, {K}), got {tuple(C0.shape)}")
    check_positive(eps0, "prior eps0")
    geom0 = DenseCost(C0)
    lam0 = as_tensor(lam0, "prior lambda0", dtype=like.dtype, device=like.device)
    return lambda lam: Sinkhorn(eps=eps0)(LinearProblem(geom0, lam0, lam)).value


def _convergence(gap, tol, n_its, max_iter, inner: str | None) -> Convergence:
    """The Frank-Wolfe gap certificate; L-BFGS stopping early above ``tol`` is ``"stalled"``. One warning per call
    (with what the inner solves warned, aggregated)."""
    conv = Convergence.build(gap, tol, n_its, criterion="fw_gap", stalled=torch.tensor(n_its < max_iter))
    tail = f"; {inner}." if inner else "."
    if not conv.all_converged:
        warn(f"unmix: {int((~conv.converged).sum())} of {conv.converged.numel()} problems stopped "
             f"({conv.status[int((~conv.converged).reshape(-1).nonzero()[0])]}, {n_its} of max_iter={max_iter} "
             f"iterations) with a Frank-Wolfe gap of {float(gap.max()):.3g} > tol={tol:g} (bounds the suboptimality "
             "in loss units); raise max_iter, tighten the inner solves (tol=...) or raise eps. The result reports "
             "converged=False" + tail)
    elif inner:
        warn(f"unmix: {inner}; the certificate holds for the inexact prior term that was optimised.")
    return conv


def _init_atoms(x, K, generator):
    """K data histograms picked k-means++-style (far apart in l1), as atoms; a start that spans the data."""
    N = x.shape[0]
    flat = x.reshape(N, -1)
    idx = [int(torch.randint(N, (1,), generator=generator))]
    dist = (flat - flat[idx[0]]).abs().sum(-1)
    for _ in range(1, K):
        p = dist / dist.sum() if float(dist.sum()) > 0 else torch.full_like(dist, 1.0 / N)
        idx.append(int(torch.multinomial(p.cpu().double(), 1, generator=generator)))
        dist = torch.minimum(dist, (flat - flat[idx[-1]]).abs().sum(-1))
    return x[idx]


def dictionary_learning(data, n_atoms: int, geom: Geometry, *, eps: float, loss: str = "divergence",
                        mixing: str = "linear", max_iter: int = 200, lr: float = 0.05, tol: float = 1e-4,
                        init=None, seed: int = 0, bary_iter: int = 30, verbose: bool = False,
                        **solver_kw) -> DictionaryResult:
    r"""Learn ``n_atoms`` atoms and per-sample weights so that each histogram is close to its mixture (see module).

    Atoms and weights are softmax-parametrised (they stay on their simplices) and trained jointly with Adam on the
    mean loss; the Sinkhorn losses give their gradients through the dual potentials.

    Args:
        data: ``(N, *support)`` nonnegative histograms (normalised here).
        n_atoms: the number of atoms K.
        geom: the ground cost on the support (``Grid(shape)`` for images, ``DenseCost(C, symmetric=True)``).
        eps: entropic temperature (cost units); loss: ``"divergence"`` or ``"ot"``; mixing: ``"linear"`` or
            ``"barycenter"``.
        max_iter: Adam steps; lr: its learning rate (on logits); tol: stop when the mean loss changed by less than
            ``tol`` (relative) over the last 20 steps, which counts as converged (``convergence.error``: that change,
            over fewer steps for a shorter run).
        init: ``None`` (K data histograms spread k-means++-style) or initial atoms ``(K, *support)``.
        seed: seeds the initial atoms. bary_iter: barycenter iterations (``mixing="barycenter"``, see :func:`unmix`).

    Returns:
        :class:`DictionaryResult` (atoms, weights, reconstruction, the loss trace per step, convergence).

    Example:
        >>> import torch
        >>> from monge.geometry import Grid
        >>> data = torch.rand(6, 5, 5, dtype=torch.float64)
        >>> res = dictionary_learning(data, 2, Grid((5, 5), dtype=torch.float64), eps=0.05, max_iter=5)
        >>> res.atoms.shape, res.weights.shape, bool(res.trace[-1] <= res.trace[0])
        (torch.Size([2, 5, 5]), torch.Size([6, 2]), True)
    """
    _check_common(eps, loss, mixing)
    if not isinstance(n_atoms, int) or n_atoms < 1:
        raise ValueError(f"n_atoms: expected a positive int, got {n_atoms!r}")
    data = as_tensor(data, "data")
    support = _check_geom(geom, tuple(data.shape[1:]), "data", "N")
    like = geom.like()
    x = _check_hist(data.to(like), "data", support, like)
    if x.dim() != len(support) + 1:
        raise ValueError(f"data: expected shape (N, *support), got {tuple(data.shape)}")
    gen = torch.Generator().manual_seed(seed)
    atoms0 = _init_atoms(x, n_atoms, gen) if init is None else _check_hist(init, "init", support, like)
    if atoms0.shape[0] != n_atoms:
        raise ValueError(f"init: expected {n_atoms} atoms, got {atoms0.shape[0]}")
    k = len(support)
    U = torch.log(atoms0 * 0.9 + 0.1 / atoms0[0].numel()).reshape(n_atoms, -1).clone().requires_grad_()
    V = like.new_zeros((x.shape[0], n_atoms)).requires_grad_()
    opt = torch.optim.Adam([U, V], lr=lr)
    fit = _Fit(x, geom, eps, loss, solver_kw)
    trace, bar = [], Progress(max_iter, verbose, "dictionary")
    for it in range(max_iter):
        atoms = torch.softmax(U, -1).reshape(n_atoms, *support)
        q = _mix(atoms, torch.softmax(V, -1), k, mixing, geom, eps, bary_iter)
        L = fit(q).mean()
        opt.zero_grad()
        L.backward()
        opt.step()
        trace.append(float(L.detach()))
        bar.update(it + 1, trace[-1], eps)
        if it >= 20 and abs(trace[-21] - trace[-1]) <= tol * abs(trace[-21]):
            break
    bar.close()
    with torch.no_grad():
        atoms = torch.softmax(U, -1).reshape(n_atoms, *support)
        weights = torch.softmax(V, -1)
    rec = _mix(atoms, weights, k, mixing, geom, eps, bary_iter).detach()
    # the relative change over the last min(20, steps - 1) steps (one step measures no change: 1, i.e. 100%)
    window = trace[-min(21, len(trace))]
    change = abs(window - trace[-1]) / max(abs(window), 1e-300) if len(trace) > 1 else 1.0
    conv = Convergence.build(like.new_tensor(change), tol, len(trace), criterion="loss_change")
    if not conv.all_converged:
        warn(f"dictionary_learning: stopped ({conv.status[0]}) after {len(trace)} steps (max_iter={max_iter}) with "
             f"a relative loss change of {change:.3g} > tol={tol:g} over the last 20 steps; raise max_iter or the "
             "learning rate. The result reports converged=False.")
    return DictionaryResult(atoms=atoms, weights=weights, reconstruction=rec, trace=like.new_tensor(trace),
                            convergence=conv)
