r"""Multiscale soft-min between point clouds: k-d cells, a coarse eps-scaling, certified block truncation.

Both clouds are cut into the leaves of a balanced k-d tree (:class:`~._backends.clustering.Clusters`). A soft-min
at ``eps`` reduces each source leaf ``I`` against the target leaves ``J`` it keeps only; what it drops is bounded
with the cluster radii (triangle inequality, :math:`\delta_{IJ} = (\|c_I - c_J\| - r_I - r_J)_+`):

.. math::
    C_{ij} \ge \underline C_{IJ} = \phi(\delta_{IJ}), \qquad
    \sum_{J \notin K_I} \sum_{j \in J} e^{(h_j - C_{ij})/\varepsilon} \le D_I =
    \sum_{J \notin K_I} e^{(L_J - \underline C_{IJ})/\varepsilon}, \quad L_J = \varepsilon \log \sum_{j\in J}
    e^{h_j/\varepsilon}

(:math:`\phi(t) = s t^2` for ``s |x - y|^2``, :math:`t^p` for ``|x - y|^p``, :math:`t^2/2` on normalised points for
the cosine). The truncated soft-min :math:`\tilde o_i` is never below the exact one :math:`o_i`, and
:math:`0 \le \tilde o_i - o_i = \varepsilon \log(1 + \text{dropped}/\text{kept}) \le \varepsilon\, D_I
e^{\tilde o_i/\varepsilon}`: every call **certifies** :math:`D_I e^{\max_{i \in I} \tilde o_i/\varepsilon} \le`
``rtol`` a posteriori, so each returned entry is within ``eps * rtol`` of the exact soft-min (the plan's
marginals within a relative ``rtol``), in the forward pass and for the gradients (the backward pass runs on the
same blocks).

The block lists (the refreshable part of the soft-min contract): kept per ``(dim, eps)``; a new ``eps`` selects
anew, from an estimate of :math:`\tilde o` (the previous output of that ``dim``, or the rigorous upper bound
:math:`\min_J (\overline C_{IJ} - L_J)`), keeping in each row the fewest blocks, largest bounds first, whose
dropped sum stays under ``rtol``; a call whose certificate fails reselects from its own output (adding to the
list) and reruns, which then passes by construction. A call costs O(K) beyond its kept blocks: the dropped sums
:math:`D_I` are taken once per selection and, while the potentials move, bounded by
:math:`D_I e^{\max_J (L_J - L_J^{\text{sel}})/\varepsilon}` (recomputed, O(K^2), only when that bound fails). Memory: the points, ``K_x x K_y`` bounds, the block lists and
one group of gathered tiles (``_GROUP`` entries); forward and backward.
"""

from __future__ import annotations

import math

import torch

from ..costs import Cosine, Cost, Euclidean, SqEuclidean
from .clustering import Clusters
from .lazy import kernel_available

try:
    from ..._core import softmin_sqeuclid_blocks as _b_fwd
    from ..._core import softmin_sqeuclid_blocks_backward as _b_bwd
except ImportError:  # pragma: no cover - a build without the block kernel: the torch tiles
    _b_fwd = _b_bwd = None

__all__ = ["MultiscaleSoftmin", "DEFAULT_RTOL", "default_leaf_size"]

#: Certified relative truncation per soft-min entry, per dtype (the plan's marginals move by at most this).
DEFAULT_RTOL = {torch.float32: 1e-6, torch.float64: 1e-12}
_GROUP = 1 << 23  # gathered target coordinates per group of tiles (32 MB in float32)


