r"""The compiled scaling-domain loop of fixed-support barycenters on a dense float64 CPU cost
(``csrc/barycenter_dense.cpp``): :meth:`~monge.solvers.barycenter._Data.step` ``k`` times in one call.

The state is the log-domain state of the torch loop, ``(f, g, h, S1, S0, log b, Sh)``; each soft-min is a shifted
product with the geometry's Gibbs kernel :math:`K = e^{-(C - c_0)/\varepsilon}` (the kernel its ``softmin`` fast
path uses), the K couplings of a half iteration in one pass over it. A symmetric cost (:math:`C = C^\top`
bitwise: inputs and barycenter on one support, the usual case) is read through its upper triangle, half the memory
traffic per pass. Sums that may have lost terms to underflow stop the call at the last certified state; the rest
runs the log-domain torch step (the same iterates up to rounding). Used for one problem (no batch) of at most
:data:`MAX_INPUTS` inputs whose loop records nothing for autograd. float32 inputs iterate in float64 (a float64
kernel of the float32 cost, where its range is within ``600 eps``) and are returned in float32: the certificate is
that of the float64 iterate, whose float32 rounding moves each marginal by at most ~6e-8 of the mass, far below
float32's default tolerance (2e-5).
"""

from __future__ import annotations

import math
import weakref

import torch

from ..geometry._backends.kernel import KERNEL_MAX_ENTRIES, KernelDense

try:  # absent in a pure-Python install
    from .._core import barycenter_kernel_run as _run
    from .._core import kernel_symmetric as _symmetric
except ImportError:  # pragma: no cover - depends on the build
    _run = _symmetric = None

__all__ = ["CompiledBarycenter", "MAX_INPUTS"]

#: The compiled loop runs up to this many input histograms (its passes over the kernel take 4 at a time).
MAX_INPUTS = 8

_SYMMETRIC: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # kernel -> whether K = K^T (checked once)


def _is_symmetric(geom, kern) -> bool:
    sym = _SYMMETRIC.get(kern)
    if sym is None:
        K = kern.K
        sym = K.shape[0] == K.shape[1] and (_declared_symmetric(geom) or _symmetric(K.numpy()))
        _SYMMETRIC[kern] = sym
    return sym


def _declared_symmetric(geom) -> bool:
    """A :class:`~monge.geometry.DenseCost` declared ``symmetric=True`` (checked bitwise at construction)."""
    from ..geometry.dense import DenseCost

    return isinstance(geom, DenseCost) and geom.symmetric


def _np(t: torch.Tensor):
    return t.detach().to(torch.float64).contiguous().numpy()


_KERNELS64: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # float32 DenseCost -> (eps, float64 kernel)


_SPAN = 600.0  # float32 costs whose range is within 600 eps: every kernel entry >= e^-600, no sum can underflow


def _kernel64(geom, eps: float):
    """A float64 kernel of a float32 :class:`~monge.geometry.DenseCost` (one problem, CPU, no gradient, cost range
    within ``600 eps``: no kernel sum can underflow, so no iteration falls back to float32 midway): float32 inputs
    iterate in float64 (kept per geometry and eps); None otherwise."""
    from ..geometry.dense import DenseCost

    if type(geom).softmin is not DenseCost.softmin or not isinstance(eps, (int, float)):
        return None
    C = geom.cost()
    if C.dim() != 2 or C.device.type != "cpu" or C.requires_grad or C.numel() > KERNEL_MAX_ENTRIES or not C.numel():
        return None
    hit = _KERNELS64.get(geom)
    if hit is None or hit[0] != float(eps):
        if float(C.amax() - C.amin()) > _SPAN * float(eps):  # a sum may underflow: stay in float32
            return None
        hit = _KERNELS64[geom] = (float(eps), KernelDense(C.double().contiguous(), float(eps)))
    return hit[1]


