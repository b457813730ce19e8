r"""Wasserstein gradient flows: Eulerian (JKO steps on grids, :mod:`monge.apps.flows.jko`) and Lagrangian (particles).

A particle flow moves the support points :math:`x_i` of :math:`\alpha = \sum_i a_i \delta_{x_i}` by explicit Euler
steps along the Wasserstein gradient of a loss :math:`L(\alpha, \beta)` towards a target :math:`\beta`:

.. math::
    x_i \leftarrow x_i - \eta\, \frac{1}{a_i} \nabla_{x_i} L\Big(\sum_j a_j \delta_{x_j}, \beta\Big)
    \qquad (\tfrac{1}{a_i}\nabla_{x_i} L = \nabla \tfrac{\delta L}{\delta \alpha}(x_i),
    \text{ the velocity field of the flow})

With the Sinkhorn divergence :math:`S_\varepsilon` (a geometric loss: it transports, so particles travel along
near-straight paths and the whole cloud lands on the target) or an MMD (a kernel loss: gradients fade with the
distance for Gaussian kernels and particles can be left behind or cluster; the energy distance is scale-free but
spreads mass by repulsion). See Feydy et al. (2019), "Interpolating between optimal transport and MMD using
Sinkhorn divergences", AISTATS, and Arbel et al. (2019), "Maximum mean discrepancy gradient flow", NeurIPS.
"""

from __future__ import annotations

import torch

from ..._validation import (
    as_tensor,
    check_points,
    check_positive,
    check_weights,
    common_dtype_device,
)
from ..._warnings import InnerWarnings, warn
from ...nn.losses import MMDLoss, SinkhornLoss
from ...results import Convergence, ParticleFlowResult
from ...solvers._loop import Progress

__all__ = ["LOSSES", "ParticleFlowResult", "particle_flow"]

LOSSES = ("sinkhorn", "mmd")


def _loss_fn(loss, blur, p, scaling, kernel):
    """The loss module; a knob that the chosen loss would ignore is an error (issue 11: no silent no-op)."""
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES} or a callable (x, y, a, b) -> loss, got {loss!r}")
    if loss == "sinkhorn":
        _unused(loss, kernel=kernel)
        return SinkhornLoss(p=2 if p is None else p, blur=0.05 if blur is None else blur,
                            scaling=0.5 if scaling is None else scaling)
    if loss == "mmd":
        kernel = "energy" if kernel is None else kernel
        _unused(loss, p=p, scaling=scaling, **({"blur": blur} if kernel == "energy" else {}))
        return MMDLoss(kernel=kernel, scale=None if kernel == "energy" else (0.05 if blur is None else blur))
    _unused("a callable", blur=blur, p=p, scaling=scaling, kernel=kernel)
    return loss


def _unused(loss, **knobs) -> None:
    given = [k for k, v in knobs.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: not used by loss={loss!r} and would be ignored; drop "
                         f"{' and '.join(given)} (blur, p, scaling: loss='sinkhorn'; kernel: loss='mmd'; blur is the "
                         "scale of the gaussian/laplacian kernels)")


def _check(x0, y, a, b, lr, n_steps, tol):
    x0, y = as_tensor(x0, "x0"), as_tensor(y, "y")
    check_points(x0, "x0")
    check_points(y, "y")
    common_dtype_device(x0=x0, y=y)
    if x0.shape[-1] != y.shape[-1]:
        raise ValueError(f"y: expected points of dimension d = {x0.shape[-1]} (as x0), got shape {tuple(y.shape)}")
    a = check_weights(a, "a", x0.shape[-2], x0)
    b = None if b is None else check_weights(b, "b", y.shape[-2], y, size_name="m")
    check_positive(lr, "lr")
    check_positive(tol, "tol", allow_none=True)
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"n_steps: expected a nonnegative int, got {n_steps!r}")
    return x0.detach(), y, a, b


