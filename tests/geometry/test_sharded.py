"""Sharded point cloud over torch.distributed: 2 CPU processes (gloo) give the single-process Sinkhorn solve
(potentials, value, transport cost, gradients w.r.t. the points)."""

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from monge.geometry import PointCloud
from monge.problems import LinearProblem
from monge.solvers.sinkhorn import Sinkhorn

N, M, D, EPS = 37, 29, 3, 0.05
SPLIT_X, SPLIT_Y = (20, 17), (11, 18)  # uneven shards


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randn(M, D, generator=g, dtype=torch.float64) + 0.5
    a = torch.rand(N, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(M, generator=g, dtype=torch.float64) + 0.1
    return x, y, a / a.sum(), b / b.sum()


def _worker(rank, world, port, out_dir, backend):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=__import__("datetime").timedelta(seconds=60))
    try:
        from monge.geometry.sharded import ShardedPointCloud

        x, y, a, b = _data()
        xs, ys = x.split(SPLIT_X)[rank], y.split(SPLIT_Y)[rank]
        geom = ShardedPointCloud(xs, ys, backend=backend)
        a_whole = geom.gather_source(geom.local_source(a).contiguous())  # per-rank slices -> whole weights
        res = Sinkhorn(eps=EPS, tol=1e-9)(LinearProblem(geom, a_whole, b))
        rows = geom.plan_cost(res.f + EPS * a.log(), res.g + EPS * b.log(), EPS)
        xg = xs.clone().requires_grad_()  # gradients w.r.t. this rank's points (envelope)
        Sinkhorn(eps=EPS, tol=1e-9)(LinearProblem(ShardedPointCloud(xg, ys, backend=backend), a, b)).value.backward()
        torch.save({"grad_x": xg.grad, "f": res.f, "g": res.g, "value": res.value, "n_iters": int(res.convergence.n_iters),
                    "error": float(res.convergence.error), "f_local": geom.local_source(res.f),
                    "plan_cost": rows, "shape": geom.shape},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
@pytest.mark.parametrize("backend", ["dense", "lazy"])
def test_two_gloo_processes_equal_single_process(tmp_path, backend):
    ctx = mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), backend), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 90
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the 2 gloo processes did not finish within 90 s")
    x, y, a, b = _data()
    ref = Sinkhorn(eps=EPS, tol=1e-9)(LinearProblem(PointCloud(x, y, backend=backend), a, b))
    xr = x.clone().requires_grad_()
    Sinkhorn(eps=EPS, tol=1e-9)(LinearProblem(PointCloud(xr, y, backend=backend), a, b)).value.backward()
    outs = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r, out in enumerate(outs):
        assert out["shape"] == (N, M)
        torch.testing.assert_close(out["f"], ref.f, rtol=0, atol=1e-12)
        torch.testing.assert_close(out["g"], ref.g, rtol=0, atol=1e-12)
        torch.testing.assert_close(out["value"], ref.value, rtol=1e-13, atol=1e-13)
        assert out["n_iters"] == int(ref.convergence.n_iters) and out["error"] <= 1e-9
        torch.testing.assert_close(out["f_local"], ref.f.split(SPLIT_X)[r], rtol=0, atol=1e-12)
        torch.testing.assert_close(out["grad_x"], xr.grad.split(SPLIT_X)[r], rtol=1e-10, atol=1e-12)
        u, v = ref.f + EPS * a.log(), ref.g + EPS * b.log()
        torch.testing.assert_close(out["plan_cost"], PointCloud(x, y).plan_cost(u, v, EPS), rtol=1e-12, atol=1e-13)
    assert torch.equal(outs[0]["f"], outs[1]["f"])  # ranks agree bit for bit: they run in lockstep


def test_needs_a_process_group():
    from monge.geometry.sharded import ShardedPointCloud

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(ValueError, match="init_process_group"):
        ShardedPointCloud(torch.zeros(3, 2), torch.zeros(3, 2))
