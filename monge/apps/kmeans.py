r"""k-means as quantisation: the k-point measure closest in :math:`W_2` to the (weighted) data.

.. math::
    \min_{c_1..c_k,\ w \in \Delta_k} W_2^2\Big(\sum_j w_j \delta_{c_j},\ \sum_i a_i \delta_{x_i}\Big)
    \;=\; \min_{c} \sum_i a_i \min_j \|x_i - c_j\|^2 \quad (\text{free masses } w)

With free masses the optimal plan sends each point to its nearest centre and each centre takes the mass of its
Voronoi cell: Lloyd's iterations (assign, then move each centre to its cell's mean) are the free-support
barycenter iteration with K = 1 and free weights. With equal masses :math:`w_j = 1/k` the assignment is a real
OT problem (network simplex) and the centres move to the barycentric projections of the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .._validation import (
    as_tensor,
    check_points,
    check_positive,
    check_weights,
    common_dtype_device,
)
from .._warnings import warn
from ..results import Convergence, KMeansResult
from ..solvers._loop import Progress
from ..solvers.free_support import FreeSupportBarycenter, pow2_unit, warn_not_converged

__all__ = ["KMeans", "KMeansResult", "kmeans", "kmeans_plusplus", "kmeans_inertia"]

MASSES = ("free", "equal")


def _chunk(k: int, chunk: int | None) -> int:
    return chunk if chunk is not None else max(1, (1 << 20) // max(1, k))


def assign(x, c, chunk: int | None = None, xn: torch.Tensor | None = None):
    """Nearest centre of each point and its squared distance, by chunks of rows: ``O(chunk * k)`` memory.

    Per chunk one fused ``|c|^2 - 2 x c^T`` (``addmm``) and one ``min`` (two passes over the chunk); ``|x|^2``,
    constant over a row, is added to the minima only (``xn``: precomputed, e.g. once per Lloyd run).
    """
    n, step = x.shape[0], _chunk(c.shape[0], chunk)
    labels, part = x.new_empty(n, dtype=torch.int64), x.new_empty(n)
    cn = (c * c).sum(-1)
    ct = c.T.contiguous()
    for s in range(0, n, step):
        dist = torch.addmm(cn, x[s : s + step], ct, alpha=-2.0)
        part[s : s + step], labels[s : s + step] = dist.min(-1)
    xn = (x * x).sum(-1) if xn is None else xn
    return labels, (part + xn).clamp_min_(0.0)


def kmeans_plusplus(x, k: int, a=None, *, seed=None, n_trials: int | None = None, chunk: int | None = None):
    r"""Greedy k-means++ seeding: each new centre is the best of ``n_trials`` draws with probability
    :math:`\propto a_i D(x_i)^2` (``D``: distance to the chosen centres), default ``2 + log k`` draws.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [0.1], [10.0], [10.1]], dtype=torch.float64)
        >>> sorted(round(v) for v in kmeans_plusplus(x, 2, seed=0)[:, 0].tolist())
        [0, 10]
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(0 if seed is None else seed)
    a = x.new_full((x.shape[0],), 1.0 / x.shape[0]) if a is None else a
    z = Scale.of(x).to_unit(x)  # squared distances of points near 1e300 do not overflow
    trials = n_trials or 2 + int(math.log(k))
    draw = lambda p, m: torch.multinomial(p.to("cpu", torch.float64), m, True, generator=gen).to(x.device)  # noqa: E731
    chosen = [draw(a, 1)]
    _, closest = assign(z, z[chosen[0]], chunk)
    for _ in range(1, k):
        p = a * closest
        cand = draw(p if float(p.sum()) > 0 else a, trials)
        d2 = _distances(z, z[cand], chunk)
        pot = (a[:, None] * torch.minimum(closest[:, None], d2)).sum(0)
        best = int(pot.argmin())
        chosen.append(cand[best : best + 1])
        closest = torch.minimum(closest, d2[:, best])
    return x[torch.cat(chosen)]


@dataclass(frozen=True)
class Scale:
    r"""Lengths in units of :math:`s = 2^e \ge \max |x|`: squared distances of points near 1e300 do not overflow
    (nor those near 1e-300 underflow), and a power of two rescales exactly, so nothing else changes."""

    s: float

    @classmethod
    def of(cls, x) -> "Scale":
        return cls(pow2_unit(x))

    def to_unit(self, x):
        return x / self.s

    def from_unit(self, z):
        return z * self.s

    def squared(self, v):
        """A squared length (inertia) back in the data's units; ``inf`` where it overflows the dtype."""
        return v * self.s * self.s


