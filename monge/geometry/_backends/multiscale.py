r"""Multiscale soft-min between point clouds: k-d cells, a coarse eps-scaling, certified block truncation.

Both clouds are cut into the leaves of a balanced k-d tree (:class:`~._backends.clustering.Clusters`). A soft-min
at ``eps`` reduces each source leaf ``I`` against the target leaves ``J`` it keeps only; what it drops is bounded
with the bounding boxes of the tree's nodes (:math:`t_{IJ}` the box-to-box distance, ``J`` a leaf or a whole
subtree of dropped leaves):

.. math::
    C_{ij} \ge \underline C_{IJ} = \phi(t_{IJ}), \qquad
    \sum_{J \notin K_I} \sum_{j \in J} e^{(h_j - C_{ij})/\varepsilon} \le D_I =
    \sum_{J \text{ dropped}} e^{(L_J - \underline C_{IJ})/\varepsilon}, \quad L_J = \varepsilon \log \sum_{j\in J}
    e^{h_j/\varepsilon}

(:math:`\phi(t) = s t^2` for ``s |x - y|^2``, :math:`t^p` for ``|x - y|^p``, :math:`t^2/2` on normalised points for
the cosine). The truncated soft-min :math:`\tilde o_i` is never below the exact one :math:`o_i`, and
:math:`0 \le \tilde o_i - o_i = \varepsilon \log(1 + \text{dropped}/\text{kept}) \le \varepsilon\, D_I
e^{\tilde o_i/\varepsilon}`: every call **certifies** :math:`D_I e^{\max_{i \in I} \tilde o_i/\varepsilon} \le`
``rtol`` a posteriori, so each returned entry is within ``eps * rtol`` of the exact soft-min (the plan's
marginals within a relative ``rtol``), in the forward pass and for the gradients (the backward pass runs on the
same blocks).

The block lists (the refreshable part of the soft-min contract): kept per ``(dim, eps)``, selected by a walk of
the column tree for every row leaf (:mod:`~._backends.multiscale_select`: node boxes instead of balls, whole
subtrees dropped at once, so the leaves can be small at any ``n``) from an estimate of :math:`\tilde o` (the
previous output of that ``dim`` plus a margin, capped by a rigorous upper bound); a call whose certificate fails
re-evaluates its dropped sums at the current potentials by the same walk, then reselects from its own output and
reruns. A call costs O(K) beyond its kept blocks while the potentials stay close to those of the selection (the
dropped sums are bounded by :math:`D_I e^{\max_J (L_J - L_J^{\text{sel}})/\varepsilon}`). A selection that
would keep more than half of the pairs runs the exact lazy soft-min for that ``(dim, eps)`` instead. Memory: the
points, ``O(K)`` node boxes, the block lists and one group of gathered tiles; forward and backward.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..costs import Cosine, Cost, Euclidean, SqEuclidean
from . import multiscale_select as sel_
from .clustering import Clusters
from .lazy import kernel_available, lazy_softmin

try:
    from ..._core import softmin_sqeuclid_blocks as _b_fwd
    from ..._core import softmin_sqeuclid_blocks_backward as _b_bwd
except ImportError:  # pragma: no cover - a build without the block kernel: the torch tiles
    _b_fwd = _b_bwd = None

__all__ = ["MultiscaleSoftmin", "DEFAULT_RTOL", "DENSE_FRACTION", "default_leaf_size"]

#: Certified relative truncation per soft-min entry, per dtype (the plan's marginals move by at most this).
DEFAULT_RTOL = {torch.float32: 1e-6, torch.float64: 1e-12}
#: Above this fraction of kept point pairs, a ``(dim, eps)`` runs the exact lazy soft-min instead of blocks.
DENSE_FRACTION = 0.5


def default_leaf_size(n: int) -> int:
    """Points per leaf: 32 (16 below 2^12 points): small cells keep few wasted pairs, and the tree walk that
    selects the blocks costs O(visited nodes), whatever the number of leaves."""
    return 16 if n < 4096 else 32


def _bound_fn(cost_fn: Cost):
    """``phi``: the cost as a nondecreasing function of the distance (on normalised points for the cosine)."""
    if isinstance(cost_fn, SqEuclidean):
        s = cost_fn.scale
        return lambda t: s * t * t
    if isinstance(cost_fn, Euclidean):
        p = cost_fn.p
        return lambda t: t.pow(p)
    if isinstance(cost_fn, Cosine):
        return lambda t: (0.5 * t * t).clamp_max(2.0)
    raise ValueError(f"backend='multiscale': expected a cost bounded by distances ('sqeuclidean', 'euclidean' with "
                     f"any p, 'cosine'), got {cost_fn!r}; use backend='lazy' for this cost")


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


class _List(NamedTuple):
    """A block list of one ``(dim, eps)``: CSR ``(ptr, cols)``, the reduction's plan, ``log D_I`` at ``L``
    (``dense``: the exact lazy soft-min instead, ``retry``: decided without an estimate of the output)."""
    eps: float
    dense: bool
    ptr: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    plan: object = None
    logD: torch.Tensor | None = None
    L: torch.Tensor | None = None
    retry: bool = False  # dense from the rigorous estimate alone: select again once an output is known


class MultiscaleSoftmin:
    r"""The multiscale soft-min of one cost between ``x (n, d)`` and ``y (m, d)`` (no batch dimensions); the
    clustering is built on the first call (detached points) and shared by :meth:`PointCloud.detach` copies.

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> x, y = torch.rand(300, 2, dtype=torch.float64), torch.rand(200, 2, dtype=torch.float64)
        >>> red = MultiscaleSoftmin(SqEuclidean(), x, y, leaf_size=16)
        >>> h = torch.zeros(200, dtype=torch.float64)
        >>> exact = -0.01 * torch.logsumexp(-SqEuclidean()(x, y) / 0.01, -1)
        >>> bool((red.softmin(x, y, h, 0.01, 1) - exact).abs().max() <= 0.01 * 1e-12)
        True
    """

    def __init__(self, cost_fn: Cost, x: torch.Tensor, y: torch.Tensor, leaf_size: int | None = None,
                 rtol: float | None = None):
        self.phi = _bound_fn(cost_fn)
        if x.dim() != 2 or y.dim() != 2:
            raise ValueError(f"backend='multiscale': expected unbatched points x (n, d) and y (m, d), got x of shape "
                             f"{tuple(x.shape)} and y of shape {tuple(y.shape)}; loop over the batch, or use "
                             "backend='lazy' for batched clouds")
        self.cost_fn, self.symmetric = cost_fn, y is x
        self.kind = sel_.cost_kind(cost_fn)
        self.leaf_size = leaf_size or default_leaf_size(max(x.shape[0], y.shape[0]))
        self.rtol = rtol if rtol is not None else DEFAULT_RTOL.get(x.dtype, 1e-7)
        self.kernel = isinstance(cost_fn, SqEuclidean) and kernel_available(x) and _b_fwd is not None
        self.sides = None
        self._lists: dict = {}  # dim -> _List
        self._last: dict = {}  # dim -> the last certified output, by row tile (K,)
        self.stats = {"calls": 0, "reselections": 0, "kept_fraction": 1.0, "dense_calls": 0}

    def _build(self, x, y):
        X = Clusters(x, self.leaf_size)
        Y = X if self.symmetric else Clusters(y, self.leaf_size)
        px, py = (_normalised(x), _normalised(y)) if isinstance(self.cost_fn, Cosine) else (x, y)
        bx = sel_.heap_boxes(X, px)
        by = bx if self.symmetric else sel_.heap_boxes(Y, py)
        self.sides = (X, Y)
        self.boxes = {1: (bx, by), 0: (by, bx)}

    def __call__(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        return self.softmin(x, y, h, eps, dim)

    def release(self) -> None:
        """Drops the block lists (rebuilt by the next soft-min that needs one); the clustering, the node boxes and
        the last outputs (the next selection's estimates) stay. A list held by a recorded backward stays alive
        through that record."""
        self._lists.clear()

    def softmin(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        """``-eps log sum exp((h - C)/eps)`` over ``y`` (``dim=1``) or ``x`` (``dim=0``), certified within
        ``eps * rtol`` per entry (see the module's docstring)."""
        if dim not in (0, 1):
            raise ValueError(f"dim: expected 0 or 1, got {dim!r}")
        if h.dim() != 1:
            raise ValueError(f"h: backend='multiscale' reduces one problem at a time, expected a potential of shape "
                             f"(m,), got {tuple(h.shape)}; batched weights need backend='lazy'")
        if self.sides is None:
            with _one_thread(self):
                self._build(x, y)
        R, C = self.sides if dim == 1 else self.sides[::-1]
        xr, yc = (x, y) if dim == 1 else (y, x)
        eps = float(eps)
        self.stats["calls"] += 1
        lst = self._lists.get(dim)
        if lst is not None and lst.eps == eps and lst.dense and not lst.retry:  # no selection work at all
            return self._dense(x, y, h, eps, dim, R)
        with torch.no_grad(), _one_thread(self):
            hp = C.pad(h.detach().to(xr.dtype), -math.inf)  # (Kc, Sc)
            L = sel_.node_lse(hp, eps)  # (2 Kc,): every node of the column tree
            lst = self._lists.get(dim)
            if lst is None or lst.eps != eps or lst.retry:
                last = self._last.get(dim)
                est = last + 2.0 * eps if last is not None else torch.full((R.K,), math.nan, dtype=torch.float64)
                lst = self._select(dim, L, est, eps)
            out = None
            if not lst.dense:
                xp, yp = R.pad(xr.detach(), 0.0), C.pad(yc.detach(), 0.0)
                valid = (R.index < R.n).reshape(R.K, R.S)
                out = self._certified(dim, lst, eps, L, xp, yp, hp, valid)
        if out is None:
            return self._dense(x, y, h, eps, dim, R)
        plan = self._lists[dim].plan
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, h)):
            xg, yg = R.pad(xr, 0.0), C.pad(yc, 0.0)
            hg = C.pad(h.to(xr.dtype), -math.inf)
            out = _BlockSoftmin.apply(xg, yg, hg, out, self, plan, eps)
        return out.reshape(-1)[R.slot]

    def _dense(self, x, y, h, eps, dim, R):
        """The exact lazy soft-min for this ``(dim, eps)`` (its largest output per row leaf kept as an estimate)."""
        self.stats["dense_calls"] += 1
        self.stats["kept_fraction"] = 1.0
        res = lazy_softmin(x, y, h, eps, dim, self.cost_fn)
        self._last[dim] = R.pad(res.detach().double(), -math.inf).amax(1).nan_to_num(0.0, posinf=0.0)
        return res

    def _certified(self, dim, lst, eps, L, xp, yp, hp, valid):
        """The truncated soft-min ``(Kr, Sr)`` whose certificate holds, or ``None`` (go dense)."""
        logr = math.log(self.rtol)
        Kc = (L.shape[0] // 2)
        for attempt in range(3):
            out = self._reduce(xp, yp, hp, lst.plan, eps)
            top = torch.where(valid, out, -math.inf).double().amax(1)  # (Kr,): the largest output of each tile
            # O(K): the dropped sums of the selection, moved by at most max_J (L_J - Lsel_J)
            Ln, Ls = L[Kc:], lst.L[Kc:]
            moved = torch.where(Ln == Ls, 0.0, Ln - Ls).amax() / eps
            if not bool(_passes(lst.logD + moved, top, eps, logr)):  # the walk at the current L
                logD = sel_.dropped(self.boxes[dim], L, top, eps, self.rtol, self.kind, lst.ptr, lst.cols,
                                    self.threads)
                lst = lst._replace(logD=logD, L=L)
            self._lists[dim] = lst
            if bool(_passes(lst.logD, top, eps, logr)):
                self._last[dim] = top.nan_to_num(0.0, posinf=0.0)
                return out
            self.stats["reselections"] += 1
            if attempt >= 1:
                break
            lst = self._select(dim, L, top + 3.0 * eps, eps)  # a margin: the potentials keep moving
            if lst.dense:
                return None
        self._lists[dim] = _List(eps, True)
        return None

    def _select(self, dim, L, est, eps) -> _List:
        """A fresh block list of ``dim`` at ``eps`` (stored), or the dense marker above ``DENSE_FRACTION``."""
        R, C = self.sides if dim == 1 else self.sides[::-1]
        max_kept = int(min(DENSE_FRACTION * R.n * C.n / (R.S * C.S), 2**62))
        got = sel_.select(self.boxes[dim], L, est.nan_to_num(math.nan, posinf=math.inf), eps, self.rtol,
                          self.kind, max_kept, self.threads)
        if got is None:
            lst = _List(eps, True, retry=bool(est.isnan().all()) and dim not in self._last)
        else:
            ptr, cols, logD = got
            self.stats["kept_fraction"] = cols.shape[0] / (R.K * C.K)
            plan = (ptr, cols) if self.kernel else sel_.plan_from_csr(ptr, cols, C.K)
            lst = _List(eps, False, ptr, cols, plan, logD, L)
        self._lists[dim] = lst
        return lst

    def _reduce(self, xp, yp, hp, plan, eps):
        """The truncated soft-min of every row tile ``(Kr, Sr)`` (no autograd): the compiled block kernel over
        the CSR list ``plan = (ptr, cols)`` (squared Euclidean), else torch over groups of gathered tiles."""
        if self.kernel:
            s = self.cost_fn.scale
            ptr, cols = plan
            return s * torch.from_numpy(_b_fwd(xp.numpy(), yp.numpy(), (hp / s).numpy(), ptr.numpy(), cols.numpy(),
                                               eps / s, self.threads))
        out = xp.new_empty(xp.shape[:2])
        for rows, ids in plan:
            xg, yg, hg = _gather(xp, yp, hp, rows, ids)
            Cm = self.cost_fn(xg, yg)
            out[rows] = -eps * torch.logsumexp((hg[:, None, :] - Cm) / eps, -1)
        return out


def _passes(logD, top, eps, logr):
    """Whether every row leaf's dropped fraction ``D_I exp(top_I / eps)`` is at most ``rtol`` (NaN fails)."""
    cert = torch.where(logD == -math.inf, -math.inf, logD + top / eps)
    return (cert <= logr).all()


class _one_thread:
    """Torch's own small operations on one thread (on a loaded machine a parallel region waits for a time slice);
    the compiled kernel runs its own threads (``red.threads``: the caller's setting)."""

    def __init__(self, red):
        self.red = red

    def __enter__(self):
        self.prev = torch.get_num_threads()
        self.red.threads = self.prev
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.prev)


