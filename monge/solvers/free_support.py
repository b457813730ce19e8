r"""Free-support Wasserstein barycenters by the fixed-point iteration on the support.

.. math::
    \min_{X \in \mathbb{R}^{k \times d}} \sum_{k'} \lambda_{k'}\, W_2^2\Big(\sum_i b_i \delta_{X_i},\
        \sum_j a_{k'j} \delta_{x_{k'j}}\Big)

Each iteration solves the K transport problems from the current support to the inputs (exactly, or with
Sinkhorn), then moves every support point to the lambda-weighted barycentric projection of the plans

.. math::
    X_i \leftarrow \sum_{k'} \lambda_{k'} \frac{1}{b_i} \sum_j P^{(k')}_{ij}\, x_{k'j}

(Cuturi & Doucet 2014, Algorithm 2 with unit step; Alvarez-Esteban et al. 2016). The move minimises the
objective for fixed plans, so with exact plans the objective never increases. Optionally the weights ``b`` are
updated too, by an exponentiated subgradient step on the dual potentials (Cuturi & Doucet, Algorithm 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .._validation import (as_tensor, check_points, check_positive, check_squared_range, check_weights,
                           common_dtype_device)
from ..geometry.costs import SqEuclidean
from .._warnings import InnerWarnings, warn
from ..results import Convergence, FreeSupportResult
from ._loop import Progress

__all__ = ["FreeSupportBarycenter", "FreeSupportResult", "free_support_barycenter", "pow2_unit", "warn_not_converged"]

METHODS = ("exact", "sinkhorn")
_sqdist = SqEuclidean()


def warn_not_converged(name: str, conv: Convergence, max_iter: int, tol: float, inner: str | None = None) -> None:
    """One ``RuntimeWarning`` for an outer fixed-point loop that did not converge, naming the loop that failed:
    the outer one (``max_iter`` reached, or NaN) or an inner level (``inner``: what its warnings said)."""
    err, n = float(conv.error.max()), int(conv.n_iters.max())
    failed = [(key, lvl) for key, lvl in conv.levels if not lvl.all_converged]
    if "diverged" in conv.status:
        what = f"the {conv.criterion} became {err} (NaN or inf) after {n} iterations"
    elif not bool((conv.error <= tol).all()):
        what = f"reached max_iter={max_iter} with a {conv.criterion} of {err:.3g} > tol={tol:g}; raise max_iter or tol"
    else:
        what = f"met tol={tol:g} after {n} iterations (max_iter={max_iter})"
    for key, lvl in failed:
        bad = int((~lvl.converged).sum())
        what += (f", but {bad} of {lvl.converged.numel()} inner {key!r} solves at the returned support did not "
                 f"converge (worst {lvl.criterion} {float(lvl.error.max()):.3g}; result.convergence.level({key!r}))")
    if inner:
        what += f"; {inner}"
    warn(f"{name}: {what}. The result reports converged=False.")


def as_inputs(xs, as_, weights):
    r"""Validate K clouds and pad them: ``Y (K, N, d)``, ``A (K, N)`` (zero weight on padding), ``lam (K,)``."""
    if isinstance(xs, torch.Tensor) and xs.dim() == 3:
        xs = list(xs.unbind(0))
    if not isinstance(xs, (list, tuple)) or not xs:
        raise TypeError(f"xs: expected a non-empty list of point clouds (n_k, d) or a tensor (K, n, d), got "
                        f"{type(xs).__name__}")
    xs = [as_tensor(x, f"xs[{i}]") for i, x in enumerate(xs)]
    for i, x in enumerate(xs):
        check_points(x, f"xs[{i}]")
        check_squared_range(x, f"xs[{i}]")
        if x.dim() != 2 or x.shape[-1] != xs[0].shape[-1]:
            raise ValueError(f"xs[{i}]: expected points of shape (n_{i}, d) with d = {xs[0].shape[-1]}, got shape "
                             f"{tuple(x.shape)}")
    common_dtype_device(**{f"xs[{i}]": x for i, x in enumerate(xs)})
    like, K = xs[0], len(xs)
    if as_ is not None and (not isinstance(as_, (list, tuple)) or len(as_) != K):
        raise ValueError(f"as_: expected None or a list of K = {K} weight vectors, got "
                         f"{len(as_) if isinstance(as_, (list, tuple)) else type(as_).__name__}")
    N = max(len(x) for x in xs)
    Y, A = like.new_zeros((K, N, like.shape[-1])), like.new_zeros((K, N))
    for i, x in enumerate(xs):
        Y[i, : len(x)], Y[i, len(x):] = x.detach(), x[0].detach()
        A[i, : len(x)] = _simplex(None if as_ is None else as_[i], f"as_[{i}]", len(x), like)
    return Y, A, _simplex(weights, "weights", K, like)


def pow2_unit(x: torch.Tensor) -> float:
    """The power of two at or above ``max |x|`` (1 for zeros): dividing by it is exact, and squared distances of the
    rescaled points neither overflow nor underflow."""
    top = float(x.abs().max()) if x.numel() else 0.0
    return math.ldexp(1.0, math.frexp(top)[1]) if top > 0 else 1.0


def _simplex(w, name: str, n: int, like: torch.Tensor) -> torch.Tensor:
    """Nonnegative weights ``(n,)`` with a positive sum, normalised to 1 (``None``: uniform)."""
    if w is None:
        return like.new_full((n,), 1.0 / n)
    t = check_weights(w, name, n, like, like_name="xs[0]")  # the one histogram validator
    if t.dim() != 1:
        raise ValueError(f"{name}: expected weights of shape ({n},) (no batch), got shape {tuple(t.shape)}")
    return t.detach() / t.sum().detach()


def sample_support(Y, A, lam, k: int, seed=None) -> torch.Tensor:
    """``k`` distinct input points drawn with probabilities ``lam_k a_kj`` (with replacement if too few)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(0 if seed is None else seed)
    p = (lam[:, None] * A).reshape(-1).to("cpu", torch.float64)
    idx = torch.multinomial(p, k, replacement=k > int((p > 0).sum()), generator=gen)
    return Y.reshape(-1, Y.shape[-1])[idx.to(Y.device)].clone()