def _distances(x, c, chunk):
    step = _chunk(c.shape[0], chunk)
    cn = (c * c).sum(-1)
    return torch.cat([((xs * xs).sum(-1, keepdim=True) - 2.0 * xs @ c.T + cn).clamp_min_(0.0)
                      for xs in x.split(step)])


def _lloyd(x, a, c, max_iter, tol, scale, chunk, verbose):
    """Lloyd's iterations from centres ``c``; returns ``(c, labels, d2, trace, errors, error)``.

    ``error`` describes the returned centres: 0 when the last step changed no label (the centres are the means of
    their cells, a fixed point), else the last move. A move weighs each centre by the larger of its old and new
    cell masses, so a centre relocated to an empty cell counts; the loop never stops at a relocation.
    """
    k, d = c.shape
    xn = (x * x).sum(-1)
    labels, d2 = assign(x, c, chunk, xn)
    trace, errors, error = [(a * d2).sum()], [], float("inf")
    bar = Progress(max_iter, verbose, "k-means")
    for it in range(max_iter):
        mass = x.new_zeros(k).index_add_(0, labels, a)
        sums = x.new_zeros(k, d).index_add_(0, labels, a[:, None] * x)
        c_new = torch.where(mass[:, None] > 0, sums / mass.clamp_min(torch.finfo(x.dtype).tiny)[:, None], c)
        empty = (mass <= 0).nonzero().reshape(-1)
        if len(empty):  # an empty cell takes the points farthest from their centres
            c_new[empty] = x[torch.topk(d2 * (a > 0), len(empty)).indices]
        new_labels, d2 = assign(x, c_new, chunk, xn)
        weight = torch.maximum(mass, x.new_zeros(k).index_add_(0, new_labels, a))
        error = float((((c_new - c) ** 2).sum(-1) * weight).sum().sqrt()) / scale
        errors.append(error)
        trace.append((a * d2).sum())
        c, stable, labels = c_new, bool((new_labels == labels).all()), new_labels
        bar.update(it + 1, error, 0.0)
        if len(empty) and math.isfinite(error):
            continue
        if stable:
            error = 0.0
        if not error > tol:  # met, or NaN (reported as diverged)
            break
    bar.close()
    return c, labels, d2, trace, errors, error


