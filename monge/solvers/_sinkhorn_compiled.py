"""The compiled Sinkhorn iterations of float64 CPU dense costs, for the driver: several iterations per call
(csrc/sinkhorn_dense.cpp), the start state and the final half step of small solves, the averaged iterations of
OT(a, a) and all of eps-scaling's stages in one call (csrc/sinkhorn_small.cpp). The same iterates as
:meth:`~monge.solvers.sinkhorn.SinkhornData.step` up to rounding; where a compiled sum is unreliable (underflow at
small eps) the torch log-domain step takes over."""

from __future__ import annotations

import math

import numpy as np
import torch

from .marginals import KL, Hard

try:  # the compiled start and finish of small dense solves (csrc/sinkhorn_small.cpp); absent in a pure-Python build
    from .._core import sinkhorn_small_state as _small_state
except ImportError:  # pragma: no cover - depends on the build
    _small_state = None
try:  # eps-scaling's stages in one call (csrc/sinkhorn_small.cpp)
    from .._core import sinkhorn_small_stages as _small_stages
except ImportError:  # pragma: no cover - depends on the build
    _small_stages = None
try:  # the averaged iterations of OT(a, a) (csrc/sinkhorn_small.cpp)
    from .._core import sinkhorn_small_symmetric as _small_symmetric
except ImportError:  # pragma: no cover - depends on the build
    _small_symmetric = None
try:  # the compiled dense loop and Gibbs kernel (csrc/sinkhorn_dense.cpp), called directly for dense kernels
    from .._core import gibbs_kernel as _gibbs_kernel
    from .._core import sinkhorn_kernel_run as _kernel_run
except ImportError:  # pragma: no cover - depends on the build
    _kernel_run = _gibbs_kernel = None

__all__ = ["_CompiledLoop", "CompiledStages"]


class CompiledStages:
    """The annealing stages of eps-scaling (plain iterations ``f = kappa_a softmin_1(g + e log b)``,
    ``g = kappa_b softmin_0(f + e log a)`` at each temperature ``e``) compiled, on a Gibbs kernel per stage, where
    :class:`_CompiledLoop` applies at the target ``eps`` (also OT(a, a): the stages alternate as in torch).
    :meth:`run_all`: every stage in one call up to :attr:`ONE_CALL_MAX_ENTRIES` cost entries (a kernel from the
    previous one by a squaring where eps halves), else :meth:`run` per stage (one call per iteration, threaded
    kernels); both stop where a sum is unreliable (the caller runs the rest in torch from the same potentials)."""

    def __init__(self, C: torch.Tensor, data):
        self.C = C.numpy()
        ms = (data.ma, data.mb)
        self.rho = [m.rho if type(m) is KL else math.inf for m in ms]
        self.lw = [m.lw.contiguous().numpy() for m in ms]
        self.w = [m.w.contiguous().numpy() for m in ms]
        self.threads = torch.get_num_threads()

    @classmethod
    def of(cls, geom, data, f, eps: float):
        """The compiled stages for this problem, or None (then the stages run in torch)."""
        if _small_state is None or _gibbs_kernel is None or _CompiledLoop.of(geom, data, f, eps) is None:
            return None
        C = geom.cost()
        ok = C.dim() == 2 and C.dtype == torch.float64 and C.device.type == "cpu" and not C.requires_grad
        return cls(C.contiguous(), data) if ok else None

    #: Below this many cost entries the stages run in one single-threaded compiled call (each kernel from the previous
    #: one by a squaring where eps halves); above, a threaded Gibbs kernel per stage (:meth:`run`).
    ONE_CALL_MAX_ENTRIES = 1 << 21

    def run_all(self, f, g, temps, iters: int):
        """``(f, g, k)``: the first ``k`` stages of ``temps`` run (``iters`` plain iterations each); ``k < len(temps)``
        where a sum was unreliable in stage ``k`` (the caller runs the rest in torch from ``(f, g)``)."""
        if _small_stages is not None and self.C.size <= self.ONE_CALL_MAX_ENTRIES:
            fn, gn, k = _small_stages(self.C, np.asarray(temps, dtype=np.float64), int(iters), *self.lw, *self.rho,
                                      f.detach().contiguous().numpy(), g.detach().contiguous().numpy())
            return torch.from_numpy(fn), torch.from_numpy(gn), k
        for k, e in enumerate(temps):
            done = self.run(f, g, e, iters)
            if done is None:
                return f, g, k
            f, g = done
        return f, g, len(temps)

    def run(self, f, g, eps: float, iters: int):
        """``(f, g)`` after ``iters`` plain iterations at ``eps``; None where a sum was unreliable."""
        K, c0 = _gibbs_kernel(self.C, float(eps), self.threads)
        fn, gn = f.detach().contiguous().numpy(), g.detach().contiguous().numpy()
        kb = self.rho[1] / (self.rho[1] + eps) if math.isfinite(self.rho[1]) else 1.0
        for _ in range(iters):
            out = _small_state(K, c0, float(eps), *self.lw, *self.w, *self.rho, fn, gn, True)
            if not out[6]:
                return None
            fn, gn = out[0], kb * out[1]
        return torch.from_numpy(fn), torch.from_numpy(gn)


