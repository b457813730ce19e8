r"""Result of semi-discrete OT: a density :math:`\mu` transported to :math:`\sum_j b_j \delta_{y_j}`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .convergence import Convergence

__all__ = ["SemidiscreteResult", "LloydResult"]


@dataclass(frozen=True)
class SemidiscreteResult:
    r"""Semi-discrete OT for the cost :math:`|x - y|^2` (or :math:`|x - y|`, see ``cost``), solved for the weights
    :math:`\psi`.

    The plan sends the Laguerre cell :math:`\mathrm{Lag}_j(\psi) = \{x : |x - y_j|^2 - \psi_j \le
    |x - y_k|^2 - \psi_k\ \forall k\}` to :math:`y_j`.

    Attributes:
        y: ``(m, d)`` the Diracs' positions. b: ``(m,)`` their masses (summing to 1).
        psi: ``(m,)`` the weights (defined up to a constant; returned with mean 0).
        masses: ``(m,)`` :math:`\mu(\mathrm{Lag}_j(\psi))`, to compare with ``b`` (exact with Newton, and in
            2-D with SGD; a Monte-Carlo estimate for the stochastic solver otherwise).
        centroids: ``(m, d)`` the cells' barycentres under :math:`\mu` (NaN for an empty cell).
        value: :math:`\sum_j \int_{\mathrm{Lag}_j} |x - y_j|^2 d\mu`, 0-d, differentiable in ``y`` and ``b``
            (:math:`\partial_{y_j} = 2 b_j (y_j - c_j)`, :math:`\partial_{b_j} = \psi_j`, envelope theorem).
        convergence: criterion ``"relative_mass_error"``: :math:`\max_j |\mu(\mathrm{Lag}_j) - b_j| / b_j`.
        polygon_vertices, polygon_cells: 2-D exact solver: the clipped cells as one ragged list of
            counter-clockwise vertices ``(M, 2)`` and the cell of each ``(M,)`` (``None`` otherwise, e.g. in 3-D);
            see :attr:`cells`.
        cost: ``"sqeuclidean"`` (Laguerre cells) or ``"euclidean"`` (:math:`|x - y|`, Apollonius cells
            :math:`\{x : |x - y_j| - \psi_j \le |x - y_k| - \psi_k\ \forall k\}`; masses, value and the value's
            gradient in ``y`` are then Monte-Carlo estimates).

    Example:
        >>> import torch
        >>> from monge.solvers.semidiscrete import semidiscrete
        >>> r = semidiscrete(torch.tensor([[0.25, 0.5], [0.75, 0.5]], dtype=torch.float64))
        >>> r.transport(torch.tensor([[0.1, 0.9], [0.6, 0.2]], dtype=torch.float64)).tolist()
        [[0.25, 0.5], [0.75, 0.5]]
        >>> r.cells[0][:, 0].max().item(), r.convergence.criterion
        (0.5, 'relative_mass_error')
    """

    y: torch.Tensor
    b: torch.Tensor
    psi: torch.Tensor
    masses: torch.Tensor
    centroids: torch.Tensor
    value: torch.Tensor
    convergence: Convergence
    polygon_vertices: np.ndarray | None = None
    polygon_cells: np.ndarray | None = None
    cost: str = "sqeuclidean"

    @property
    def cells(self) -> list | None:
        """2-D: the list of ``m`` polygons, tensors ``(k_j, 2)`` counter-clockwise (``k_j = 0``: an empty cell)."""
        if self.polygon_vertices is None:
            return None
        order = np.argsort(self.polygon_cells, kind="stable")
        v, c = self.polygon_vertices[order], self.polygon_cells[order]
        cuts = np.searchsorted(c, np.arange(1, self.y.shape[0]))
        return [torch.as_tensor(p, dtype=self.y.dtype) for p in np.split(v, cuts)]

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        r"""The cell of each point: :math:`j(x) = \arg\min_j c(x, y_j) - \psi_j`, int64 ``(n,)``.

        For :math:`|x - y|^2` a nearest-neighbour query in :math:`\mathbb{R}^{d+1}` (sites
        :math:`(y_j, \sqrt{M - \psi_j})`, :math:`M = \max \psi`), exact and :math:`O(n \log m)`; for
        :math:`|x - y|` a chunked arg-min over all Diracs, :math:`O(nm)`.
        """
        from scipy.spatial import cKDTree

        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.y.shape[1]:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected a tensor of points (n, d) with d = {self.y.shape[1]}, got {shape}")
        if self.cost == "euclidean":
            y, psi = self.y.detach().to(x.device, x.dtype), self.psi.detach().to(x.device, x.dtype)
            return torch.cat([(torch.cdist(c, y) - psi).argmin(1) for c in x.detach().split(4096)])
        psi = self.psi.detach().cpu().double().numpy()
        lift = np.sqrt(np.maximum(psi.max() - psi, 0.0))
        tree = cKDTree(np.c_[self.y.detach().cpu().double().numpy(), lift])
        xs = x.detach().cpu().double().numpy()
        _, j = tree.query(np.c_[xs, np.zeros(len(xs))])
        return torch.as_tensor(j, dtype=torch.int64, device=x.device)

    def transport(self, x: torch.Tensor) -> torch.Tensor:
        """The optimal map :math:`x \\mapsto y_{j(x)}` at new points ``x (n, d)``."""
        return self.y.detach()[self.assign(x).to(self.y.device)].to(x.dtype)


@dataclass(frozen=True)
class LloydResult:
    """Optimal quantisation by Lloyd with Laguerre cells: the final positions ``y (m, 2)``, the semi-discrete
    solve at them (``ot``, a :class:`SemidiscreteResult`), and the value after each move (``trace``)."""

    y: torch.Tensor
    ot: SemidiscreteResult
    trace: torch.Tensor
