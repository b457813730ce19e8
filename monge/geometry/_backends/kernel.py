r"""A scaling-domain fast path behind ``softmin`` for dense costs: shifted matrix products with the Gibbs kernel.

.. math::
    \mathrm{softmin}_\varepsilon(h)_i = c_0 - \Big(M + \varepsilon \log \sum_j K_{ij}\, e^{(h_j - M)/\varepsilon}\Big),
    \qquad K = e^{-(C - c_0)/\varepsilon},\ c_0 = \min C,\ M = \max_j h_j

Potentials that share one cost (the K inputs of a barycenter, a batch of histograms on one support) go through
one BLAS product ``(B, m) @ (m, n)`` instead of ``B n m`` exponentials of a log-sum-exp (15x faster at n = 2000).
The cost is shifted by its minimum, so every term is a product of two numbers in [0, 1] whatever the sign or
offset of ``C`` (negative costs, similarities); where a sum under- or overflows, the entries are recomputed by
the exact log-sum-exp (:mod:`monge.geometry._backends.shifted`, the scheme grids use along each axis), so the
result is the log-domain soft-min up to rounding for any ``eps``. The potentials stay the state (DESIGN: habit 6).
"""

from __future__ import annotations

import torch

from ...ops.logsumexp import dense_softmin
from .shifted import adapts, certified, shifted_product, underflowed

try:  # the compiled kernel builder and scaling loop (csrc/sinkhorn_dense.cpp); absent in a pure-Python install
    from ..._core import gibbs_kernel as _gibbs_kernel
    from ..._core import sinkhorn_kernel_run as _kernel_run
except ImportError:  # pragma: no cover - depends on the build
    _gibbs_kernel = _kernel_run = None

__all__ = ["KernelDense", "KernelCache", "KERNEL_MAX_ENTRIES", "adapts", "underflowed"]

#: The fast path keeps the kernel beside the cost: used up to this many entries (128 MB in float64).
KERNEL_MAX_ENTRIES = 1 << 24
_FALLBACK_ELEMENTS = 1 << 22  # cost entries gathered per chunk of the exact fallback


class KernelDense:
    """Duck-typed geometry for the solver loop: ``softmin`` at one fixed ``eps`` through ``K = exp(-(C - c0)/eps)``.

    float32 costs keep a float64 kernel too (range ``e^-708`` instead of ``e^-87``): once a float32 product has
    underflowed, the products run in float64 (a private switch; the result is the same up to rounding).

    Example:
        >>> import torch
        >>> C = torch.rand(5, 4, dtype=torch.float64) - 3.0   # negative costs are fine: C is shifted by min C
        >>> h = torch.randn(4, dtype=torch.float64)
        >>> bool(torch.allclose(KernelDense(C, 1e-3).softmin(h, 1e-3, 1), dense_softmin(C, h, 1e-3, 1)))
        True
    """

    def __init__(self, C: torch.Tensor, eps: float):
        self.C, self.eps = C, float(eps)
        if _compiled(C):  # one threaded pass, no n x m temporaries: the same kernel up to rounding
            K, c0 = _gibbs_kernel(C.numpy(), self.eps, torch.get_num_threads())
            self.K, self.c0, self.K64 = torch.from_numpy(K), C.new_full((1,), c0), None
        else:
            self.c0 = C.amin((-2, -1)).unsqueeze(-1) if C.numel() else C.new_zeros(C.shape[:-2] + (1,))  # (..., 1)
            shifted = C - self.c0.unsqueeze(-1)
            self.K = _kernel(shifted, eps, C.dtype)
            self.K64 = _kernel(shifted.double(), eps, torch.float64) if C.dtype == torch.float32 else None
        self.Kt = (self.K, self.K.transpose(-1, -2))  # the kernel as contracted along dim 0 / dim 1 (views)
        self.event_ndim = 1
        self._state = {"wide": False, "bad_fraction": 0.0}  # float32: products in float64 from the first underflow
        self._np = None  # (K as numpy, c0 as float) for run

    @property
    def shape(self):
        return tuple(self.C.shape[-2:])

    @property
    def bad_fraction(self) -> float:
        """Share of entries of the last call that needed the exact fallback."""
        return self._state["bad_fraction"]

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        if float(eps) != self.eps:  # another temperature: the plain log-domain reduction
            return dense_softmin(self.C, h, eps, dim)
        c0 = self.c0 if self.c0.dtype == h.dtype else self.c0.to(h.dtype)
        if not self._state["wide"]:
            out = _reliable_shifted(h, self.Kt[dim], eps)
            if out is not None:  # every sum certified: no masks, no fallback (the common case, bitwise the same)
                self._state["bad_fraction"] = 0.0
                return torch.sub(c0, out)  # = -lse + c0

        def redo64(out, bad):
            o64, b64 = _shifted(h.double(), self.K64, eps, dim)
            return o64.to(h.dtype), b64

        def exact(out, bad):  # the exact log-sum-exp at the unreliable entries only (in the shifted frame)
            return _exact_entries(out, self.C, h, bad, eps, dim, c0)

        out = certified(h, lambda t: _shifted(t, self.K, eps, dim), exact,
                        redo64 if self.K64 is not None else None, self._state)
        return out + c0


    @property
    def compiled(self) -> bool:
        """Whether :meth:`run` is available (a float64 CPU cost of one problem, the compiled core present)."""
        return _kernel_run is not None and self.K.dtype == torch.float64 and self.K.dim() == 2 and self.K.numel() > 0

    def run(self, f, g, Sg, lwa, lwb, ka: float, kb: float, omega: float, iters: int, wa, wb, rho_a: float,
            rho_b: float):
        r"""``iters`` Sinkhorn iterations in one compiled call (:attr:`compiled` only; 1-D float64 CPU tensors):

        .. math::
            f \leftarrow f + \omega(\kappa_a S_g - f),\quad S_f = \mathrm{softmin}_0(f + \varepsilon \log a),\quad
            g \leftarrow g + \omega(\kappa_b S_f - g),\quad S_g = \mathrm{softmin}_1(g + \varepsilon \log b)

        each soft-min a shifted product with this kernel, certified as in :func:`_reliable_shifted`. Returns
        ``((f, g, Sf, Sg), done, complete, rows, cols, trace)``: ``complete`` False when a sum was unreliable at iteration
        ``done`` (the state is then the last certified one, ``None`` if there is none: finish in the log domain);
        ``rows``, ``cols`` the l1 residuals of the two marginals' optimality conditions at the returned state
        (weights ``wa``, ``wb``; KL penalties ``rho``, ``inf`` for a hard constraint), ``trace`` the rows residual
        after each iteration run (numpy)."""
        if self._np is None:  # the kernel's numpy view and its scalars, once
            self._np = (self.K.numpy(), float(self.c0))
        f, g, Sf, Sg, done, complete, rows, cols, trace = _kernel_run(
            self._np[0], self._np[1], self.eps, *map(_numpy, (lwa, lwb, f, g, Sg)), ka, kb, float(omega), int(iters),
            _numpy(wa), _numpy(wb), rho_a, rho_b, torch.get_num_threads())
        state = None if f is None else tuple(map(torch.from_numpy, (f, g, Sf, Sg)))
        return state, done, complete, rows, cols, trace