@dataclass(frozen=True)
class KMeans:
    r"""k-means quantisation: Lloyd's iterations (free masses) or the equal-mass quantisation (exact OT).

    Args:
        k: number of centres.
        mass: ``"free"`` (Lloyd: each centre takes its Voronoi cell's mass) or ``"equal"`` (masses ``1/k``:
            each step solves the exact OT from the centres to the data, the free-support barycenter with K = 1).
        n_init: restarts from k-means++ seeds (ignored with a given ``init``); the lowest inertia wins.
        max_iter: iterations per restart; reaching it is reported (``converged=False`` and a warning).
        tol: stop when the mass-weighted root-mean-square move of the centres (each weighted by the larger of its
            old and new cell masses) is below ``tol`` times the data's standard deviation; Lloyd also stops,
            converged with ``error = 0``, when no label changes, and never right after refilling an empty cell.
            The loop runs in units of a power of two (exact), so data near 1e300 or 1e-300 give the same centres.
        chunk: rows per block of the distance computations (``None``: about 2^20 / k), O(chunk k) memory.
        verbose: a tqdm progress bar.

    Call with ``(x, a=None, *, init=None, seed=None)``: ``x (n, d)``, weights ``a (n,)`` (normalised),
    ``init (k, d)`` initial centres, ``seed`` an int or ``torch.Generator``. dtype and device come from ``x``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [9.0], [11.0]], dtype=torch.float64)
        >>> res = KMeans(2)(x, seed=0)
        >>> sorted(res.centers[:, 0].tolist()), float(res.inertia), res.converged
        ([0.5, 10.0], 0.625, True)
    """

    k: int
    mass: str = "free"
    n_init: int = 1
    max_iter: int = 300
    tol: float = 1e-7
    chunk: int | None = None
    verbose: bool = False

    def __post_init__(self):
        for name in ("k", "n_init", "max_iter"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.mass not in MASSES:
            raise ValueError(f"mass: expected one of {MASSES}, got {self.mass!r}")
        check_positive(self.tol, "tol")
        if self.chunk is not None and (not isinstance(self.chunk, int) or self.chunk < 1):
            raise ValueError(f"chunk: expected a positive int or None, got {self.chunk!r}")

    def __call__(self, x, a=None, *, init=None, seed=None) -> KMeansResult:
        x = as_tensor(x, "x")
        check_points(x, "x")
        if x.dim() != 2:
            raise ValueError(f"x: expected points of shape (n, d), got shape {tuple(x.shape)}")
        x = x.detach()
        a = check_weights(a, "a", x.shape[0], x).detach()
        if a.dim() != 1:
            raise ValueError(f"a: expected weights of shape (n,) = ({x.shape[0]},), got shape {tuple(a.shape)}; "
                             "k-means solves one problem per call: loop over the rows of a")
        a = a / a.sum()
        if int((a > 0).sum()) < self.k:
            raise ValueError(f"k: expected at most as many centres as points of positive weight "
                             f"({int((a > 0).sum())}), got k = {self.k}")
        unit = Scale.of(x)  # iterate in units where squared distances are representable
        z = unit.to_unit(x)
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(0 if seed is None else seed)
        inits = [unit.to_unit(self._init(init, x))] if init is not None else [
            kmeans_plusplus(z, self.k, a, seed=gen, chunk=self.chunk) for _ in range(self.n_init)]
        scale = math.sqrt(float((a * ((z - a @ z) ** 2).sum(-1)).sum())) or 1.0
        with torch.no_grad():
            runs = [self._run(z, a, c0, scale) for c0 in inits]
        best = min(runs, key=lambda r: float(r.inertia))
        if not best.converged:  # once per call, for the returned restart
            warn_not_converged("k-means", best.convergence, self.max_iter, self.tol)
        return _in_data_units(best, unit)

    def _init(self, init, x):
        c = as_tensor(init, "init", dtype=x.dtype, device=x.device)
        common_dtype_device(init=c, x=x)
        if c.shape != (self.k, x.shape[-1]):
            raise ValueError(f"init: expected centres of shape (k, d) = ({self.k}, {x.shape[-1]}), got shape "
                             f"{tuple(c.shape)}")
        check_points(c, "init")
        return c.detach().clone()

    def _run(self, x, a, c0, scale) -> KMeansResult:
        if self.mass == "equal":
            return self._equal_mass(x, a, c0)
        c, labels, d2, trace, errors, error = _lloyd(x, a, c0, self.max_iter, self.tol, scale, self.chunk,
                                                     self.verbose)
        w = x.new_zeros(self.k).index_add_(0, labels, a)
        idx = torch.stack([labels, torch.arange(len(x), device=x.device)])
        plan = torch.sparse_coo_tensor(idx, a, (self.k, len(x)), check_invariants=False).coalesce()
        conv = Convergence.build(x.new_tensor(error), self.tol, len(errors), criterion="relative_move",
                                 errors=x.new_tensor(errors))
        return KMeansResult(c, w, labels, plan, (a * d2).sum(), torch.stack(trace), conv)

    def _equal_mass(self, x, a, c0) -> KMeansResult:
        solver = FreeSupportBarycenter(max_iter=self.max_iter, tol=self.tol, verbose=self.verbose)
        b = x.new_full((self.k,), 1.0 / self.k)
        res, state, _ = solver.run(x[None], a[None], x.new_ones(1), c0, b, quiet=True)
        rows, cols, vals = state.rows[0], state.cols[0], state.vals[0].to(x.dtype)
        keep = vals > 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        labels, _ = assign(x, res.support, self.chunk)  # zero-weight points: their nearest centre
        top = x.new_zeros(len(x)).scatter_reduce(0, cols, vals, "amax")
        is_top = vals >= top[cols]
        labels[cols[is_top]] = rows[is_top]
        plan = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (self.k, len(x)), check_invariants=False).coalesce()
        return KMeansResult(res.support, b, labels, plan, res.value, res.objective, res.convergence)


def _in_data_units(res: KMeansResult, unit: Scale) -> KMeansResult:
    """The result in the data's units; an inertia that overflows the dtype is ``inf``, with a warning."""
    inertia = unit.squared(res.inertia)
    if not bool(torch.isfinite(inertia)):
        warn(f"k-means: the inertia (W_2^2 of the quantisation, about {float(res.inertia):.3g} x "
             f"{unit.s:.3g}^2) overflows {inertia.dtype}; it is reported as inf. The centres and labels "
             "are exact; rescale the data to read the inertia.")
    return replace(res, centers=unit.from_unit(res.centers), inertia=inertia,
                   inertia_trace=unit.squared(res.inertia_trace))


