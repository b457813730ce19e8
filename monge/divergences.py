r"""Sinkhorn divergences and kernel norms (MMD) between weighted point clouds, as differentiable losses.

.. math::
    S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta) - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha)
        - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta) + \tfrac{\varepsilon}{2}\big(m(\alpha) - m(\beta)\big)^2

(the last term only matters for unbalanced OT, Séjourné et al. 2019). :math:`S_\varepsilon \ge 0`, it is 0 iff
:math:`\alpha = \beta`, tends to :math:`\mathrm{OT}_0 = W_p^p` as :math:`\varepsilon \to 0` and to
:math:`\tfrac12\|\alpha - \beta\|^2_{k}` with :math:`k = -c` as :math:`\varepsilon \to \infty` (for
:math:`c = \|x - y\|`: half the energy distance) (Ramdas et al. 2017; Genevay et al. 2018; Feydy et al. 2019).
"""

from __future__ import annotations

import torch

from ._validation import as_tensor, check_cost_power, check_int, check_p, check_positive
from .geometry import Geometry, PointCloud
from .geometry.costs import Euclidean, SqEuclidean, get_cost
from .problems import LinearProblem
from .solvers.exact.one_d import normalising_scale
from .solvers.schedules import EpsScaling
from .solvers.sinkhorn import Sinkhorn

__all__ = ["sinkhorn_divergence", "sinkhorn_divergence_hist", "mmd", "KERNELS"]


def _cost(cost, p):
    if cost is not None:
        c = get_cost(cost, p)
        check_cost_power(c, p, default=2.0)  # p other than its default must be the cost's degree
        return c
    return SqEuclidean() if p == 2.0 else Euclidean(p)


def sinkhorn_divergence(x, y, a=None, b=None, *, eps: float, p: float = 2, rho: float | None = None, cost=None,
                        backend: str = "auto", schedule: EpsScaling | None = EpsScaling(0.5), **solver_kw):
    r"""The debiased Sinkhorn divergence :math:`S_\varepsilon` between two weighted point clouds.

    Args:
        x: ``(..., n, d)``, y: ``(..., m, d)``; a, b: weights (``None``: uniform).
        eps: temperature in cost units (a loss module's ``blur`` gives ``eps = blur ** p``).
        p: the cost is :math:`\|x - y\|^p`; with ``cost`` given: 2 (the default) or its degree, else an error.
        cost: a ground cost instead (a name, a :class:`~monge.geometry.Cost` or a callable);
            ``"sqeuclidean_half"`` is GeomLoss's :math:`\tfrac12\|x - y\|^2` (values half of ``p=2``'s at
            ``eps / 2``; see :class:`~monge.nn.SinkhornLoss` for the translation table).
        rho: marginal penalty (``None``: balanced); a loss module's ``reach`` gives ``rho = reach ** p``.
        backend: ``"dense"``, ``"lazy"`` (O(n + m) memory), ``"multiscale"`` (certified block truncation with a
            coarse start, unbatched clouds: 10^5-10^6 points) or ``"auto"`` (see :class:`~monge.PointCloud`).
        schedule: eps-scaling (default: halve eps per stage from the diameter^p).
        **solver_kw: passed to :class:`~monge.solvers.sinkhorn.Sinkhorn` (``tol``, ``max_iter``, ``grad``, ...).

    Returns:
        a tensor of the batch shape, differentiable w.r.t. points and weights. Clamped at 0 for the costs where the
        math guarantees :math:`S_\varepsilon \ge 0` (``s |x - y|^2``, ``|x - y|^p`` with ``p <= 2``: positive
        definite Gibbs kernels), so that ``sqrt`` of it is never NaN: an unconverged cross term (warned) can
        otherwise leave it slightly negative (its gradient is then 0). Other costs return the raw value.

    Example:
        >>> import torch
        >>> x = torch.rand(100, 2, dtype=torch.float64)
        >>> float(sinkhorn_divergence(x, x, eps=0.01)) < 1e-9
        True
    """
    p = check_p(p)
    check_positive(eps, "eps")
    check_positive(rho, "rho", allow_none=True)
    c = _cost(cost, p)
    solver = Sinkhorn(eps=eps, schedule=schedule, **solver_kw)
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    ab = LinearProblem(PointCloud(x, y, cost=c, backend=backend), a, b, rho_a=rho, rho_b=rho)
    aa = ab.self_term(ab.geom.self_cloud(0, backend), 0)  # points and weights validated once
    bb = ab.self_term(ab.geom.self_cloud(1, backend), 1)
    value = solver(ab).value - 0.5 * solver(aa).value - 0.5 * solver(bb).value
    if rho is not None:
        value = value + 0.5 * eps * (ab.a.sum(-1) - ab.b.sum(-1)) ** 2
    return value.clamp_min(0.0) if _positive_definite(c) else value


