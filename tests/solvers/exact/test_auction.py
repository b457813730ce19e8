"""Batched auction assignment: equal values with the compiled LAPJV and scipy, certificates, batches, errors."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import monge
from monge.solvers.exact.auction import Auction


def _scipy_values(C):
    C64 = C.detach().double().reshape(-1, *C.shape[-2:]).numpy()
    return np.array([c[linear_sum_assignment(c)].sum() for c in C64]).reshape(C.shape[:-2])


def _is_matching(cols, m):
    flat = cols.reshape(-1, cols.shape[-1])
    return all(len(set(r.tolist())) == len(r) and 0 <= min(r.tolist()) and max(r.tolist()) < m for r in flat)


ENGINES = ["auto", "torch"]  # auto on CPU: the compiled LAPJV batch; torch: the bidding loop (what CUDA runs)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["float", "integer", "ties"])
def test_batched_values_equal_lapjv_and_scipy(dtype, kind, engine):
    g = torch.Generator().manual_seed(1)
    n = 24
    B = n  # batched with B = n
    if kind == "float":
        C = torch.rand(B, n, n, generator=g, dtype=torch.float64).to(dtype)
    elif kind == "integer":
        C = torch.randint(-50, 200, (B, n, n), generator=g).to(dtype)
    else:  # massive ties: three cost levels
        C = torch.randint(0, 3, (B, n, n), generator=g).to(dtype)
    res = monge.assignment(C, method="auction", engine=engine)
    lap = monge.assignment(C)
    ref = _scipy_values(C)
    assert res.cols.shape == (B, n) and res.cols.dtype == torch.int64 and _is_matching(res.cols, n)
    assert res.value.dtype == dtype and res.f.shape == (B, n) and res.g.shape == (B, n)
    tol = 1e-9 if dtype == torch.float64 else 1e-3 * n
    if kind == "float":
        np.testing.assert_allclose(res.value.double().numpy(), ref, atol=tol)
        np.testing.assert_allclose(res.value.double().numpy(), lap.value.double().numpy(), atol=tol)
    else:  # integer costs: the certificate proves optimality, values are equal exactly
        np.testing.assert_array_equal(res.value.double().numpy(), ref)
        np.testing.assert_array_equal(res.value.double().numpy(), lap.value.double().numpy())
        assert bool((res.convergence.duality_gap < 1).all())
    conv = res.convergence
    assert conv.criterion == "duality_gap" and conv.all_converged and conv.status == ("converged",) * B
    # the returned duals are feasible and the measured gap is value - dual
    C64, f, gg = C.double(), res.f.double(), res.g.double()
    assert bool((f[..., :, None] + gg[..., None, :] <= C64 + 1e-6 * (1 + C64.abs())).all())
    gap = res.value.double() - f.sum(-1) - gg.sum(-1)
    np.testing.assert_allclose(conv.duality_gap.double().numpy(), gap.numpy(), atol=1e-3 if dtype == torch.float32 else 1e-9)


def test_real_costs_gap_within_bound_and_suboptimality():
    g = torch.Generator().manual_seed(2)
    C = torch.randn(6, 40, 40, generator=g, dtype=torch.float64)
    eps = 1e-3
    res = Auction(eps=eps, engine="torch")(C)
    ref = _scipy_values(C)
    gap = res.convergence.duality_gap.numpy()
    assert (gap <= 40 * eps + 1e-9).all() and (gap >= -1e-9).all()
    sub = res.value.numpy() - ref  # suboptimality is bounded by the measured gap
    assert (sub >= -1e-9).all() and (sub <= gap + 1e-9).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_rectangular_unbatched_and_gradient(engine):
    g = torch.Generator().manual_seed(3)
    C = torch.randint(0, 30, (7, 11), generator=g).double().requires_grad_()
    res = monge.assignment(C, method="auction", engine=engine)
    assert res.cols.shape == (7,) and _is_matching(res.cols, 11)
    assert float(res.value.detach()) == _scipy_values(C.detach())
    assert bool((res.g <= 1e-12).all()) and float(res.convergence.duality_gap) < 1
    res.value.backward()
    np.testing.assert_array_equal(C.grad.numpy(), res.plan.detach().numpy())


@pytest.mark.parametrize("engine", ENGINES)
def test_batched_equals_looped_and_batch_shape(engine):
    g = torch.Generator().manual_seed(4)
    C = torch.randint(0, 9, (2, 3, 10, 10), generator=g).float()
    res = Auction(engine=engine)(C)
    assert res.value.shape == (2, 3) and res.convergence.converged.shape == (2, 3)
    looped = torch.stack([Auction(engine=engine)(c).value for c in C.reshape(6, 10, 10)]).reshape(2, 3)
    assert torch.equal(res.value, looped)


def test_max_iter_reports_not_converged():
    g = torch.Generator().manual_seed(5)
    C = torch.rand(2, 30, 30, generator=g, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        res = Auction(max_iter=2, check_every=1, engine="torch")(C)
    assert _is_matching(res.cols, 30)  # still a matching, completed in order
    assert not res.convergence.all_converged and set(res.convergence.status) == {"max_iter"}


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="C: expected n <= m"):
        Auction()(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="scaling"):
        Auction(scaling=1.0)
    with pytest.raises(ValueError, match="method"):
        monge.assignment(torch.zeros(2, 2), method="hungarian")
    with pytest.raises(ValueError, match="engine: expected 'auto'"):
        Auction(engine="gpu")


def test_float32_integer_costs_beyond_resolution_warn_and_keep_the_bound():
    g = torch.Generator().manual_seed(6)
    C = torch.randint(0, 10**6, (2, 40, 40), generator=g).float()
    with pytest.warns(RuntimeWarning, match="optimality is not proven"):
        res = Auction(engine="torch")(C)
    ref = _scipy_values(C)
    gap = res.convergence.duality_gap.double().numpy()
    assert res.convergence.all_converged and (gap >= 1).any()  # no proof: the gap is above 1, within n * eps
    assert (res.value.double().numpy() - ref <= gap + 1e-3 * np.abs(ref)).all()


def test_cpu_batch_goes_to_the_compiled_solver_with_the_same_certificate():
    """engine="auto" on CPU: the LAPJV batch, exact (values equal to scipy), the gap measured as for the auction."""
    g = torch.Generator().manual_seed(7)
    C = torch.rand(5, 5, 5, generator=g, dtype=torch.float64)  # B = n = m
    auto, bid = Auction()(C), Auction(engine="torch")(C)
    np.testing.assert_allclose(auto.value.numpy(), _scipy_values(C), atol=1e-12)
    assert (auto.value <= bid.value + 1e-12).all() and auto.convergence.all_converged
    assert float(auto.convergence.duality_gap.abs().max()) < 1e-12 and int(auto.convergence.n_iters.max()) == 0