def kmeans(x, k: int, a=None, *, mass: str = "free", init=None, n_init: int = 1, seed=None, max_iter: int = 300,
           tol: float = 1e-7, chunk: int | None = None, verbose: bool = False) -> KMeansResult:
    r"""k-means quantisation of ``x (n, d)`` with weights ``a (n,)``: see :class:`KMeans`.

    .. math::
        \min_{c,\ w} W_2^2\Big(\sum_j w_j \delta_{c_j}, \sum_i a_i \delta_{x_i}\Big), \qquad
        w \text{ free (Lloyd) or } w_j = 1/k \text{ (equal masses)}

    Returns a :class:`KMeansResult`: ``centers``, ``weights``, ``labels``, ``plan``, ``inertia`` (:math:`W_2^2`
    of the quantisation; with uniform weights, scikit-learn's ``inertia_ / n``), ``convergence``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [10.0]], dtype=torch.float64)
        >>> res = kmeans(x, 2, mass="equal", init=torch.tensor([[0.0], [10.0]], dtype=torch.float64))
        >>> res.centers[:, 0].tolist(), res.weights.tolist()
        ([0.5, 6.0], [0.5, 0.5])
    """
    solver = KMeans(k, mass=mass, n_init=n_init, max_iter=max_iter, tol=tol, chunk=chunk, verbose=verbose)
    return solver(x, a, init=init, seed=seed)


def kmeans_inertia(x, centers, a=None, *, eps: float | None = None, center_weights=None,
                   chunk: int | None = None) -> torch.Tensor:
    r"""The k-means inertia of centres for weighted data, differentiable w.r.t. the data, the centres and weights.

    .. math::
        I(x, c) = \sum_i a_i \min_k \|x_i - c_k\|^2, \qquad
        I_\varepsilon(x, c) = -\varepsilon \sum_i a_i \log \sum_k w_k\, e^{-\|x_i - c_k\|^2/\varepsilon}

    :math:`I` is :math:`W_2^2` between the data and the centres with free centre masses (each point to its nearest
    centre; the ``inertia`` of :func:`kmeans`; scikit-learn's ``inertia_`` is ``n I`` for uniform weights). Its
    gradient is :math:`\partial I/\partial x_i = 2 a_i (x_i - c_{k(i)})` (almost everywhere: ties between centres
    take one of them). :math:`I_\varepsilon` (``eps`` in squared data units) is the entropic version, the value of
    :math:`\min_{P 1 = a} \langle P, D\rangle + \varepsilon\,\mathrm{KL}(P | a \otimes w)`: smooth, with soft
    assignments :math:`\propto w_k e^{-\|x_i - c_k\|^2/\varepsilon}` in its gradient, and
    :math:`I \le I_\varepsilon \le I + \varepsilon \log(1/\min_k w_k)`.

    Args:
        x: ``(..., n, d)`` data. centers: ``(..., k, d)``; leading dimensions broadcast.
        a: ``(..., n)`` nonnegative data weights (``None``: ``1/n``). eps: ``None`` (hard) or a positive number.
        center_weights: ``(..., k)`` prior masses :math:`w` of the soft version (``None``: ``1/k``).
        chunk: data points per tile (memory ``chunk * k * d``; ``None``: automatic).

    Returns:
        The broadcast batch shape, dtype and device of ``x``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [4.0]], dtype=torch.float64, requires_grad=True)
        >>> c = torch.tensor([[0.5], [4.0]], dtype=torch.float64)
        >>> I = kmeans_inertia(x, c); round(float(I.detach()), 4)
        0.1667
        >>> torch.autograd.grad(I, x)[0].flatten().tolist()  # 2 a_i (x_i - c_k(i))
        [-0.3333333333333333, 0.3333333333333333, 0.0]
    """
    x, c = as_tensor(x, "x"), as_tensor(centers, "centers")
    check_points(x, "x")
    check_points(c, "centers")
    common_dtype_device(x=x, centers=c)
    if c.shape[-1] != x.shape[-1]:
        raise ValueError(f"centers: expected shape (..., k, d) with d = {x.shape[-1]} as in x, got {tuple(c.shape)}")
    check_positive(eps, "eps", allow_none=True)
    n, k = x.shape[-2], c.shape[-2]
    wa = check_weights(a, "a", n, x, size_name="n")
    if eps is not None:
        w = check_weights(center_weights, "center_weights", k, x, size_name="k")
        logw = torch.log(w / w.sum(-1, keepdim=True)).unsqueeze(-2)
    elif center_weights is not None:
        raise ValueError("center_weights: only for the soft inertia (eps=...); drop it or pass eps")
    step = chunk if chunk is not None else max(1, (1 << 22) // max(1, k * x.shape[-1]))
    parts = []
    for s in range(0, n, step):
        d2 = (x[..., s:s + step, None, :] - c.unsqueeze(-3)).square().sum(-1)  # (..., chunk, k), no cancellation
        parts.append(d2.min(-1).values if eps is None else -eps * torch.logsumexp(logw - d2 / eps, -1))
    return (wa * torch.cat(parts, -1)).sum(-1)
