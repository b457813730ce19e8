r"""A point cloud whose cost work is split across processes with ``torch.distributed`` (multi-GPU, multi-node).

Each rank passes its slice ``x_local (..., n_r, d)`` of the source points and ``y_local (..., m_r, d)`` of the
target points (any split, at least one point per rank, ranks in order). The geometry gathers the points once
(O((n + m) d) per rank) and keeps weights and potentials whole and replicated (O(n + m)): only the O(n m) work
is sharded. A soft-min over the targets is computed by each rank on its own targets for every source (a
``n x m_r`` block, through a local :class:`~monge.geometry.PointCloud` and its backend), and the partial soft-mins
are combined by one all-gather and a log-sum-exp over ranks (:mod:`monge.geometry._backends.sharded`):

.. math::
    \mathrm{softmin}_\varepsilon(h)_i = -\varepsilon \log \sum_{r} \exp\big(-s^{(r)}_i / \varepsilon\big),
    \qquad s^{(r)}_i = -\varepsilon \log \sum_{j \in J_r} \exp\big((h_j - C_{ij})/\varepsilon\big).

Every rank ends with the same vector, so any solver over ``softmin`` (Sinkhorn, divergences) runs unchanged and
in lockstep: its marginal errors, stop tests and dual value are those of the whole problem, equal to a
single-process solve to rounding (the sum is regrouped by rank). All ranks must make the same calls in the
same order (collectives).

Launch on GPUs with NCCL and ``torchrun`` (one process per GPU)::

    # torchrun --nproc_per_node=4 solve.py
    import os, torch, torch.distributed as dist, monge
    from monge.geometry.sharded import ShardedPointCloud
    dist.init_process_group("nccl")
    rank, R = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    x, y = torch.load("x.pt"), torch.load("y.pt")          # or read only this rank's rows
    xs, ys = x.chunk(R)[rank].cuda(), y.chunk(R)[rank].cuda()
    geom = ShardedPointCloud(xs, ys, backend="lazy")
    res = monge.solvers.sinkhorn.Sinkhorn(eps=1e-2)(monge.problems.LinearProblem(geom))
    f_mine = geom.local_source(res.f)                      # this rank's slice of the potential
    dist.destroy_process_group()

Weights passed to the problem are the whole ``a (n,)``, ``b (m,)`` (``None``: uniform); from per-rank slices,
build them with :meth:`ShardedPointCloud.gather_source` / :meth:`gather_target`. Gradients w.r.t. each rank's
points (``value.backward()`` on every rank: the backward pass has collectives too) equal the single-process
ones; gradients w.r.t. the replicated weights are not assembled across ranks (each rank sees the part through
its own blocks), so differentiate the weights in a single process.
"""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_points
from ._backends import sharded as coll
from .pointcloud import PointCloud, _PointsGeometry

__all__ = ["ShardedPointCloud"]


