"""Exact grid OT as a (d+1)-partite min-cost flow: the dense solver, a full reduced-cost check, the plan."""

import numpy as np
import pytest
import torch

import monge
from monge.testing import grid_cost, grid_histograms
from monge.solvers.exact.grid_flow import solve_grid_flow


@pytest.mark.parametrize("shape, p, zeros", [((5, 7), 2, 0.0), ((6, 6), 2, 0.4), ((3, 4, 3), 2, 0.2),
                                             ((5, 7), 1, 0.3), ((9,), 2, 0.0), ((4, 5), 1.5, 0.0)])
def test_equals_dense_solver_with_full_certificate(shape, p, zeros):
    a, b = grid_histograms(shape, seed=len(shape) + int(10 * zeros), zeros=zeros)
    h = [1.0 / k for k in shape]
    C = grid_cost(shape, h, p)
    res = solve_grid_flow(a, b, p=p)
    ref = monge.solve(torch.tensor(C), torch.tensor(a.ravel()), torch.tensor(b.ravel()))
    assert abs(float(res.value) - float(ref.value)) <= 1e-12 * float(ref.value)
    f, g = res.f.numpy(), res.g.numpy()
    assert (f[:, None] + g[None] - C).max() <= 1e-14  # every pair, not only the flow's arcs
    P = res.plan.numpy()
    assert np.abs(P.sum(1) - a.ravel()).sum() < 1e-13 and np.abs(P.sum(0) - b.ravel()).sum() < 1e-13
    assert abs((P * C).sum() - float(res.value)) <= 1e-13 * float(res.value)
    assert np.abs((f[:, None] + g[None] - C)[P > 0]).max() <= 1e-14  # tight on the plan
    assert int((P > 0).sum()) <= 2 * a.size - 1
    assert abs(float(res.convergence.duality_gap)) <= 1e-14 and res.convergence.status == ("converged",)


def test_spacing_dtype_and_the_solve_grid_route():
    a, b = grid_histograms((8, 6), seed=3)
    at, bt = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    res = solve_grid_flow(at, bt, spacing=(0.5, 2.0))
    C = grid_cost((8, 6), (0.5, 2.0), 2)
    ref = monge.solve(torch.tensor(C), torch.tensor(a.ravel()), torch.tensor(b.ravel()))
    assert res.value.dtype == torch.float32 and res.f.shape == (48,)
    assert abs(float(res.value) - float(ref.value)) <= 1e-6 * float(ref.value)
    via_api = monge.solve_grid(torch.tensor(a), torch.tensor(b))  # eps=None: exact, [0, 1)^2 cells
    direct = solve_grid_flow(a, b)
    assert abs(float(via_api.value) - float(direct.value)) <= 1e-12 * float(direct.value)


def test_point_masses_move_by_the_closed_form():
    a, b = np.zeros((8, 8)), np.zeros((8, 8))
    a[1, 2], a[5, 5] = 0.25, 0.75
    b[6, 2], b[5, 7] = 0.25, 0.75
    res = solve_grid_flow(a, b)
    assert abs(float(res.value) - (0.25 * (5 / 8) ** 2 + 0.75 * (2 / 8) ** 2)) < 1e-15


@pytest.mark.parametrize("kwargs, match", [
    (dict(b=np.ones((3, 4)) / 12), "a, b: expected two histograms of the same grid shape"),
    (dict(a=-np.ones((4, 4))), "a: expected finite nonnegative"),
    (dict(b=2 * np.ones((4, 4)) / 16), "a, b: expected equal positive masses"),
    (dict(spacing=(1.0, 2.0, 3.0)), "spacing: expected 2 positive cell sizes"),
    (dict(p=0), "p: expected a positive power"),
    (dict(max_iter=0), "max_iter: expected a positive int"),
    (dict(max_bytes=1e3), r"a: a grid of shape \(4, 4\) needs 128 arcs"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    args = dict(a=np.ones((4, 4)) / 16, b=np.ones((4, 4)) / 16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        solve_grid_flow(args.pop("a"), args.pop("b"), **args)


def test_max_iter_cap_is_reported():
    a, b = grid_histograms((6, 6), seed=1)
    res = solve_grid_flow(a, b, max_iter=3)
    assert res.convergence.status == ("max_iter",) and not res.convergence.all_converged