def spread(Y, A, lam) -> float:
    """Root of the lambda-averaged variance of the inputs: the length unit of the stopping rule (1 if 0)."""
    mean = (A[..., None] * Y).sum(1, keepdim=True)
    var = float((lam * (A * ((Y - mean) ** 2).sum(-1)).sum(-1)).sum())
    return math.sqrt(var) if var > 0 else 1.0


def ot_step(Y, A, X, b, method: str, eps, warm=None):
    """Plans from ``(X, b)`` to each input: ``(projections (K, k, d), costs (K,), f (K, k), state, convergence)``.

    A projection row is :math:`\\sum_j P_{ij} y_j / \\sum_j P_{ij}` (rows without mass: the point itself).
    ``state`` is the exact result (sparse plans) or the Sinkhorn potentials (a warm start for the next call);
    ``convergence`` that of the K inner solves (shape ``(K,)``).
    """
    K, k = Y.shape[0], X.shape[0]
    if method == "exact":
        from ..geometry.dense import DenseCost
        from ..problems.linear import LinearProblem
        from .exact.network_simplex import NetworkSimplex

        # float64 in: the network simplex runs in float64 and rejects float32 mass rounding (~1e-8 relative)
        X64, Y64 = X.double(), Y.double()
        b64, A64 = b.double(), A.double()
        res = NetworkSimplex()(LinearProblem(DenseCost(_cost(X64, Y64)), (b64 / b64.sum()).expand(K, k),
                                             A64 / A64.sum(-1, keepdim=True)))
        rows, cols, vals = res.rows, res.cols, res.vals
        proj = X64.new_zeros((K, k, X.shape[-1]))
        kk = torch.arange(K, device=X.device)[:, None].expand_as(rows)
        proj.index_put_((kk, rows), vals[..., None] * Y64[kk, cols], accumulate=True)
        mass = X64.new_zeros((K, k)).index_put_((kk, rows), vals, accumulate=True)
        T = _normalise(proj, mass, X64).to(X.dtype)
        return T, res.value.to(X.dtype), res.f.to(X.dtype), res, res.convergence
    from ..geometry.pointcloud import PointCloud
    from ..problems.linear import LinearProblem
    from .sinkhorn import Sinkhorn

    res = Sinkhorn(eps=eps)(LinearProblem(PointCloud(X.expand(K, *X.shape), Y), b.expand(K, k), A), init=warm)
    return res.transport(), res.transport_cost, res.f, (res.f, res.g), res.convergence


def _cost(X, Y):
    """Squared distances ``(K, k, N)``, by coordinates for small d (exact 0 at coincident points, and 3x faster
    than differences reduced over a trailing axis of length d), else through the shared cost."""
    if X.shape[-1] > 16:
        return _sqdist(X[None], Y)
    C = (X[None, :, 0, None] - Y[:, None, :, 0]) ** 2
    for j in range(1, X.shape[-1]):
        C += (X[None, :, j, None] - Y[:, None, :, j]) ** 2
    return C


