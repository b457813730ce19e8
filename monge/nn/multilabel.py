r"""The Wasserstein loss for multi-label learning (Frogner, Zhang, Mobahi, Araya-Polo, Poggio 2015).

Predicted label histograms are compared with target label histograms by entropic OT over a ground cost between
labels, so mass put on a label *close* to a true label (in the label metric) costs little:

.. math::
    \ell(h, y) = \mathrm{OT}_\varepsilon(h, y) = \min_{P 1 = h,\ P^\top 1 = y}
        \langle P, M^p\rangle + \varepsilon\,\mathrm{KL}(P \,|\, h \otimes y)

and, for unnormalised masses, the KL-relaxed version
:math:`\min_P \langle P, M^p\rangle + \varepsilon \mathrm{KL}(P | h \otimes y) + \rho \mathrm{KL}(P 1 | h)
+ \rho \mathrm{KL}(P^\top 1 | y)`. The gradient w.r.t. :math:`h` is the dual potential (envelope theorem), as in
Frogner et al.; the solver is :class:`monge.solvers.sinkhorn.Sinkhorn` (log domain: stable for small ``eps``) on a
:class:`monge.DenseCost` shared by the ``B`` problems of a batch.

Reference:
    Frogner, Zhang, Mobahi, Araya-Polo, Poggio (2015). Learning with a Wasserstein loss. NeurIPS.
"""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_finite, check_p, check_positive, check_weights
from ..geometry.dense import DenseCost
from ..problems.linear import LinearProblem
from ..results import SinkhornResult
from ..solvers.sinkhorn import Sinkhorn

__all__ = ["REDUCTIONS", "WassersteinLoss"]

REDUCTIONS = ("mean", "sum", "none")


def _label_cost(M, embeddings, p: float) -> torch.Tensor:
    if (M is None) == (embeddings is None):
        raise ValueError("M, embeddings: expected exactly one of a label metric M (L, L) or label embeddings (L, d)")
    if M is not None:
        M = as_tensor(M, "M")
        if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
            raise ValueError(f"M: expected a square ground metric (L, L) between labels, got shape {tuple(M.shape)}")
        check_finite(M, "M")
        if bool((M < 0).any()):
            raise ValueError(f"M: expected nonnegative distances, found a minimum of {float(M.min()):.3g}")
        return M**p
    E = as_tensor(embeddings, "embeddings")
    if E.dim() != 2 or E.shape[0] == 0:
        raise ValueError(f"embeddings: expected label embeddings of shape (L, d), got shape {tuple(E.shape)}")
    check_finite(E, "embeddings")
    D2 = (E[:, None, :] - E[None, :, :]).pow(2).sum(-1)
    return D2 if p == 2 else D2.clamp_min(0).sqrt() ** p


class WassersteinLoss(torch.nn.Module):
    r"""Entropic Wasserstein loss between predicted and target label histograms ``(B, L)``, over a label metric.

    Args:
        M: ``(L, L)`` ground metric between labels (the cost is ``M ** p``); or
        embeddings: ``(L, d)`` label embeddings, the cost is :math:`\|e_i - e_j\|^p`. Give exactly one.
        eps: entropic temperature in cost units (> 0); small eps: closer to :math:`W_p^p`, more iterations.
        p: exponent of the ground cost (>= 1).
        rho: ``None`` (balanced: both histograms are normalised to mass 1) or the KL marginal penalty (cost units)
            of the relaxed loss for unnormalised targets (multi-label counts); then logits map to masses by ``exp``.
        from_logits: ``pred`` are scores (softmax, or ``exp`` when ``rho`` is set) instead of probabilities.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        grad: ``"envelope"`` (default, exact at convergence, no memory of the iterations) or ``"unroll"``.
        **solver_kw: other :class:`~monge.solvers.sinkhorn.Sinkhorn` options (``tol``, ``max_iter``, ``schedule``).

    ``forward(pred, target)``: ``pred, target (B, L)`` (or ``(L,)``); target entries >= 0 (zeros allowed) with a
    positive sum. :meth:`solve` returns the batched :class:`~monge.results.SinkhornResult` (plans, convergence).

    Example:
        >>> import torch
        >>> theta = torch.arange(6, dtype=torch.float64) * (2 * torch.pi / 6)  # 6 labels on a circle
        >>> loss = WassersteinLoss(embeddings=torch.stack([theta.cos(), theta.sin()], -1), eps=0.05,
        ...                        from_logits=False, reduction="none")
        >>> eye = torch.eye(6, dtype=torch.float64)
        >>> target, near, far = eye[[0, 1]], eye[[1, 2]] + 1e-3, eye[[3, 4]] + 1e-3
        >>> bool((loss(near, target) < loss(far, target)).all())  # a neighbouring label costs less
        True
    """

    def __init__(self, M=None, *, embeddings=None, eps: float = 0.1, p: float = 1.0, rho: float | None = None,
                 from_logits: bool = True, reduction: str = "mean", grad: str = "envelope", **solver_kw):
        super().__init__()
        self.p = check_p(p)
        check_positive(eps, "eps")
        check_positive(rho, "rho", allow_none=True)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
        if grad not in ("envelope", "unroll"):
            raise ValueError(f"grad: expected 'envelope' or 'unroll', got {grad!r}")
        self.register_buffer("cost", _label_cost(M, embeddings, self.p))
        self.eps, self.rho, self.from_logits, self.reduction = float(eps), rho, bool(from_logits), reduction
        self.solver = Sinkhorn(eps=self.eps, grad=grad, **solver_kw)

    @property
    def n_labels(self) -> int:
        return self.cost.shape[0]

    def _histograms(self, pred, target):
        pred, target = as_tensor(pred, "pred"), as_tensor(target, "target")
        L = self.n_labels
        for name, t in (("pred", pred), ("target", target)):
            if t.dim() < 1 or t.shape[-1] != L:
                raise ValueError(f"{name}: expected shape (B, L) with L = {L} labels (the size of the ground metric), "
                                 f"got {tuple(t.shape)}")
        if pred.shape != target.shape:
            raise ValueError(f"target: expected the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")
        if pred.dtype != target.dtype or pred.device != target.device:
            raise TypeError(f"target: has dtype {target.dtype} on {target.device} but pred has {pred.dtype} on "
                            f"{pred.device}; convert with target.to(pred)")
        check_weights(target, "target", L, pred, size_name="L", like_name="pred")
        if self.from_logits:
            check_finite(pred, "pred")
            a = torch.softmax(pred, -1) if self.rho is None else torch.exp(pred)
        else:
            try:
                check_weights(pred, "pred", L, pred, size_name="L")
            except ValueError as err:
                raise ValueError(f"{err} (pass from_logits=True for scores)") from None
            a = pred if self.rho is not None else pred / pred.sum(-1, keepdim=True)
        b = target if self.rho is not None else target / target.sum(-1, keepdim=True)
        return a, b

    def solve(self, pred, target) -> SinkhornResult:
        """The batched entropic OT problems between the predicted and target histograms."""
        a, b = self._histograms(pred, target)
        C = self.cost.to(a.dtype)
        return self.solver(LinearProblem(DenseCost(C), a, b, rho_a=self.rho, rho_b=self.rho))

    def forward(self, pred, target) -> torch.Tensor:
        value = self.solve(pred, target).value
        if self.reduction == "mean":
            return value.mean()
        return value.sum() if self.reduction == "sum" else value

    def extra_repr(self) -> str:
        return (f"n_labels={self.n_labels}, eps={self.eps:g}, p={self.p:g}, rho={self.rho}, "
                f"from_logits={self.from_logits}, reduction={self.reduction!r}")
