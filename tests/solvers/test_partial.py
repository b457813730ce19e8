"""Partial OT: against POT, an independent LP (HiGHS), closed forms, gradients, batches and bad inputs."""

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import monge
from monge import partial_wasserstein

ot = pytest.importorskip("ot")


def _problem(n=7, m=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 2, generator=g, dtype=dtype), torch.rand(m, 2, generator=g, dtype=dtype)
    a, b = torch.rand(n, generator=g, dtype=dtype) + 0.1, torch.rand(m, generator=g, dtype=dtype) + 0.1
    return torch.cdist(x, y) ** 2, a, b


def _highs(C, a, b, mass):
    """The partial OT LP solved by scipy's HiGHS, independently of any augmentation trick."""
    n, m = C.shape
    rows = np.kron(np.eye(n), np.ones((1, m)))
    cols = np.kron(np.ones((1, n)), np.eye(m))
    res = linprog(C.ravel(), A_ub=np.vstack([rows, cols]), b_ub=np.concatenate([a, b]),
                  A_eq=np.ones((1, n * m)), b_eq=[mass], bounds=(0, None), method="highs")
    return res.fun


@pytest.mark.parametrize("frac", [0.2, 0.6, 0.999])
def test_exact_matches_pot_and_highs(frac):
    C, a, b = _problem()
    mass = frac * float(torch.minimum(a.sum(), b.sum()))
    res = partial_wasserstein(C, a, b, mass=mass)
    P = res.plan
    ref = ot.partial.partial_wasserstein(a.numpy(), b.numpy(), C.numpy(), m=mass)
    assert float(res.value) == pytest.approx(float((ref * C.numpy()).sum()), rel=1e-12, abs=1e-14)
    assert float(res.value) == pytest.approx(_highs(C.numpy(), a.numpy(), b.numpy(), mass), rel=1e-8, abs=1e-12)
    # the certificate: a feasible plan, feasible duals, and no duality gap
    rows, cols = res.marginals
    assert bool((rows <= a + 1e-12).all()) and bool((cols <= b + 1e-12).all())
    assert float(P.sum()) == pytest.approx(mass, rel=1e-12)
    assert bool((res.f <= 1e-12).all()) and bool((res.g <= 1e-12).all())
    assert float((res.f[:, None] + res.g[None] + res.lam - C).max()) <= 1e-12
    dual = a @ res.f + b @ res.g + mass * res.lam
    assert float(dual) == pytest.approx(float(res.value), rel=1e-12, abs=1e-14)
    assert res.convergence.all_converged


