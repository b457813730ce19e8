"""L2-regularised OT: POT's smooth_ot_dual, the duality certificate, the exact LP as eps -> 0, sparsity, envelope
gradients, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import monge
from monge.solvers.quadratic_reg import QuadraticRegOT, quadratic_ot


def _instance(rng, n=25, m=20):
    x, y = rng.random((n, 2)), rng.random((m, 2))
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    return torch.tensor(C), torch.tensor(rng.dirichlet(np.ones(n))), torch.tensor(rng.dirichlet(np.ones(m)))


@pytest.mark.parametrize("eps", [1e-1, 1e-2])
@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_against_pot_and_certificate(rng, eps, method):
    ot = pytest.importorskip("ot")
    C, a, b = _instance(rng)
    res = quadratic_ot(C, a, b, eps=eps, method=method)
    conv = res.convergence
    assert conv.all_converged and float(conv.error) <= 1e-9
    assert abs(float(conv.duality_gap)) < 1e-9  # feasible plan + zero gap: optimal, independently of POT
    G = ot.smooth.smooth_ot_dual(a.numpy(), b.numpy(), C.numpy(), eps, reg_type="l2", stopThr=1e-12,
                                 numItermax=5000)
    # POT's L-BFGS stops at marginal violations ~1e-6: its plan agrees to that precision
    np.testing.assert_allclose(res.plan.numpy(), G, atol=2e-5)
    pot_value = float((G * C.numpy()).sum() + 0.5 * eps * (G * G).sum())
    assert float(res.value) == pytest.approx(pot_value, rel=1e-4)
    torch.testing.assert_close(res.plan.sum(1), a, atol=1e-9, rtol=0)


def test_tends_to_the_exact_lp(rng):
    from conftest import lp_reference

    C, a, b = _instance(rng)
    lp = lp_reference(C.numpy(), a.numpy(), b.numpy())
    P_exact = monge.solve(C, a, b).plan
    gaps = []
    for eps in (1.0, 1e-1, 1e-2):
        res = quadratic_ot(C, a, b, eps=eps)
        assert res.convergence.all_converged
        # OT <= <P, C> and value <= OT + eps/2 |P_exact|^2 (the exact plan is feasible for the regularised problem)
        assert lp - 1e-9 * float(C.max()) <= float(res.transport_cost)  # up to the plan's 1e-9 marginal error
        assert float(res.value) <= lp + 0.5 * eps * float((P_exact**2).sum()) + 1e-10
        gaps.append(float(res.transport_cost) - lp)
    # measured 3e-3, 4e-5, then ~1e-11: below a threshold (~0.03 here) the L2 plan is an exact optimal plan, the one
    # of least norm (exact regularisation of linear programs, Mangasarian 1984; Friedlander & Tseng 2007)
    assert gaps[0] > gaps[1] > 1e-7 and abs(gaps[2]) < 1e-9


def test_plans_are_sparse(rng):
    C, a, b = _instance(rng, 30, 30)
    nnz = [int((quadratic_ot(C, a, b, eps=eps).plan > 0).sum()) for eps in (10.0, 1.0, 1e-1, 1e-2, 1e-4)]
    assert all(u >= v for u, v in zip(nnz, nnz[1:])) and nnz[0] > 2 * nnz[-1]  # smaller eps, sparser plan
    assert nnz[-1] <= 30 + 30 - 1 + 5  # about the n + m - 1 nonzeros of an exact basic plan
    ent = monge.solve(C, a, b, eps=1e-2).plan
    assert int((ent > 0).sum()) == 900  # the entropic plan has no exact zeros


def test_envelope_gradients(rng):
    C, a, b = _instance(rng, 8, 6)
    C.requires_grad_(True)
    res = quadratic_ot(C, a, b, eps=0.05, tol=1e-12)
    (gC,) = torch.autograd.grad(res.value, C)
    torch.testing.assert_close(gC, res.plan)
    D = torch.randn(C.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = 1e-6
    fd = (float(quadratic_ot(C.detach() + h * D, a, b, eps=0.05, tol=1e-12).value)
          - float(quadratic_ot(C.detach() - h * D, a, b, eps=0.05, tol=1e-12).value)) / (2 * h)
    assert float((gC * D).sum()) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_batched_equals_looped_and_float32(rng):
    Cs, As, Bs = zip(*(_instance(rng, 10, 12) for _ in range(3)))
    C, a, b = torch.stack(Cs), torch.stack(As), torch.stack(Bs)
    res = quadratic_ot(C, a, b, eps=0.02)
    assert res.plan.shape == (3, 10, 12) and res.convergence.converged.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(res.plan[i], quadratic_ot(C[i], a[i], b[i], eps=0.02).plan)
    r32 = quadratic_ot(C[0].float(), a[0].float(), b[0].float(), eps=0.02)
    assert r32.plan.dtype == torch.float32 and float(r32.value) == pytest.approx(float(res.value[0]), rel=1e-5)


def test_errors():
    C = torch.rand(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps: expected a positive"):
        quadratic_ot(C, eps=0.0)
    with pytest.raises(ValueError, match="method: expected"):
        QuadraticRegOT(eps=1.0, method="sinkhorn")
    with pytest.raises(ValueError, match="rho"):
        QuadraticRegOT(eps=1.0)(monge.LinearProblem(monge.DenseCost(C), rho_a=1.0))