def default_leaf_size(n: int) -> int:
    """Points per leaf: ``n / 2048`` within [16, 1024]: small cells (tight bounds) while the ``K x K`` bounds, built
    once per clustering and re-read only when a block list is selected, stay within ``2^22`` entries."""
    return int(min(1024, max(16, math.ceil(n / 2048))))


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
        self.leaf_size = leaf_size or default_leaf_size(max(x.shape[0], y.shape[0]))
        self.rtol = rtol if rtol is not None else DEFAULT_RTOL.get(x.dtype, 1e-7)
        self.kernel = isinstance(cost_fn, SqEuclidean) and kernel_available(x) and _b_fwd is not None
        self.sides = None
        self._lists: dict = {}  # dim -> (eps, keep mask, plan, log dropped sums, the L they were taken at)
        self._last: dict = {}  # dim -> the last certified output, by row tile (K,)
        self.stats = {"calls": 0, "reselections": 0, "kept_fraction": 1.0}

    def _build(self, x, y):
        X = Clusters(x, self.leaf_size)
        Y = X if self.symmetric else Clusters(y, self.leaf_size)
        px, py = (_normalised(x), _normalised(y)) if isinstance(self.cost_fn, Cosine) else (x, y)
        (cx, rx), (cy, ry) = X.stats(px), Y.stats(py)
        # pair bounds from the points of one side to the other side's ball, the tighter of the two orders
        lo1, hi1 = _ball_bounds(X, px, cy, ry)
        lo0, hi0 = _ball_bounds(Y, py, cx, rx)
        low, up = self.phi(torch.maximum(lo1, lo0.T)), self.phi(torch.minimum(hi1, hi0.T))
        self.sides = (X, Y)
        self.bounds = {1: (low, up), 0: (low.T.contiguous(), up.T.contiguous())}

    def __call__(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        return self.softmin(x, y, h, eps, dim)

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
        low, up = self.bounds[dim]
        with torch.no_grad(), _one_thread(self):
            hp = C.pad(h.detach().to(xr.dtype), -math.inf)  # (Kc, Sc)
            L = eps * torch.logsumexp(hp.double() / eps, 1)  # (Kc,)
            xp, yp = R.pad(xr.detach(), 0.0), C.pad(yc.detach(), 0.0)
            valid = (R.index < R.n).reshape(R.K, R.S)
            out = self._certified(dim, eps, L, low, up, xp, yp, hp, valid)
        self.stats["calls"] += 1
        plan = self._lists[dim][2]
        needs = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, h))
        if needs:
            xg, yg = R.pad(xr, 0.0), C.pad(yc, 0.0)
            hg = C.pad(h.to(xr.dtype), -math.inf)
            out = _BlockSoftmin.apply(xg, yg, hg, out, self, plan, eps)
        return out.reshape(-1)[R.slot]

    def _certified(self, dim, eps, L, low, up, xp, yp, hp, valid):
        logr = math.log(self.rtol)
        cached = self._lists.get(dim)
        if cached is not None and cached[0] == eps:
            mask, plan, logD, Lsel = cached[1:]
        else:
            est = (up - L[None, :]).amin(1)  # rigorous: every o_i of the row tile is below it
            if dim in self._last and self._last[dim].shape == est.shape:
                est = torch.minimum(est, self._last[dim] + 2.0 * eps)
            mask, plan, logD, Lsel = self._keep(self._select(L, low, est, eps, logr), L, low, eps)
        for attempt in range(3):
            out = self._reduce(xp, yp, hp, plan, eps)
            top = torch.where(valid, out, -math.inf).double().amax(1)  # (Kr,): the largest output of each tile
            # O(K): the dropped sums of the selection, moved by at most max_J (L_J - Lsel_J)
            moved = torch.where(L == Lsel, 0.0, L - Lsel).amax() / eps
            if not bool(_passes(logD + moved, top, eps, logr)):  # O(K^2): the dropped sums at the current L
                logD, Lsel = _dropped(mask, L, low, eps), L
            self._lists[dim] = (eps, mask, plan, logD, Lsel)
            if bool(_passes(logD, top, eps, logr)) or bool(mask.all()):
                self._last[dim] = top.nan_to_num(0.0, posinf=0.0)
                return out
            self.stats["reselections"] += 1
            fresh = self._select(L, low, top + 3.0 * eps, eps, logr)  # a margin: the potentials keep moving
            mask, plan, logD, Lsel = self._keep(mask | fresh if attempt < 1 else torch.ones_like(mask), L, low, eps)
        raise RuntimeError("multiscale soft-min: the truncation certificate failed with every block kept")

    def _keep(self, mask, L, low, eps):
        """A block list with its plan, the log of its dropped sums at ``L`` and that ``L``."""
        self.stats["kept_fraction"] = float(mask.double().mean())
        return mask, _csr(mask) if self.kernel else _plan(mask), _dropped(mask, L, low, eps), L

    @staticmethod
    def _select(L, low, est, eps, logr):
        """The fewest blocks per row whose dropped bound ``sum exp((L_J - low_IJ + est_I)/eps)`` is below ``rtol``:
        terms above ``rtol`` are kept, terms below ``rtol / 2K`` dropped (together at most ``rtol / 2``), and only
        the band between is ordered (``topk``), smallest first, to drop what the rest of the budget allows."""
        v = (L[None, :] - low + est[:, None].nan_to_num(math.inf, posinf=math.inf)) / eps
        lo = logr - math.log(2.0 * v.shape[1])
        sure = v < lo
        band = ~sure & (v <= logr)
        k = int(band.sum(1).max()) if band.numel() else 0
        keep = ~sure & ~band
        if k == 0:
            return keep
        s0 = torch.logsumexp(torch.where(sure, v, -math.inf), 1, keepdim=True)  # <= log(rtol / 2)
        vals, idx = torch.topk(torch.where(band, -v, -math.inf), k, dim=1)  # the band, smallest term first
        cum = torch.logaddexp(s0, torch.logcumsumexp(-vals, 1))  # -vals = -inf past a row's band: cum stays
        drop = (cum <= logr) & (vals > -math.inf)
        return keep | (band & ~torch.zeros_like(band).scatter_(1, idx, drop))

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


