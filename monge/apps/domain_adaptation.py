r"""Domain adaptation by optimal transport: a fit / transform / inverse-transform estimator (users of POT's ``ot.da``).

Labelled source samples :math:`x^s_i` and unlabelled (or partly labelled) target samples :math:`x^t_j` are coupled
by an OT plan :math:`P` for the cost :math:`C_{ij} = \|x^s_i - x^t_j\|^2` (exact, or entropic with ``eps``); the
source samples are then moved onto the target domain by the barycentric projection

.. math::
    \hat x^s_i = \frac{\sum_j P_{ij}\, x^t_j}{\sum_j P_{ij}},

so that a classifier trained on :math:`(\hat x^s, y^s)` applies to the target domain (Courty et al., 2017). New
source points are moved with the displacement of their nearest fitted source point (or a kernel average of
displacements, or, for the entropic plan, the entropic map itself): see :mod:`monge.results.maps`. The inverse
transform maps target points to the source domain through :math:`P^\top`.

Class information, optional:

- target labels ``yt`` (semi-supervised; ``-1`` = unlabelled): pairs of labelled samples of different classes cost
  at least ``label_cost * max C`` (POT's ``limit_max``), so the plan does not mix classes;
- source labels with ``reg_class > 0`` (entropic or exact): the group-lasso :math:`\ell^{1/2}`-:math:`\ell^1`
  penalty :math:`\eta \sum_j \sum_c (\sum_{i \in c} P_{ij})^{1/2}`, which pushes each target sample to receive mass
  from one class, minimised by majorisation-minimisation (a reweighted linear cost per outer step, as in
  Courty et al., 2014).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._validation import as_tensor, check_points, check_positive, common_dtype_device
from ..api import solve, solve_points
from ..results.maps import extend_map, plan_projection

__all__ = ["OTDomainAdapter"]

METHODS = ("exact", "sinkhorn")
EXTENSIONS = ("nearest", "kernel", "entropic")
_MM_FLOOR = 1e-3  # the majorisation's smoothing of sqrt at 0 (the same constant as the reference method)


@dataclass
class OTDomainAdapter:
    r"""Map samples between a source and a target domain with an OT plan (module doc for the math).

    Args:
        method: ``"exact"`` (network simplex) or ``"sinkhorn"`` (entropic, needs ``eps``).
        eps: entropic regularisation in cost units (squared data units), ``method="sinkhorn"`` only.
        extension: how :meth:`transform` maps new points: ``"nearest"`` (default: the nearest fitted point's
            displacement, as ``ot.da``), ``"kernel"`` (Gaussian-weighted displacements, ``bandwidth``) or
            ``"entropic"`` (the entropic map; ``method="sinkhorn"`` without class terms).
        bandwidth: kernel width in data units (``None``: the median nearest-neighbour spacing).
        label_cost: with target labels, the least cost of a labelled pair of different classes, in units of
            ``max C`` (POT's ``limit_max``), finite.
        reg_class: group-lasso strength :math:`\eta` (cost units; needs source labels), 0 = off.
        n_outer: majorisation-minimisation steps of the group lasso.
        solver_options: keyword arguments of :func:`monge.solve` (``tol``, ``max_iter``, ...).

    Attributes (after :meth:`fit`): ``result_`` (the :class:`~monge.results.ExactResult` or
    :class:`~monge.results.SinkhornResult`), ``coupling_`` (the dense plan), ``xs_``, ``xt_``.

    Example:
        >>> import torch
        >>> xs = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> da = OTDomainAdapter().fit(xs, xs + torch.tensor([5.0, 0.0], dtype=torch.float64))
        >>> new = torch.tensor([[0.1, 0.2]], dtype=torch.float64)
        >>> [round(v, 6) for v in da.transform(new)[0].tolist()]
        [5.1, 0.2]
        >>> bool(torch.allclose(da.inverse_transform(), xs))
        True
    """

    method: str = "exact"
    eps: float | None = None
    extension: str = "nearest"
    bandwidth: float | None = None
    label_cost: float = 10.0
    reg_class: float = 0.0
    n_outer: int = 10
    solver_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.method == "sinkhorn":
            check_positive(self.eps, "eps")
        elif self.eps is not None:
            raise ValueError(f"eps: only for method='sinkhorn', got eps={self.eps!r} with method='exact'; drop eps or "
                             "pass method='sinkhorn'")
        if self.extension not in EXTENSIONS:
            raise ValueError(f"extension: expected one of {EXTENSIONS}, got {self.extension!r}")
        if self.extension == "entropic" and self.method != "sinkhorn":
            raise ValueError("extension='entropic': needs method='sinkhorn' (an exact plan has no entropic map); use "
                             "'nearest' or 'kernel'")
        if not (isinstance(self.label_cost, (int, float)) and 0 < self.label_cost < float("inf")):
            raise ValueError(f"label_cost: expected a positive number (in units of max C), got {self.label_cost!r}")
        if not (isinstance(self.reg_class, (int, float)) and self.reg_class >= 0):
            raise ValueError(f"reg_class: expected a nonnegative number, got {self.reg_class!r}")
        if not isinstance(self.n_outer, int) or self.n_outer < 1:
            raise ValueError(f"n_outer: expected a positive int, got {self.n_outer!r}")

    def fit(self, xs, xt, ys=None, yt=None) -> "OTDomainAdapter":
        """Couple source samples ``xs (n, d)`` and target samples ``xt (m, d)`` (uniform weights); ``ys (n,)``,
        ``yt (m,)``: optional integer labels (``-1``: unlabelled). Returns ``self``."""
        xs, xt = as_tensor(xs, "xs"), as_tensor(xt, "xt")
        for name, t in (("xs", xs), ("xt", xt)):
            check_points(t, name)
            if t.dim() != 2:
                raise ValueError(f"{name}: expected samples of shape (n, d), got {tuple(t.shape)}; fit one adapter "
                                 "per pair of domains")
        common_dtype_device(xs=xs, xt=xt)
        if xs.shape[-1] != xt.shape[-1]:
            raise ValueError(f"xt: expected shape (m, d) with d = {xs.shape[-1]} as in xs, got {tuple(xt.shape)}")
        ys, yt = _labels(ys, "ys", xs), _labels(yt, "yt", xt)
        if self.reg_class > 0 and ys is None:
            raise ValueError("ys: reg_class > 0 needs the source labels; pass ys or set reg_class=0")
        if self.extension == "entropic" and (yt is not None and ys is not None or self.reg_class > 0):
            raise ValueError("extension='entropic': the class terms change the cost, whose plan has no entropic map "
                             "on points; use 'nearest' or 'kernel'")
        self.xs_, self.xt_ = xs, xt
        self.result_ = self._solve(xs, xt, ys, yt)
        self.coupling_ = self.result_.plan
        self._fwd = self._projection(self.coupling_, xt)
        self._bwd = self._projection(self.coupling_.mT, xs)
        return self

    def _solve(self, xs, xt, ys, yt):
        kw = dict(self.solver_options)
        if self.method == "sinkhorn":
            kw["eps"] = self.eps
        C = torch.cdist(xs, xt).square()
        classes = ys is not None and yt is not None
        if not classes and self.reg_class == 0:
            return solve_points(xs, xt, **kw)  # a problem on points: the entropic map is available
        if classes:
            both = (ys[:, None] >= 0) & (yt[None, :] >= 0) & (ys[:, None] != yt[None, :])
            C = torch.where(both, torch.clamp_min(C, float(self.label_cost * C.max())), C)
        res = solve(C, **kw)
        if self.reg_class == 0:
            return res
        onehot = (ys[:, None] == ys.unique()[None, :]).to(C.dtype)  # (n, K)
        for _ in range(self.n_outer - 1):  # majorise sqrt at the current plan: a reweighted linear cost
            per_class = onehot.mT @ res.plan  # (K, m): mass each class sends to each target sample
            W = onehot @ (0.5 * (per_class + _MM_FLOOR) ** -0.5)
            res = solve(C + self.reg_class * W, **kw)
        return res

    @staticmethod
    def _projection(P, y):
        mass = P.sum(-1)
        return (P @ y) / torch.where(mass > 0, mass, torch.ones_like(mass))[:, None], mass

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise RuntimeError("OTDomainAdapter: call fit(xs, xt) before transform / inverse_transform")

    def transform(self, xs=None) -> torch.Tensor:
        """Map source samples ``(k, d)`` to the target domain (``None``: the fitted source samples, whose barycentric
        projections are returned; new samples: ``extension``)."""
        self._check_fitted()
        T, mass = self._fwd
        if xs is None:
            return T
        if self.extension == "entropic":
            return self.result_.transport(xs)
        return extend_map(xs, self.xs_, T, mass, self.extension, self.bandwidth)

    def inverse_transform(self, xt=None) -> torch.Tensor:
        """Map target samples ``(k, d)`` to the source domain through the transposed plan (same extensions)."""
        self._check_fitted()
        T, mass = self._bwd
        if xt is None:
            return T
        if self.extension == "entropic":
            return self.result_.inverse_transport(xt)
        return extend_map(xt, self.xt_, T, mass, self.extension, self.bandwidth)


def _labels(y, name: str, x: torch.Tensor):
    if y is None:
        return None
    t = torch.as_tensor(y)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.shape != x.shape[:1]:
        raise ValueError(f"{name}: expected integer labels of shape ({x.shape[0]},) (-1 = unlabelled), got dtype "
                         f"{t.dtype} and shape {tuple(t.shape)}")
    return t.to(x.device)