class ShardedPointCloud(_PointsGeometry):
    r"""Points sharded across ``torch.distributed`` ranks, cost ``C_ij = cost(x_i, y_j)`` (see the module).

    Args:
        x_local: this rank's source points ``(..., n_r, d)``. y_local: its target points ``(..., m_r, d)``.
        cost, p: as for :class:`~monge.geometry.PointCloud`. backend: the backend of the local blocks
            (``"dense"``, ``"lazy"``, ``"auto"``).
        group: the process group (``None``: the default group).

    Example (a single-process group: the geometry then equals a PointCloud):
        >>> import os, tempfile, torch, torch.distributed as dist
        >>> url = "file://" + os.path.join(tempfile.mkdtemp(), "pg")
        >>> dist.init_process_group("gloo", init_method=url, rank=0, world_size=1)
        >>> x, y = torch.rand(6, 2, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
        >>> h = torch.rand(5, dtype=torch.float64)
        >>> out = ShardedPointCloud(x, y).softmin(h, 0.1, 1)
        >>> bool(torch.allclose(out, PointCloud(x, y).softmin(h, 0.1, 1)))
        True
        >>> dist.destroy_process_group()
    """

    def __init__(self, x_local, y_local, cost="sqeuclidean", p: float | None = None, backend: str = "auto",
                 group=None):
        x_local, y_local = as_tensor(x_local, "x_local"), as_tensor(y_local, "y_local")
        check_points(x_local, "x_local")
        check_points(y_local, "y_local")
        self.rank, self.world_size = coll.world(group)
        self.group = group
        sx = coll.rank_sizes(x_local.shape[-2], x_local.device, group)
        sy = coll.rank_sizes(y_local.shape[-2], y_local.device, group)
        x_all = coll.all_gather_cat(x_local, sx, -2, group)
        y_all = coll.all_gather_cat(y_local, sy, -2, group)
        self._setup(x_local, y_local, x_all, y_all, sx, sy, cost, p, backend)

    def _setup(self, x_local, y_local, x_all, y_all, sx, sy, cost, p, backend):
        self.x_local, self.y_local, self.x, self.y = x_local, y_local, x_all, y_all
        self.sizes = (tuple(sx), tuple(sy))
        self.options = (cost, p, backend)
        self._rows = PointCloud(x_all, y_local, cost=cost, p=p, backend=backend)  # all sources x my targets
        self._cols = PointCloud(x_local, y_all, cost=cost, p=p, backend=backend)  # my sources x all targets
        self.cost_fn = self._rows.cost_fn

    def _slice(self, t: torch.Tensor, which: int) -> torch.Tensor:
        sizes = self.sizes[which]
        start = sum(sizes[: self.rank])
        return t.narrow(-1, start, sizes[self.rank])

    def local_source(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's slice ``(..., n_r)`` of a whole source vector (weights, ``f``)."""
        return self._slice(t, 0)

    def local_target(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's slice ``(..., m_r)`` of a whole target vector (weights, ``g``)."""
        return self._slice(t, 1)

    def gather_source(self, t_local: torch.Tensor) -> torch.Tensor:
        """The whole source vector ``(..., n)`` from every rank's slice (a collective)."""
        return coll.all_gather_cat(t_local, list(self.sizes[0]), -1, self.group)

    def gather_target(self, t_local: torch.Tensor) -> torch.Tensor:
        """The whole target vector ``(..., m)`` from every rank's slice (a collective)."""
        return coll.all_gather_cat(t_local, list(self.sizes[1]), -1, self.group)

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        """Partial soft-min over this rank's slice of the reduced dimension, combined over ranks (a collective)."""
        if dim == 1:
            part = self._rows.softmin(self.local_target(h), eps, 1)
        elif dim == 0:
            part = self._cols.softmin(self.local_source(h), eps, 0)
        else:
            raise ValueError(f"dim: expected 0 (reduce over sources) or 1 (over targets), got {dim!r}")
        return coll.combine_softmins(part, eps, self.group)

    def plan_cost(self, u: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
        """``<P, C>``: each rank's block of target columns, summed over ranks (a collective)."""
        return coll.all_reduce_sum(self._rows.plan_cost(u, self.local_target(v), eps), self.group)

    def cost_scale(self) -> float:
        """As a :class:`~monge.geometry.PointCloud` on all the points (the same on every rank)."""
        return PointCloud(self.x.detach(), self.y.detach(), cost=self.cost_fn, backend="lazy").cost_scale()

    def cost(self) -> torch.Tensor:
        """The whole ``(..., n, m)`` cost on this rank (small problems and tests only)."""
        return self.cost_fn(self.x, self.y)

    def detach(self) -> "ShardedPointCloud":
        if not (self.x.requires_grad or self.y.requires_grad):
            return self
        out = object.__new__(ShardedPointCloud)
        out.rank, out.world_size, out.group = self.rank, self.world_size, self.group
        out._setup(self.x_local.detach(), self.y_local.detach(), self.x.detach(), self.y.detach(),
                   *self.sizes, *self.options)
        return out

    def like(self) -> torch.Tensor:
        return self.x_local

    def __repr__(self) -> str:
        return (f"ShardedPointCloud(rank={self.rank}/{self.world_size}, x={tuple(self.x_local.shape)} of "
                f"{self.shape[0]}, y={tuple(self.y_local.shape)} of {self.shape[1]}, cost={self.cost_fn!r})")