def _gather(xp, yp, hp, rows, ids):
    """The row tiles ``(B, Sr, d)``, their kept target points ``(B, c Sc, d)`` and potentials ``(B, c Sc)``."""
    B, c = ids.shape
    Sc, d = yp.shape[1], yp.shape[2]
    yext = torch.cat([yp, yp.new_zeros(1, Sc, d)])
    hext = torch.cat([hp, hp.new_full((1, Sc), -math.inf)])
    return (xp[rows].contiguous(), yext[ids].reshape(B, c * Sc, d).contiguous(),
            hext[ids].reshape(B, c * Sc).contiguous())


class _BlockSoftmin(torch.autograd.Function):
    """The certified output with its gradients through the same blocks: plan-weighted averages (kernel path) or
    the autograd of recomputed tiles (other costs)."""

    @staticmethod
    def forward(ctx, xp, yp, hp, out, red, plan, eps):
        ctx.save_for_backward(xp, yp, hp, out)
        ctx.red, ctx.plan, ctx.eps = red, plan, eps
        return out.clone()

    @staticmethod
    def backward(ctx, u):
        xp, yp, hp, out = ctx.saved_tensors
        red, eps = ctx.red, ctx.eps
        gx = torch.zeros_like(xp)
        Kc, Sc, d = yp.shape
        gy_ext, gh_ext = yp.new_zeros(Kc + 1, Sc, d), hp.new_zeros(Kc + 1, Sc)
        ok = torch.isfinite(out)
        o, u = torch.where(ok, out, 0.0), torch.where(ok, u, 0.0)
        with _one_thread(red):
            _block_backward(red, ctx.plan, eps, xp, yp, hp, o, u, gx, gy_ext, gh_ext)
        return gx, gy_ext[:Kc], gh_ext[:Kc], None, None, None, None