def _normalise(proj, mass, X):
    pos = mass > 0
    return torch.where(pos[..., None], proj / torch.where(pos, mass, 1.0)[..., None], X)


def _weight_step(b, lam, f, it: int):
    """Exponentiated subgradient step on the simplex; the step is scale-free (divided by the potentials' range)."""
    alpha = (lam[:, None] * (f - f.mean(-1, keepdim=True))).sum(0)
    rng = float(alpha.max() - alpha.min())
    if rng <= 0:
        return b
    new = b * torch.exp(-alpha / (rng * math.sqrt(it + 1)))
    return new / new.sum()


@dataclass(frozen=True)
class FreeSupportBarycenter:
    r"""Free-support W_2 barycenter of K weighted point clouds by the fixed-point iteration.

    Args:
        method: ``"exact"`` (network simplex; the objective never increases) or ``"sinkhorn"`` (entropic plans at
            ``eps``, warm-started across iterations; the support is the barycentric projection, which is
            shrunk towards local means by about eps).
        eps: entropic regularisation in cost units, required for ``"sinkhorn"``.
        max_iter: cap on the support updates; reaching it is reported (``converged=False`` and a warning).
        tol: stop when the ``b``-weighted root-mean-square move of the support (plus the l1 change of ``b`` when
            it is updated) is below ``tol`` times the inputs' spread (the root of their lambda-averaged variance).
        update_weights: also update ``b`` by exponentiated subgradient steps on the dual potentials, step
            ``1/sqrt(t)`` over their range (a subgradient method: slow, the objective may oscillate; for K = 1
            prefer :class:`~monge.apps.kmeans.KMeans`, whose Lloyd step is the exact weight update).
        verbose: a tqdm progress bar.

    Call with ``(xs, as_=None, weights=None, *, init=None, b=None, k=None, seed=None)``; see
    :func:`free_support_barycenter`. The inputs are detached: the support is not differentiable.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
        >>> res = FreeSupportBarycenter()([x, x + 2.0], init=x.clone())
        >>> res.support.tolist(), round(float(res.value), 6)
        ([[1.0, 1.0], [2.0, 1.0]], 2.0)
    """

    method: str = "exact"
    eps: float | None = None
    max_iter: int = 100
    tol: float = 1e-7
    update_weights: bool = False
    verbose: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.method == "sinkhorn" or self.eps is not None:
            check_positive(self.eps, "eps")
        if self.method == "exact" and self.eps is not None:
            raise ValueError("eps: only for method='sinkhorn'; the exact method has no regularisation")
        if not isinstance(self.max_iter, int) or isinstance(self.max_iter, bool) or self.max_iter < 1:
            raise ValueError(f"max_iter: expected a positive int, got {self.max_iter!r}")
        check_positive(self.tol, "tol")

    def __call__(self, xs, as_=None, weights=None, *, init=None, b=None, k=None, seed=None) -> FreeSupportResult:
        Y, A, lam = as_inputs(xs, as_, weights)
        X = _initial_support(Y, A, lam, init, b, k, seed)
        b = _simplex(b, "b", X.shape[0], X)
        s = pow2_unit(Y)  # iterate in units of a power of two >= max |y|: exact, and no under/overflow of costs
        with torch.no_grad():
            res, _, inner = self.run(Y / s, A, lam, X / s, b, quiet=True)
        res = replace(res, support=res.support * s, value=res.value * s * s, costs=res.costs * s * s,
                      objective=res.objective * s * s)
        if not res.convergence.all_converged:  # one warning per call, naming the loop that failed
            warn_not_converged("free-support barycenter", res.convergence, self.max_iter, self.tol,
                               inner.summary("the inner solves"))
        return res

    def run(self, Y, A, lam, X, b, quiet: bool = False):
        """The loop on validated, padded data; returns ``(result, last exact/Sinkhorn state, inner warnings)``.

        The inner solves' warnings are collected (``quiet``: kept for one summary by the caller) instead of one per
        iteration; the level ``"ot"`` of the result's convergence holds the inner solves at the returned support.
        """
        scale, trace, errors, state, warm = spread(Y, A, lam), [], [], None, None
        bar, inner = Progress(self.max_iter, self.verbose, "free-support barycenter"), InnerWarnings()
        err = float("inf")
        for it in range(self.max_iter):
            with inner.collect():
                T, costs, f, state, ot_conv = ot_step(Y, A, X, b, self.method, self.eps, warm)
            warm = state if self.method == "sinkhorn" else None
            trace.append((lam * costs).sum())
            X_new = (lam[:, None, None] * T).sum(0)
            b_new = _weight_step(b, lam, f, it) if self.update_weights else b
            err = float(((b * ((X_new - X) ** 2).sum(-1)).sum()).sqrt()) / scale + float((b_new - b).abs().sum())
            errors.append(err)
            X, b = X_new, b_new
            bar.update(it + 1, err, self.eps or 0.0)
            if not err > self.tol:  # met, or NaN (reported as diverged)
                break
        bar.close()
        if err == 0.0 and not self.update_weights:  # the support did not move: the last solve is the final one
            value = trace[-1]
        else:
            with inner.collect():
                _, costs, _, state, ot_conv = ot_step(Y, A, X, b, self.method, self.eps, warm)
            value = (lam * costs).sum()
        conv = Convergence.build(X.new_tensor(err), self.tol, len(trace), criterion="relative_move",
                                 errors=X.new_tensor(errors), levels=(("ot", ot_conv),))
        res = FreeSupportResult(support=X, weights=b, value=value, costs=costs, objective=torch.stack(trace),
                                convergence=conv)
        if not quiet and not conv.all_converged:
            warn_not_converged("free-support barycenter", conv, self.max_iter, self.tol,
                               inner.summary("the inner solves"))
        return res, state, inner