def _dropped(mask, L, low, eps):
    """``log D_I``: the log of the bound on each row leaf's dropped sum, without the output's factor (K^2 work)."""
    return torch.logsumexp(torch.where(mask, -math.inf, (L[None, :] - low) / eps), 1)


def _passes(logD, top, eps, logr):
    """Whether every row leaf's dropped fraction ``D_I exp(top_I / eps)`` is at most ``rtol`` (NaN fails)."""
    cert = torch.where(logD == -math.inf, -math.inf, logD + top / eps)
    return (cert <= logr).all()


def _ball_bounds(R: Clusters, pts, c, r):
    """``(lo, hi) (K_R, K_C)``: bounds of ``|x_i - y_j|`` over the leaf ``I`` of ``R`` and a ball ``(c_J, r_J)``:
    ``(min_i |x_i - c_J| - r_J)_+`` and ``max_i |x_i - c_J| + r_J`` (double precision, by groups of leaves)."""
    xp = R.pad(pts.detach().double(), math.nan)
    c, r = c.double(), r.double()
    lo, hi = xp.new_empty(R.K, c.shape[0]), xp.new_empty(R.K, c.shape[0])
    step = max(1, (1 << 22) // max(1, R.S * c.shape[0]))
    for i in range(0, R.K, step):
        dist = torch.cdist(xp[i:i + step].reshape(-1, xp.shape[2]), c).reshape(-1, R.S, c.shape[0])
        lo[i:i + step] = dist.nan_to_num(math.inf).amin(1)
        hi[i:i + step] = dist.nan_to_num(-math.inf).amax(1)
    eta = 1e-9 * (1.0 + float(r.max()))  # rounding of the distances
    return (lo - r[None, :] - eta).clamp_min(0.0), hi + r[None, :] + eta


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


def _csr(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept column leaves of every row leaf as CSR ``(ptr (Kr + 1,), cols (nnz,))`` (int64, by row)."""
    ptr = torch.zeros(mask.shape[0] + 1, dtype=torch.long)
    torch.cumsum(mask.sum(1), 0, out=ptr[1:])
    return ptr, mask.nonzero()[:, 1].contiguous()


def _plan(mask: torch.Tensor) -> list:
    """Groups of row tiles ``(rows, ids)``: tiles of similar block counts together, ``ids (B, c)`` their kept column
    leaves padded with the empty leaf ``Kc``; at most ``_GROUP`` gathered entries per group (by row count)."""
    Kr, Kc = mask.shape
    count = mask.sum(1)
    order = torch.argsort(count, descending=True)
    cols = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # kept leaves first
    groups, i = [], 0
    while i < Kr:
        c = max(1, int(count[order[i]]))
        rows_per = max(1, min(Kr - i, (_GROUP // 64) // c))
        rows = order[i:i + rows_per]
        ids = cols[rows, :c]
        ids = torch.where(torch.arange(c)[None, :] < count[rows, None], ids, torch.full_like(ids, Kc))
        groups.append((rows, ids))
        i += rows_per
    return groups


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