def _positive_definite(c) -> bool:
    """Whether the Gibbs kernel ``exp(-c/eps)`` is positive definite for every eps (then S_eps >= 0): ``s |x - y|^2``
    and ``|x - y|^p`` for ``p <= 2`` (Schoenberg), Feydy et al. 2019."""
    return isinstance(c, SqEuclidean) or (isinstance(c, Euclidean) and c.p <= 2.0)


def sinkhorn_divergence_hist(a, b, geom, *, eps: float, rho: float | None = None,
                             schedule: EpsScaling | None = EpsScaling(0.5), **solver_kw):
    r"""The debiased Sinkhorn divergence between two histograms on one support (a grid, label bins, a graph).

    .. math::
        S_\varepsilon(a, b) = \mathrm{OT}_\varepsilon(a, b) - \tfrac12 \mathrm{OT}_\varepsilon(a, a)
            - \tfrac12 \mathrm{OT}_\varepsilon(b, b) \; (+ \tfrac{\varepsilon}{2}(m(a) - m(b))^2 \text{ if } \rho)

    :math:`S_\varepsilon \ge 0`, zero iff ``a == b``, convex in each argument (Feydy et al. 2019): the loss to
    fit a histogram, where the plain :math:`\mathrm{OT}_\varepsilon(a, \cdot)` is minimised by a blurred copy.

    Args:
        a, b: ``(..., *support)`` weights (the support shape is ``(n,)``, or a grid's shape); batch dims broadcast.
        geom: a geometry whose source and target are the same support (``geom.shape == (n, n)``), e.g.
            ``DenseCost(C, symmetric=True)`` or ``Grid(shape)``.
        eps: temperature in cost units; rho: marginal penalty (``None``: balanced).
        schedule: eps-scaling (default: halve eps per stage from the largest cost); **solver_kw: :class:`~monge.solvers.sinkhorn.Sinkhorn` options.

    Returns:
        a tensor of the batch shape, differentiable w.r.t. ``a`` and ``b`` (envelope: the potentials). Not clamped
        (the geometry is arbitrary): when a term did not converge (warned) the value can come out slightly
        negative; clamp it (``s.clamp_min(0)``) before a square root.

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> x = torch.linspace(0, 1, 20, dtype=torch.float64)
        >>> geom = DenseCost((x[:, None] - x[None, :]) ** 2, symmetric=True)
        >>> a = torch.softmax(-((x - 0.3) / 0.1) ** 2, 0); b = torch.softmax(-((x - 0.6) / 0.1) ** 2, 0)
        >>> s = sinkhorn_divergence_hist(a, b, geom, eps=1e-3)
        >>> 0 < float(s) < 0.3 ** 2 + 1e-3, float(sinkhorn_divergence_hist(a, a, geom, eps=1e-3)) < 1e-9
        (True, True)
    """
    check_positive(eps, "eps")
    check_positive(rho, "rho", allow_none=True)
    if not isinstance(geom, Geometry):
        raise TypeError(f"geom: expected a monge Geometry (e.g. DenseCost(C, symmetric=True) or a Grid), got "
                        f"{type(geom).__name__}")
    n, m = geom.shape
    if n != m:
        raise ValueError(f"geom: expected one support for both histograms (shape (n, n)), got shape {(n, m)}")
    solver = Sinkhorn(eps=eps, schedule=schedule, **solver_kw)
    ab = LinearProblem(geom, a, b, rho_a=rho, rho_b=rho)
    aa = LinearProblem(geom, ab.a, ab.a, rho_a=rho, rho_b=rho)
    bb = LinearProblem(geom, ab.b, ab.b, rho_a=rho, rho_b=rho)
    value = solver(ab).value - 0.5 * solver(aa).value - 0.5 * solver(bb).value
    if rho is not None:
        k = geom.event_ndim
        dims = tuple(range(-k, 0))
        value = value + 0.5 * eps * (ab.a.sum(dims) - ab.b.sum(dims)) ** 2
    return value