def _initial_support(Y, A, lam, init, b, k, seed):
    if init is not None:
        X = as_tensor(init, "init", dtype=Y.dtype, device=Y.device)
        common_dtype_device(init=X, **{"xs[0]": Y})
        check_points(X, "init")
        if X.dim() != 2 or X.shape[-1] != Y.shape[-1] or (k is not None and X.shape[0] != k):
            raise ValueError(f"init: expected a support of shape (k, d) with d = {Y.shape[-1]}"
                             f"{'' if k is None else f', k = {k}'}, got shape {tuple(X.shape)}")
        return X.detach().clone()
    if k is None:
        k = len(b) if b is not None else int((A > 0).sum(-1).max())
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k: expected a positive int (the number of support points), got {k!r}")
    return sample_support(Y, A, lam, k, seed)


def free_support_barycenter(xs, as_=None, weights=None, *, k=None, init=None, b=None, method="exact", eps=None,
                            max_iter=100, tol=1e-7, update_weights=False, seed=None,
                            verbose=False) -> FreeSupportResult:
    r"""Free-support W_2 barycenter of point clouds ``xs[k'] (n_k', d)`` with weights ``as_[k']``.

    .. math::
        \min_{X} \sum_{k'} \lambda_{k'}\, W_2^2\Big(\sum_i b_i \delta_{X_i}, \sum_j a_{k'j} \delta_{x_{k'j}}\Big)

    Args:
        xs: a list of K clouds ``(n_k', d)`` (sizes may differ) or a tensor ``(K, n, d)``.
        as_: None (uniform) or a list of K weight vectors ``(n_k',)``, normalised to 1.
        weights: ``lambda (K,)``, nonnegative (None: uniform), normalised to 1.
        k: number of support points when ``init`` is None (default: the largest input size); the initial
            support is then ``k`` distinct input points drawn with probabilities ``lambda_k' a_k'j``.
        init: the initial support ``(k, d)``. b: the barycenter weights ``(k,)`` (None: uniform).
        seed: an int or a ``torch.Generator`` for the initial draw.
        method, eps, max_iter, tol, update_weights, verbose: see :class:`FreeSupportBarycenter`.

    Returns:
        :class:`FreeSupportResult` (``support``, ``weights``, ``value``, ``objective`` trace, ``convergence``).
        Failure modes (``converged=False`` and one ``RuntimeWarning`` per call, naming the loop): ``max_iter``
        reached; an inner transport solve at the returned support did not converge (``method="sinkhorn"`` at a
        small eps: see ``result.convergence.level("ot")``, one entry per input); NaN (status ``"diverged"``).

    References: Cuturi & Doucet, Fast computation of Wasserstein barycenters, ICML 2014; Alvarez-Esteban, del
    Barrio, Cuesta-Albertos, Matran, A fixed-point approach to barycenters in Wasserstein space, JMAA 2016.

    Example:
        >>> import torch
        >>> xs = [torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0], [6.0], [8.0]])]
        >>> res = free_support_barycenter(xs, k=2, seed=0)
        >>> sorted(round(v, 4) for v in res.support[:, 0].tolist()), res.convergence.status
        ([2.3333, 4.6667], ('converged',))
    """
    solver = FreeSupportBarycenter(method=method, eps=eps, max_iter=max_iter, tol=tol,
                                   update_weights=update_weights, verbose=verbose)
    return solver(xs, as_, weights, init=init, b=b, k=k, seed=seed)