def test_outlier_is_left_out_and_negative_costs_shift_the_value():
    x = torch.tensor([[0.0], [1.0], [9.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    res = partial_wasserstein(C, mass=2 / 3)
    assert float(res.value) == 0.0 and float(res.plan[2].sum()) == 0.0
    # C + c moves every unit of mass at an extra c: the value grows by c * mass, the plan does not change
    shifted = partial_wasserstein(C - 5.0, mass=2 / 3)
    assert float(shifted.value) == pytest.approx(float(res.value) - 5.0 * 2 / 3, abs=1e-12)
    torch.testing.assert_close(shifted.plan, res.plan)


def test_full_mass_is_balanced_ot():
    C, a, _ = _problem(n=6, m=6)
    b = torch.flip(a, (0,))
    res = partial_wasserstein(C, a, b, mass=float(a.sum()))
    assert float(res.value) == pytest.approx(float(monge.solve(C, a, b).value), rel=1e-12)


def test_exact_gradients_are_the_duals():
    C, a, b = _problem()
    mass = torch.tensor(0.5 * float(a.sum()), dtype=torch.float64, requires_grad=True)
    Cg, ag, bg = C.clone().requires_grad_(), a.clone().requires_grad_(), b.clone().requires_grad_()
    res = partial_wasserstein(Cg, ag, bg, mass=mass)
    res.value.backward()
    torch.testing.assert_close(Cg.grad, res.plan)
    torch.testing.assert_close(ag.grad, res.f)
    torch.testing.assert_close(bg.grad, res.g)
    assert float(mass.grad) == pytest.approx(float(res.lam))
    # the mass multiplier is the marginal cost of moving more: a finite difference of the value
    h = 1e-7
    m0 = float(mass.detach())
    up = partial_wasserstein(C, a, b, mass=m0 + h).value
    down = partial_wasserstein(C, a, b, mass=m0 - h).value
    assert float((up - down) / (2 * h)) == pytest.approx(float(res.lam), rel=1e-5)


def test_entropic_matches_pot_with_uniform_weights():
    C, _, _ = _problem(n=12, m=15, seed=3)
    res = partial_wasserstein(C, mass=0.7, eps=0.02, tol=1e-12)
    ref = ot.partial.entropic_partial_wasserstein(np.full(12, 1 / 12), np.full(15, 1 / 15), C.numpy(), reg=0.02,
                                                  m=0.7, numItermax=20000)
    np.testing.assert_allclose(res.plan.numpy(), ref, atol=1e-10)
    assert res.convergence.all_converged and float(res.convergence.error) <= 1e-12


def test_entropic_tends_to_exact_and_gradcheck():
    C, a, b = _problem(n=5, m=6, seed=1)
    mass = 0.5 * float(torch.minimum(a.sum(), b.sum()))
    exact = float(partial_wasserstein(C, a, b, mass=mass).value)
    vals = [float(partial_wasserstein(C, a, b, mass=mass, eps=e, tol=1e-11, max_iter=100000).plan.mul(C).sum())
            for e in (1e-2, 1e-3)]
    assert abs(vals[1] - exact) < abs(vals[0] - exact) and abs(vals[1] - exact) < 1e-2

    def value(C, a, b, m):
        return partial_wasserstein(C, a, b, mass=m, eps=0.1, tol=1e-13).value

    args = (C.requires_grad_(), a.requires_grad_(), b.requires_grad_(),
            torch.tensor(mass, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(value, args)


@pytest.mark.parametrize("eps", [None, 0.05])
def test_batch_equals_loop_with_colliding_sizes(eps):
    n = 4  # B = n = 4 and m = 5
    Cs, As, Bs = zip(*(_problem(n=n, m=5, seed=s) for s in range(n)))
    C, a, b = torch.stack(Cs), torch.stack(As), torch.stack(Bs)
    mass = 0.4 * torch.minimum(a.sum(-1), b.sum(-1))
    res = partial_wasserstein(C, a, b, mass=mass, eps=eps)
    assert res.value.shape == (n,) and res.plan.shape == (n, n, 5) and res.lam.shape == (n,)
    for k in range(n):
        one = partial_wasserstein(C[k], a[k], b[k], mass=mass[k], eps=eps)
        torch.testing.assert_close(res.value[k], one.value, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(res.plan[k], one.plan, rtol=1e-7, atol=1e-10)


def test_lazy_point_cloud_equals_dense():
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(40, 3, generator=g, dtype=torch.float64), torch.rand(30, 3, generator=g, dtype=torch.float64)
    lazy = partial_wasserstein(monge.PointCloud(x, y, backend="lazy"), mass=0.6, eps=0.05)
    dense = partial_wasserstein(torch.cdist(x, y) ** 2, mass=0.6, eps=0.05)
    torch.testing.assert_close(lazy.value, dense.value, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lazy.f, dense.f, rtol=1e-7, atol=1e-10)


def test_nonconvergence_is_reported():
    C, a, b = _problem()
    with pytest.warns(RuntimeWarning, match="partial_wasserstein"):
        res = partial_wasserstein(C, a, b, mass=1.0, eps=1e-3, max_iter=3, check_every=1)
    assert not res.convergence.all_converged and res.convergence.status == ("max_iter",)


def test_bad_inputs_name_the_argument():
    C, a, b = _problem()
    with pytest.raises(ValueError, match="mass: expected at most"):
        partial_wasserstein(C, a, b, mass=float(a.sum()) + 1.0)
    with pytest.raises(ValueError, match="mass: expected a positive"):
        partial_wasserstein(C, a, b, mass=0.0)
    with pytest.raises(ValueError, match="tol.*ignored by exact"):
        partial_wasserstein(C, a, b, mass=0.5, tol=1e-6)
    with pytest.raises(ValueError, match="eps"):
        partial_wasserstein(C, a, b, mass=0.5, eps=-1.0)
    with pytest.raises(ValueError, match="b: expected weights"):
        partial_wasserstein(C, a, b[:-1], mass=0.5)
    with pytest.raises(ValueError, match="C: partial OT needs one support dimension"):
        partial_wasserstein(monge.Grid((4, 4)), mass=0.5, eps=0.1)


def test_entropic_saturating_every_row_converges_and_is_feasible():
    # mass = |a| < |b|: every source row must be saturated (a plain block ascent stalls here; the eps stages fix it)
    from monge.cli.sections.partial import _clouds

    x, y = _clouds(40, 8)
    C = torch.cdist(x, y) ** 2
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(48, generator=g, dtype=torch.float64) + 0.5
    a = a / a.sum()
    b = 1.25 * b / b.sum()
    res = partial_wasserstein(C, a, b, mass=1.0, eps=0.01)
    assert res.convergence.all_converged, res.convergence
    rows, cols = res.marginals
    torch.testing.assert_close(rows, a, atol=1e-6, rtol=0)
    assert float((cols - b).max()) <= 1e-6 and float(rows.sum()) == pytest.approx(1.0, abs=1e-6)
    assert bool((res.f <= 0).all()) and bool((res.g <= 0).all())