def _block_backward(red, plan, eps, xp, yp, hp, o, u, gx, gy_ext, gh_ext):
    """Accumulates the gradients of ``sum_i u_i o_i`` tile group by tile group (in place)."""
    Kc, Sc, d = yp.shape
    if red.kernel:
        s = red.cost_fn.scale
        args = [t.detach().contiguous() for t in (xp, yp, hp / s)]
        o, u = (o / s).contiguous(), u.contiguous()
        if o.dtype == torch.float32 and float(o.abs().max()) * 1.4427 / (eps / s) > 2.0**18:
            args, o, u = [t.double() for t in args], o.double(), u.double()  # out's rounding would skew p
        a, b, e = _b_bwd(*(t.numpy() for t in args), *(t.numpy() for t in plan), o.numpy(), u.numpy(), eps / s,
                         red.threads)
        gx += s * torch.from_numpy(a).to(gx.dtype)
        gy_ext[:Kc] += s * torch.from_numpy(b).to(gx.dtype)
        gh_ext[:Kc] += torch.from_numpy(e).to(gx.dtype)
        return
    for rows, ids in plan:
        B, c = ids.shape
        xg, yg, hg = _gather(xp.detach(), yp.detach(), hp.detach(), rows, ids)
        with torch.enable_grad():
            xg, yg = xg.requires_grad_(), yg.requires_grad_()
            Cm = red.cost_fn(xg, yg)
            p = torch.softmax((hg[:, None, :] - Cm) / eps, -1).detach()  # d o_i / d h_j = -p_ij
            val = (p * Cm).sum(-1)  # d o_i / d (x, y) = sum_j p_ij dC_ij
            a, b = torch.autograd.grad((val * u[rows]).sum(), (xg, yg))
            e = -(p * u[rows][:, :, None]).sum(1)
        gx[rows] += a
        gy_ext.index_add_(0, ids.reshape(-1), b.reshape(B * c, Sc, d))
        gh_ext.index_add_(0, ids.reshape(-1), e.reshape(B * c, Sc))