def particle_flow(x0, y, loss="sinkhorn", lr: float = 0.2, n_steps: int = 100, a=None, b=None, *,
                  blur: float | None = None, p: float | None = None, scaling: float | None = None,
                  kernel: str | None = None,
                  tol: float | None = None, callback=None, verbose: bool = False) -> ParticleFlowResult:
    r"""Explicit Euler steps of the Wasserstein gradient flow of a loss, moving particles towards a target cloud.

    .. math::
        x_i^{t+1} = x_i^t - \eta\, \frac{1}{a_i} \nabla_{x_i} L(\alpha_t, \beta), \qquad
        \alpha_t = \sum_i a_i \delta_{x_i^t}, \quad \beta = \sum_j b_j \delta_{y_j}

    Args:
        x0: ``(..., n, d)`` initial positions; y: ``(..., m, d)`` the target (leading dimensions: batched flows).
        loss: ``"sinkhorn"`` (:class:`monge.nn.SinkhornLoss`, cost :math:`|x - y|^p`, ``eps = blur ** p``;
            defaults ``blur=0.05, p=2, scaling=0.5``), ``"mmd"`` (:class:`monge.nn.MMDLoss`, ``kernel``, default
            ``"energy"``; ``scale = blur`` for gaussian/laplacian, default 0.05) or a callable ``(x, y, a, b) -> loss``
            of the batch shape. A knob the chosen loss does not use is an error.
        lr: the step :math:`\eta` (for ``p=2`` the velocity is about :math:`2(x_i - T(x_i))`, so ``lr = 0.5`` jumps
            to the entropic transport map :math:`T` in one step; smaller steps follow the flow).
        n_steps: Euler steps; a, b: weights (``None``: uniform); scaling: eps-scaling ratio of the Sinkhorn loss.
        tol: stop once every loss is ``<= tol`` (``None``: run all steps; converged reports True).
        callback: ``callback(step, x)`` after each step; verbose: a tqdm bar.

    Returns:
        :class:`ParticleFlowResult` (snapshots, loss trace, convergence); ``tol`` not reached is warned, not raised.

    Example:
        >>> import torch
        >>> y = torch.rand(20, 2, dtype=torch.float64)
        >>> res = particle_flow(y + 0.3, y, lr=0.25, n_steps=5, blur=0.2)
        >>> res.snapshots.shape, bool(res.losses[-1] < 1e-2 * res.losses[0])
        (torch.Size([6, 20, 2]), True)
    """
    x, y, a, b = _check(x0, y, a, b, lr, n_steps, tol)
    fn = _loss_fn(loss, blur, p, scaling, kernel)
    snaps, losses, inner = [x], [], InnerWarnings()
    bar = Progress(n_steps, verbose, f"{loss if isinstance(loss, str) else 'flow'} flow")
    steps = 0
    for step in range(n_steps):
        with inner.collect():  # the inner solves' warnings: one summary per flow, not one per step
            value, grad = _value_and_grad(fn, x, y, a, b)
        losses.append(value)
        if tol is not None and bool((value <= tol).all()):
            break
        x = x - lr * grad / a.unsqueeze(-1)
        snaps.append(x)
        steps = step + 1
        bar.update(steps, float(value.max()), blur)
        if callback is not None:
            callback(steps, x)
    bar.close()
    if len(losses) < len(snaps):
        with torch.no_grad(), inner.collect():
            losses.append(torch.as_tensor(fn(x, y, a, b)).detach())
    losses = torch.stack(losses)
    conv = _convergence(losses[-1], steps, tol, n_steps, inner.summary("the loss's inner solves"))
    return ParticleFlowResult(torch.stack(snaps), losses, conv, float(lr))


def _value_and_grad(fn, x, y, a, b):
    with torch.enable_grad():  # scoped: the flow needs the gradient even when called under torch.no_grad()
        xg = x.detach().requires_grad_(True)
        value = torch.as_tensor(fn(xg, y, a, b))
        (grad,) = torch.autograd.grad(value.sum(), xg)
    if not bool(torch.isfinite(grad).all()):
        raise FloatingPointError("particle_flow: the loss gradient has non-finite entries; lower lr or raise blur")
    return value.detach(), grad


def _convergence(last, steps, tol, n_steps, inner: str | None) -> Convergence:
    """``converged`` where the final loss is <= tol (everywhere without a tol: the asked number of steps is the
    stop rule); one warning for the flow, with what its inner solves warned (aggregated over the steps)."""
    conv = Convergence.build(last.detach(), float("inf") if tol is None else tol, steps, criterion="loss")
    if not conv.all_converged:
        warn(f"particle_flow: {int((~conv.converged).sum())} of {conv.converged.numel()} flows ended at a loss of "
             f"{float(last.max()):.3g} > tol={tol:g} after n_steps={n_steps}; raise n_steps or lr. The result reports "
             "converged=False" + (f"; {inner}." if inner else "."))
    elif inner:
        warn(f"particle_flow: {inner}; the flow's losses and steps are those of inexact solves (raise the loss's "
             "blur or its solver's max_iter).")
    return conv