class CompiledBarycenter:
    """``block(state, omega, k)``, ``measure(state)`` and ``watch(state)`` for :func:`~monge.solvers._loop.fixed_point`
    (see :class:`~monge.solvers.sinkhorn._CompiledLoop`, the same contract for Sinkhorn).

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> from monge.problems.barycenter import BarycenterProblem
        >>> from monge.solvers.barycenter import Barycenter
        >>> x = torch.linspace(0, 1, 40, dtype=torch.float64)[:, None]
        >>> A = torch.stack([torch.exp(-(x[:, 0] - c) ** 2 / 0.01) for c in (0.2, 0.8)])
        >>> prob = BarycenterProblem(DenseCost((x - x.T) ** 2), A / A.sum(1, keepdim=True))
        >>> res = Barycenter(eps=1e-2)(prob)   # runs here: a float64 CPU cost, nothing to differentiate
        >>> res.convergence.all_converged, round(float((res.barycenter * x[:, 0]).sum()), 3)
        (True, 0.5)
    """

    def __init__(self, geom, data, kern, eps: float, sym: bool):
        self.geom, self.data, self.eps, self.live, self.last = geom, data, eps, True, None
        self.K, self.c0, self.sym, self.dtype = kern.K.numpy(), float(kern.c0), sym, data.la.dtype
        R = data.la.shape[0]
        self.la, self.a = _np(data.la.reshape(R, -1)), _np(data.a.reshape(R, -1))
        self.lam = _np(data.lam.reshape(R))
        self.rho = math.inf if data.rho is None else float(data.rho)
        self.empty = self.la[:0, 0]

    @classmethod
    def of(cls, geom, data, state, eps: float):
        """The compiled loop for this problem and start ``state``, or None where it does not apply."""
        loop = getattr(geom, "scaling_loop", None)
        if _run is None or loop is None or data.k != 1 or data.la.dim() != 2:
            return None
        if data.la.shape[0] > MAX_INPUTS:  # a pass per 4 inputs: beyond, one blocked matrix product is cheaper
            return None
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                           for t in (data.a, data.lam, *state)):
            return None
        kern = loop(eps) if data.la.dtype == torch.float64 else _kernel64(geom, eps)
        if not isinstance(kern, KernelDense) or not kern.compiled:  # grids have their own (per-axis) loop kernels
            return None
        return cls(geom, data, kern, eps, _is_symmetric(geom, kern))

    def start(self, f, g, h):
        """The loop state at ``(f, g, h)`` (:meth:`~monge.solvers.barycenter._Data.start`) in one compiled call (one
        pass over a symmetric kernel), its error kept for :meth:`measure`; None where a sum was unreliable."""
        state, _, _ = self._call((f, g, h, f, None, None, h), 1.0, 0, True)
        return state

    def _call(self, state, omega, k: int, start: bool = False):
        """``(state or None, iterations run, trace)`` of one compiled call; records the state's certificate."""
        f, g, h, S1, _, _, Sh = state
        deb = h is not None
        out = _run(self.K, self.c0, self.eps, _np(f), _np(g), _np(S1), _np(h) if deb else self.empty,
                   _np(Sh) if deb else self.empty, self.la, self.lam, self.a, self.rho, float(omega), int(k),
                   self.sym, start, torch.get_num_threads())
        done, complete, err, rows, trace = out[7:]
        self.live = self.live and (complete or start)
        if out[0] is None:
            return None, done, None
        f, g, h, S1, S0, lb, Sh = map(torch.from_numpy, out[:7])
        state = (f, g, h if deb else None, S1, S0, lb, Sh if deb else None)
        self.last = (state, err, rows)
        return state, done, torch.from_numpy(trace[:done]).to(self.dtype)

    def block(self, state, omega, k: int):
        """``(state, seen)``: ``k`` iterations, and the first marginals' residual after each."""
        seen = []
        if self.live and k > 0:
            new, done, trace = self._call(state, omega, k)
            if new is not None:
                state, k = new, k - done
                seen = list(trace.unbind())
        if k > 0:  # after an unreliable sum: the log-domain torch step, in the problem's dtype
            state = tuple(None if t is None else t.to(self.dtype) for t in state)
        for _ in range(k):
            state = self.data.step(self.geom, state, self.eps, omega)
            seen.append(self.data.rows(state, self.eps))
        return state, seen

    def measure(self, state):
        """``(error, rows)`` of ``state``: from the compiled call that made it, else measured in torch."""
        if self.last is not None and state is self.last[0]:
            _, err, rows = self.last
            return self.data.la.new_tensor(err), self.data.la.new_tensor(rows)
        return self.data.error(state, self.eps), self.data.rows(state, self.eps)

    def watch(self, state):
        return self.measure(state)[1]