def _numpy(t):
    """A CPU tensor's numpy view (arrays pass through: callers may convert loop constants once)."""
    return t.numpy() if isinstance(t, torch.Tensor) else t


def _compiled(C: torch.Tensor) -> bool:
    return (_gibbs_kernel is not None and C.dtype == torch.float64 and C.device.type == "cpu" and C.dim() == 2
            and C.numel() > 0 and C.is_contiguous() and not C.requires_grad)


def _kernel(C: torch.Tensor, eps: float, dtype) -> torch.Tensor:
    K = torch.exp(-C / eps)
    return torch.where(K < torch.finfo(dtype).tiny, torch.zeros_like(K), K)  # no subnormals: slow and imprecise


def _shifted(h: torch.Tensor, K: torch.Tensor, eps: float, dim: int):
    """``(softmin - c0, bad)``: the shifted product, and the entries whose sum was unreliable (to recompute)."""
    Kd = K if dim == 0 else K.transpose(-1, -2)  # out_j = sum_i K_ij u_i for dim = 0

    def contract(u):
        return u @ Kd if Kd.dim() == 2 else (u.unsqueeze(-2) @ Kd).squeeze(-2)

    lse, bad = shifted_product(h, contract, eps, -1, h.shape[-1])
    return -lse, bad


def _reliable_shifted(h: torch.Tensor, Kd: torch.Tensor, eps: float):
    """``lse = c0 - softmin`` by the shifted product when every sum is certified (``s >= n tiny / ulp``: then the shift
    was finite and no term flushed mattered), with one reduction and one sync; None otherwise (the masked path).
    The arithmetic is that of :func:`shifted_product`'s positive entries, so the result is bitwise the same.
    ``Kd``: the kernel oriented so that ``out = u @ Kd`` (``K`` for dim 0, ``K^T`` for dim 1)."""
    if h.numel() == 0 or Kd.dtype != h.dtype:
        return None
    M = (h.detach() if h.requires_grad else h).amax(dim=-1, keepdim=True)
    u = torch.sub(h, M).mul_(1.0 / eps).exp_()
    s = u @ Kd if Kd.dim() == 2 else (u.unsqueeze(-2) @ Kd).squeeze(-2)
    if s.numel() == 0 or not float((s.detach() if s.requires_grad else s).amin()) >= _certified_floor(s.dtype, h.shape[-1]):  # NaN fails too
        return None
    return torch.log(s).mul_(eps).add_(M)  # = M + eps log s, the same rounding


