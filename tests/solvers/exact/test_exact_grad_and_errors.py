"""Envelope gradients of exact OT, assignment through the API, and bad input at the boundary."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import monge


def test_gradcheck_cost(rng):
    C = torch.from_numpy(rng.random((6, 5))).requires_grad_()
    a = torch.from_numpy(rng.dirichlet(np.ones(6)))
    b = torch.from_numpy(rng.dirichlet(np.ones(5)))
    assert torch.autograd.gradcheck(lambda C: monge.solve(C, a, b).value, (C,), eps=1e-7, atol=1e-6)
    # the gradient w.r.t. the cost is the plan
    (grad,) = torch.autograd.grad(monge.solve(C, a, b).value, C)
    torch.testing.assert_close(grad, monge.solve(C.detach(), a, b).plan)


def test_gradcheck_points(rng):
    x = torch.from_numpy(rng.random((7, 2))).requires_grad_()
    y = torch.from_numpy(rng.random((5, 2))).requires_grad_()
    a = torch.from_numpy(rng.dirichlet(np.ones(7)))
    b = torch.from_numpy(rng.dirichlet(np.ones(5)))
    for p in (1.5, 2.0):
        fn = lambda x, y: monge.wasserstein(x, y, a, b, p=p)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, y), eps=1e-7, atol=1e-6)


def test_weight_gradient_along_tangent_directions(rng):
    """d value / d a along a mass-preserving direction is <f, d> (finite differences in float64)."""
    C = torch.from_numpy(rng.random((8, 6)))
    a = torch.from_numpy(rng.dirichlet(np.ones(8)) * 0.5 + 1 / 16).requires_grad_()
    b = torch.from_numpy(rng.dirichlet(np.ones(6)) * 0.5 + 1 / 12).requires_grad_()
    v = monge.solve(C, a, b).value
    ga, gb = torch.autograd.grad(v, (a, b))
    assert abs(float(ga.sum())) < 1e-12 and abs(float(gb.sum())) < 1e-12
    for _ in range(5):
        da = torch.from_numpy(rng.normal(size=8))
        da -= da.mean()
        db = torch.from_numpy(rng.normal(size=6))
        db -= db.mean()
        h = 1e-6
        fd = (monge.solve(C, a + h * da, b + h * db).value - monge.solve(C, a - h * da, b - h * db).value) / (2 * h)
        np.testing.assert_allclose(float(fd), float((ga * da).sum() + (gb * db).sum()), rtol=1e-5, atol=1e-9)


def test_zero_distance_gradient_is_finite():
    x = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    w = monge.wasserstein(x, x.detach().clone(), p=2)
    (g,) = torch.autograd.grad(w, x)
    assert torch.isfinite(g).all()


def test_assignment_against_scipy(rng):
    for n, m in [(1, 1), (5, 5), (30, 30), (20, 35), (100, 100)]:
        for C in (rng.random((n, m)), rng.integers(0, 4, (n, m)).astype(float)):
            res = monge.assignment(torch.from_numpy(C))
            r, c = scipy.optimize.linear_sum_assignment(C)
            np.testing.assert_allclose(float(res.value), C[r, c].sum(), rtol=1e-12, atol=1e-12)
            assert len(set(res.cols.tolist())) == n
            f, g = res.f.numpy(), res.g.numpy()
            assert (f[:, None] + g[None] <= C + 1e-10).all()
            assert abs(float(res.convergence.duality_gap)) < 1e-9


def test_assignment_batched_and_grad(rng):
    C = torch.from_numpy(rng.random((3, 10, 10))).requires_grad_()
    res = monge.assignment(C)
    assert res.cols.shape == (3, 10) and res.plan.shape == (3, 10, 10)
    (g,) = torch.autograd.grad(res.value.sum(), C)
    torch.testing.assert_close(g, res.plan)
    for i in range(3):
        assert monge.assignment(C[i].detach()).cols.tolist() == res.cols[i].tolist()


BAD = [
    (lambda: monge.solve(torch.tensor([[1.0, float("nan")]])), ValueError, "C: expected finite"),
    (lambda: monge.solve(torch.tensor([[1.0, float("inf")]])), ValueError, "infinite"),
    (lambda: monge.solve(torch.zeros(0, 3)), ValueError, "non-empty"),
    (lambda: monge.solve(torch.zeros(3)), ValueError, r"shape \(\.\.\., n, m\)"),
    (lambda: monge.solve(torch.zeros(2, 3), torch.tensor([0.5, 0.5, 0.0])), ValueError, "a: expected weights"),
    (lambda: monge.solve(torch.zeros(2, 2), torch.tensor([1.5, -0.5])), ValueError, "a: expected nonnegative"),
    (lambda: monge.solve(torch.zeros(2, 2), torch.tensor([0.0, 0.0])), ValueError, "a: expected a positive total"),
    (lambda: monge.solve(torch.zeros(2, 2), None, torch.tensor([0.5, float("nan")])), ValueError, "b: expected finite"),
    (lambda: monge.solve(torch.zeros(2, 2), torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.6])), ValueError, "same total mass"),
    (lambda: monge.solve(torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0.5, 0.5])), TypeError, "dtype"),
    (lambda: monge.solve(torch.zeros(2, 2, dtype=torch.int32).to(torch.complex64)), TypeError, "real floating"),
    (lambda: monge.solve(torch.zeros(2, 2), method="magic"), ValueError, "method"),
    (lambda: monge.solve(torch.zeros(2, 3), method="assignment"), ValueError, "n = m"),
    (lambda: monge.solve(torch.zeros(2, 2), max_iter=0), ValueError, "max_iter"),
    (lambda: monge.wasserstein(torch.zeros(3, 2), torch.zeros(3, 3)), ValueError, "same dimension d"),
    (lambda: monge.wasserstein(torch.zeros(3, 2), torch.zeros(3, 2), p=0.5), ValueError, "p >= 1"),
    (lambda: monge.wasserstein(torch.zeros(3), torch.zeros(3)), ValueError, r"x\[:, None\]"),
    (lambda: monge.solve_points(torch.zeros(3, 2), torch.zeros(3, 2), cost="hamming"), ValueError, "cost: expected one of"),
    (lambda: monge.solve_points(torch.zeros(3, 2), torch.zeros(3, 2), cost=lambda x, y: x), ValueError, "callable must return"),
    (lambda: monge.assignment(torch.zeros(4, 3)), ValueError, "n <= m"),
    (lambda: monge.solve("C"), TypeError, "array-like"),
]


@pytest.mark.parametrize("fn,exc,match", BAD)
def test_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_cuda_inputs_skip_cleanly():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    C = torch.rand(20, 30, device="cuda")
    res = monge.solve(C)
    assert res.value.device.type == "cuda" and res.plan.device.type == "cuda"


def test_cli_wasserstein(tmp_path, rng, capsys):
    import ot

    from monge.cli import main

    x, y = rng.random((10, 2)), rng.random((10, 2)) + 1
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    assert main(["wasserstein", str(tmp_path / "x.npy"), str(tmp_path / "y.csv"), "-p", "1"]) == 0
    out = float(capsys.readouterr().out)
    w = np.full(10, 0.1)
    np.testing.assert_allclose(out, ot.emd2(w, w, ot.dist(x, y, metric="euclidean")), rtol=1e-8)
    with pytest.raises(SystemExit, match="no such file"):
        main(["wasserstein", str(tmp_path / "x.npy"), str(tmp_path / "nope.npy")])