def _energy(x, y, scale):
    return -torch.cdist(x, y)


def _gaussian(x, y, scale):
    return torch.exp(-SqEuclidean()(x, y) / (2 * scale**2))


def _laplacian(x, y, scale):
    return torch.exp(-torch.cdist(x, y) / scale)


#: Kernels of :func:`mmd`: ``energy`` :math:`-\|x-y\|` (conditionally positive definite, scale-free),
#: ``gaussian`` :math:`\exp(-\|x-y\|^2 / 2\sigma^2)`, ``laplacian`` :math:`\exp(-\|x-y\|/\sigma)`.
KERNELS = {"energy": _energy, "gaussian": _gaussian, "laplacian": _laplacian}


def _kernel_form(k, x, y, a, b, scale, chunk):
    """<a, K(x, y) b> by row chunks (checkpointed when differentiating): O(chunk * m) memory."""
    from torch.utils.checkpoint import checkpoint

    def rows(i0):
        return (k(x[..., i0 : i0 + chunk, :], y, scale) @ b.unsqueeze(-1)).squeeze(-1)

    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, b))
    parts = [checkpoint(rows, i0, use_reentrant=False) if grad else rows(i0) for i0 in range(0, x.shape[-2], chunk)]
    return (a * torch.cat(parts, -1)).sum(-1)


def mmd(x, y, a=None, b=None, *, kernel: str = "energy", scale: float | None = None, chunk: int = 4096):
    r"""Half the squared kernel norm (MMD) between two weighted point clouds.

    .. math::
        \tfrac12 \|\alpha - \beta\|_k^2 = \tfrac12 \langle a, K_{xx} a\rangle + \tfrac12 \langle b, K_{yy} b\rangle
            - \langle a, K_{xy} b\rangle

    With ``kernel="energy"`` this is half the energy distance, the :math:`\varepsilon \to \infty` limit of the
    Sinkhorn divergence for the cost :math:`\|x - y\|`.

    Args:
        x: ``(..., n, d)``, y: ``(..., m, d)``; a, b: weights (``None``: uniform).
        kernel: one of :data:`KERNELS`; scale: the bandwidth sigma (required for gaussian/laplacian).
        chunk: rows per block (memory O(chunk * max(n, m))).

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
        >>> float(mmd(x, x + 1.0))  # energy: (2 * 1 - 1 - 1) / 2 ... for these points
        0.5
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {sorted(KERNELS)}, got {kernel!r}")
    if kernel != "energy":
        check_positive(scale, "scale")
    elif scale is not None:
        raise ValueError(f"scale: the energy kernel is scale-free and would ignore scale={scale!r}; drop scale, or "
                         "use kernel='gaussian' / 'laplacian'")
    check_int(chunk, "chunk")
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    prob = LinearProblem(PointCloud(x, y), a, b, rho_a=1.0)  # validation only: masses may differ for kernel norms
    a, b, k = prob.a, prob.b, KERNELS[kernel]
    s = normalising_scale(x, y, 2.0, event_dims=2)  # distances square the coordinates: near 1e154 they overflow
    if s is not None:  # the energy kernel is 1-homogeneous; the others depend on |x - y| / scale only
        s = float(s.amax())
        value = mmd(x / s, y / s, a, b, kernel=kernel, scale=None if scale is None else scale / s, chunk=chunk)
        return value * s if kernel == "energy" else value
    xx = _kernel_form(k, x, x, a, a, scale, chunk)
    yy = _kernel_form(k, y, y, b, b, scale, chunk)
    xy = _kernel_form(k, x, y, a, b, scale, chunk)
    return 0.5 * xx + 0.5 * yy - xy