def _certified_floor(dtype, n: int) -> float:
    """``n tiny / ulp`` rounded to ``dtype`` (as the tensor comparison of :func:`unreliable` rounds it): a sum of
    ``n`` terms in [0, 1] at least this large lost nothing to underflow."""
    floor = _FLOORS.get((dtype, n))
    if floor is None:
        finfo = torch.finfo(dtype)
        floor = _FLOORS[(dtype, n)] = float(torch.tensor(n * finfo.tiny / finfo.eps, dtype=dtype))
    return floor


_FLOORS: dict = {}


def _exact_entries(out, C, h, bad, eps: float, dim: int, c0):
    """Replace the ``bad`` entries of ``out`` (softmin - c0) by the exact log-sum-exp (chunked gathers of cost rows)."""
    if C.dim() != 2:  # a batched cost: the whole reduction, then the bad entries from it
        return torch.where(bad, dense_softmin(C, h, eps, dim) - c0, out)
    Cr = (C if dim == 1 else C.transpose(0, 1)).to(h.dtype)  # row i: the costs entering output entry i
    n, m = out.shape[-1], h.shape[-1]
    hb = h.expand(*out.shape[:-1], m).reshape(-1, m)
    r, i = bad.reshape(-1, n).nonzero(as_tuple=True)
    step = max(1, _FALLBACK_ELEMENTS // m)
    vals = [-eps * torch.logsumexp((hb[r[p:p + step]] - Cr[i[p:p + step]]) / eps, -1) - c0.reshape(())
            for p in range(0, r.numel(), step)]
    return out.reshape(-1, n).index_put((r, i), torch.cat(vals)).reshape(out.shape)


class KernelCache:
    """A dense cost's choice between :class:`KernelDense` and the plain log-sum-exp (:func:`dense_softmin`).

    The kernel is built from the third call at one ``eps`` (an annealing stage of one iteration never pays for its
    ``n m`` exponentials), for costs up to :data:`KERNEL_MAX_ENTRIES` entries, never when the call differentiates
    w.r.t. the cost, and not at an ``eps`` where over 5% of the sums underflowed (the exact fallback would then
    cost more than the log-sum-exp). Calls recorded for autograd (see :func:`adapts`) build it at once instead
    of counting, and never refuse it, so that a recomputed (checkpointed) forward takes the same path.
    """

    def __init__(self):
        self.kern, self.eps, self.calls, self.refused = None, None, 0, set()

    def softmin(self, C: torch.Tensor, h: torch.Tensor, eps, dim: int) -> torch.Tensor:
        kern = self.kern
        if kern is not None and type(eps) is float and eps == self.eps and not C.requires_grad:  # the hot path
            out = kern.softmin(h, eps, dim)
            if kern.bad_fraction > 0.05 and adapts(h):
                self.refused.add(self.eps)
                self.kern = None
            return out
        if not (C.requires_grad and torch.is_grad_enabled()):
            adapt = adapts(h)
            kern = self._get(C, eps, adapt)
            if kern is not None:
                out = kern.softmin(h, eps, dim)
                if adapt and kern.bad_fraction > 0.05:
                    self.refused.add(self.eps)
                    self.kern = None
                return out
        return dense_softmin(C, h, eps, dim)

    def loop(self, C: torch.Tensor, eps) -> KernelDense | None:
        """The kernel at ``eps`` for a loop of compiled iterations (:meth:`KernelDense.run`), built at once; None
        where there is none (not a float64 CPU cost of one problem, too large, a refused ``eps``)."""
        if not (_compiled(C) and isinstance(eps, (int, float))) or C.numel() > KERNEL_MAX_ENTRIES:
            return None
        if float(eps) in self.refused:
            return None
        kern = self._get(C, eps, False)
        return kern if kern is not None and kern.compiled else None

    def _get(self, C: torch.Tensor, eps, adapt: bool):
        if not isinstance(eps, (int, float)) or C.numel() > KERNEL_MAX_ENTRIES:
            return None
        eps = float(eps)
        if self.kern is not None and self.eps == eps:
            return self.kern
        if eps in self.refused:
            return None
        self.calls = self.calls + 1 if self.eps == eps else 1
        self.eps, self.kern = eps, None
        if self.calls >= 3 or not adapt:
            self.kern = KernelDense(C.detach(), eps)
        return self.kern