class _CompiledLoop:
    """``SinkhornData.step`` ``k`` times in one compiled call (:meth:`block`), where the geometry offers it
    (``scaling_loop``: a float64 CPU dense cost) for one problem with hard or KL marginals and nothing to
    differentiate (OT(a, a) on one support: the averaged updates, for dense kernels). :meth:`start` and
    :meth:`finish` give the first and the returned states of small dense solves in one call each. The block call
    also returns the two marginals' residuals at its final state, which :meth:`watch` and :meth:`measure` hand to
    the driver for that state (any other state is measured in torch). Where a compiled sum is unreliable
    (underflow at small eps), the rest of the block, and every later one, runs the log-domain step (the same
    iterates up to rounding)."""

    def __init__(self, geom, data: SinkhornData, kern, eps: float):
        self.geom, self.data, self.kern, self.eps, self.live, self.last = geom, data, kern, eps, True, None
        ms = (data.ma, data.mb)
        self.kappa = [m.kappa(eps) if type(m) is KL else 1.0 for m in ms]
        self.rho = [m.rho if type(m) is KL else math.inf for m in ms]
        self.lw = [m.lw.contiguous().numpy() for m in ms]  # loop constants: converted once
        self.w = [m.w.contiguous().numpy() for m in ms]
        dense = hasattr(kern, "c0") and getattr(kern, "K", None) is not None and kern.K.dim() == 2
        self.K = (kern.K.numpy(), float(kern.c0)) if dense else None  # a dense kernel: its numpy view and shift, once
        self.threads = torch.get_num_threads()

    def _state(self, f, g, half: bool):
        """:func:`sinkhorn_small_state` (csrc/sinkhorn_small.cpp): ``(f, Sf, Sg, rows, cols, value)`` at ``(f, g)``,
        after the final half step when ``half``; None where a sum was unreliable (the caller goes to torch)."""
        if self.K is None or _small_state is None:
            return None
        out = _small_state(*self.K, self.eps, *self.lw, *self.w, *self.rho, f.detach().contiguous().numpy(),
                           g.detach().contiguous().numpy(), half)
        return out[:6] if out[6] else None

    def start(self, f, g):
        """The loop state ``(f, g, Sf, Sg)`` at the start (``SinkhornData.start``), measured in the same call
        (the driver's first check reads it from :meth:`measure`); None: use the torch start."""
        out = self._state(f, g, False)
        if out is None:
            return None
        state = (f, g, torch.from_numpy(out[1]), torch.from_numpy(out[2]))
        self.last = (state, out[3], out[4])
        return state

    def finish(self, g, dtype=torch.float64):
        """The returned ``(f, g, value)`` and its error (:meth:`Sinkhorn._finish` without gradients): the final
        half step from ``g``, the dual objective and both marginals' residuals in one call; None: use torch.
        ``dtype`` float32 (a float32 problem iterated in float64): the potentials are rounded to it and the value and
        the error are those of the rounded pair (measured in float64)."""
        out = self._state(g.new_empty(self.lw[0].shape), g, True)  # (f is computed, not read)
        if out is None:
            return None
        f = torch.from_numpy(out[0])
        if dtype != f.dtype:  # the potentials returned in dtype, their value and certificate measured as returned
            f, g = f.to(dtype), g.to(dtype)
            out = self._state(f.double(), g.double(), False)
            if out is None:
                return None
        return (f, g, f.new_tensor(out[5])), f.new_tensor(out[3] + out[4])

    def measured(self, f, g):
        """The error (both marginals' residuals) of the pair ``(f, g)`` (float64, any grad) as a 0-d tensor, in one
        compiled call; None where a sum was unreliable."""
        out = self._state(f, g, False)
        return None if out is None else f.new_tensor(out[3] + out[4])

    @classmethod
    def of(cls, geom, data: SinkhornData, f, eps: float):
        """The compiled loop for this problem, or None where it does not apply."""
        loop = getattr(geom, "scaling_loop", None)
        if loop is None or (data.symmetric and _small_symmetric is None) or f.dim() != data.k or \
                f.dtype != torch.float64:
            return None
        if not all(type(m) in (Hard, KL) for m in (data.ma, data.mb)):
            return None
        if torch.is_grad_enabled() and any(t.requires_grad for t in (f, data.ma.w, data.mb.w)):
            return None
        kern = loop(eps)
        fast = None if kern is None else cls(geom, data, kern, eps)
        return None if fast is None or (data.symmetric and fast.K is None) else fast  # symmetric: dense kernels

    def block(self, state, omega, k: int):
        """``(state, seen)``: ``k`` iterations, and the first marginal's residual after each (what the driver's
        over-relaxation probes watch)."""
        if self.data.symmetric:
            return self._block_symmetric(state, k)
        seen = []
        if self.live:
            new, done, self.live, rows, cols, trace = self._run(state, omega, k)
            if new is not None:
                state, k = new, k - done
                self.last = (new, rows, cols)
                seen = trace[:done].tolist()  # floats: the driver reads them without a synchronisation
        for _ in range(k):
            state = self.data.step(self.geom, state, self.eps, omega)
            seen.append(self.data.rows(state, self.eps))
        return state, seen

    def _block_symmetric(self, state, k: int):
        """:meth:`block` for OT(a, a) (the averaged updates, state ``(f, f, S, S)``, no over-relaxation)."""
        seen = []
        if self.live:
            f, S, done, self.live, rows, trace = _small_symmetric(
                *self.K, self.eps, self.lw[0], self.w[0], self.rho[0], state[0].detach().numpy(),
                state[3].detach().numpy(), int(k))
            if done:
                f, S = torch.from_numpy(f), torch.from_numpy(S)
                state, k = (f, f, S, S), k - done
                self.last = (state, rows, rows)
                seen = trace[:done].tolist()
        for _ in range(k):
            state = self.data.step(self.geom, state, self.eps)
            seen.append(self.data.rows(state, self.eps))
        return state, seen

    def _run(self, state, omega, k: int):
        """``kern.run``; for a dense kernel the binding itself, without the per-call conversions of its inputs."""
        if self.K is None or _kernel_run is None:
            return self.kern.run(state[0], state[1], state[3], self.lw[0], self.lw[1], *self.kappa, omega, k,
                                 *self.w, *self.rho)
        f, g, Sf, Sg, done, complete, rows, cols, trace = _kernel_run(
            *self.K, self.eps, *self.lw, *(state[i].detach().numpy() for i in (0, 1, 3)), *self.kappa, float(omega),
            int(k), *self.w, *self.rho, self.threads)
        new = None if f is None else tuple(map(torch.from_numpy, (f, g, Sf, Sg)))
        return new, done, complete, rows, cols, trace

    def measure(self, state):
        """``(error, rows)`` of ``state`` (:meth:`SinkhornData.measure`)."""
        if self.last is not None and state is self.last[0]:
            _, rows, cols = self.last
            return rows + cols, rows  # floats (the driver's scalar checks)
        return self.data.measure(state, self.eps)

    def watch(self, state):
        return self.measure(state)[1]
