"""The compiled scaling-domain loop of dense float64 costs (csrc/sinkhorn_dense.cpp) against the torch log-domain
iterations: same potentials and certificates up to rounding, unbalanced, underflow fallback, bad inputs."""

import pytest
import torch

import monge
from monge.geometry.dense import DenseCost
from monge.problems.linear import LinearProblem
from monge.solvers.sinkhorn import Sinkhorn

F64 = torch.float64


class _TorchOnly(DenseCost):
    """The same geometry with its own soft-min: the compiled loop steps aside (the reference path)."""

    def softmin(self, h, eps, dim):
        return super().softmin(h, eps, dim)


def _problem(n, m, seed=0, rho=None):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 2, generator=g, dtype=F64), torch.rand(m, 2, generator=g, dtype=F64)
    a = torch.rand(n, generator=g, dtype=F64) + 0.1
    b = torch.rand(m, generator=g, dtype=F64) + 0.1
    C = torch.cdist(x, y) ** 2
    return C, a / a.sum(), b / b.sum(), rho


@pytest.mark.parametrize("n,m,rho", [(7, 7, None), (30, 7, None), (7, 30, 0.5), (64, 48, None)])
@pytest.mark.parametrize("omega", ["auto", 1.0, 1.5])
def test_compiled_loop_equals_torch_loop(n, m, rho, omega):
    C, a, b, _ = _problem(n, m, rho=rho)
    assert DenseCost(C).scaling_loop(0.05) is not None and _TorchOnly(C).scaling_loop(0.05) is None
    solver = Sinkhorn(eps=0.05, tol=1e-10, omega=omega)
    fast = solver(LinearProblem(DenseCost(C), a, b, rho_a=rho, rho_b=rho))
    ref = solver(LinearProblem(_TorchOnly(C), a, b, rho_a=rho, rho_b=rho))
    assert fast.convergence.all_converged and ref.convergence.all_converged
    torch.testing.assert_close(fast.f, ref.f, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.g, ref.g, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.value, ref.value, atol=1e-11, rtol=0)
    # the same iterations (same probes, same relaxation decisions) to within a check or two
    assert abs(int(fast.convergence.n_iters) - int(ref.convergence.n_iters)) <= 20
    # the certificate describes the returned plan
    P = fast.plan
    err = (P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum()
    if rho is None:
        assert float(err) <= float(fast.convergence.error) * 1.01 + 1e-14


def test_underflow_falls_back_to_the_log_domain_and_stays_truthful():
    """Costs up to 1000 / eps: the kernel's sums underflow (e^-1000 < tiny); the iterations go on in the log domain."""
    C, a, b, _ = _problem(20, 25, seed=1)
    C = C * (10.0 / float(C.max()))
    solver = Sinkhorn(eps=2.5e-3, tol=1e-8, max_iter=20000)
    with pytest.warns(RuntimeWarning, match="stalled"):  # a hard instance: both paths say so, neither lies
        res = solver(LinearProblem(DenseCost(C), a, b))
    with pytest.warns(RuntimeWarning, match="stalled"):
        ref = solver(LinearProblem(_TorchOnly(C), a, b))
    assert res.convergence.status == ref.convergence.status == ("stalled",)
    torch.testing.assert_close(res.value, ref.value, atol=0, rtol=1e-4)  # two stalled runs: near, not equal
    P = res.plan
    err = (P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum()
    assert float(err) <= float(res.convergence.error) * 1.01 + 1e-14


def test_not_taken_for_batches_float32_or_gradients():
    C, a, b, _ = _problem(6, 6)
    assert DenseCost(C.float()).scaling_loop(0.1) is None
    assert DenseCost(C.expand(6, 6, 6).contiguous()).scaling_loop(0.1) is None  # B = n = m: batched path
    Cg = C.clone().requires_grad_()
    res = monge.solve(Cg, a, b, eps=0.1)  # envelope gradients still flow to C
    res.value.backward()
    torch.testing.assert_close(Cg.grad, res.plan.detach(), atol=1e-10, rtol=1e-8)
    batched = monge.solve(C.expand(6, 6, 6), a.expand(6, 6), b.expand(6, 6), eps=0.1)
    torch.testing.assert_close(batched.value, monge.solve(C, a, b, eps=0.1).value.expand(6), atol=1e-10, rtol=0)


def test_compiled_run_rejects_mismatched_shapes():
    from monge import _core

    K = torch.ones(3, 4, dtype=F64).numpy()
    z3, z4 = torch.zeros(3, dtype=F64).numpy(), torch.zeros(4, dtype=F64).numpy()
    with pytest.raises(ValueError, match="lwa, f, Sg must have n entries"):
        _core.sinkhorn_kernel_run(K, 0.0, 0.1, z4, z4, z3, z4, z3, 1.0, 1.0, 1.0, 2, z3, z4, 1.0, 1.0)


@pytest.mark.parametrize("factor", [0.5, 0.6])
@pytest.mark.parametrize("rho", [None, 0.4])
def test_stages_in_one_call_equal_a_kernel_per_stage_and_torch(factor, rho):
    """eps-scaling's stages in one compiled call (factor 0.5: each kernel the square of the previous one) against a
    Gibbs kernel per stage and against the torch stages: the same potentials up to rounding."""
    from monge.solvers import _sinkhorn_compiled as sc
    from monge.solvers.schedules import EpsScaling
    from monge.solvers.sinkhorn import SinkhornData

    C, a, b, _ = _problem(13, 9, seed=3)
    prob = LinearProblem(DenseCost(C), a, b, rho_a=rho, rho_b=rho)
    data = SinkhornData.of(prob)
    temps = EpsScaling(factor).temperatures(0.02, float(C.max()))[:-1]
    f0, g0 = torch.zeros(13, dtype=F64), torch.zeros(9, dtype=F64)
    stages = sc.CompiledStages.of(prob.geom, data, f0, 0.02)
    one = stages.run_all(f0, g0, temps, 2)
    stages.ONE_CALL_MAX_ENTRIES = 0  # (instance attribute: this object only)
    per = stages.run_all(f0, g0, temps, 2)
    f, g = f0, g0
    for e in temps:
        for _ in range(2):
            f = data.f_update(prob.geom, g, e)[0]
            g = data.g_update(prob.geom, f, e)
    assert one[2] == per[2] == len(temps) > 3
    for u, v, w in zip(one[:2], per[:2], (f, g)):
        torch.testing.assert_close(u, v, atol=1e-12, rtol=0)
        torch.testing.assert_close(u, w, atol=1e-12, rtol=0)


def test_stages_in_one_call_stop_where_a_sum_underflows():
    """A stage whose sums underflow (costs / eps beyond e^-745) is not run: the call returns the potentials before
    it and how many stages it ran; the solver finishes those stages in torch and still converges."""
    from monge import _core

    C, a, b, _ = _problem(8, 8, seed=4)
    C = C * (10.0 / float(C.max()))
    lw = a.log().numpy()
    f, g, k = _core.sinkhorn_small_stages(C.numpy(), torch.tensor([1.0, 0.5, 1e-3, 5e-4], dtype=F64).numpy(), 1,
                                          lw, lw, float("inf"), float("inf"), torch.zeros(8, dtype=F64).numpy(),
                                          torch.zeros(8, dtype=F64).numpy())
    assert k == 2 and f.shape == g.shape == (8,)
    with pytest.raises(ValueError, match="temperature"):
        _core.sinkhorn_small_stages(C.numpy(), torch.tensor([1.0, 0.0], dtype=F64).numpy(), 1, lw, lw,
                                    float("inf"), float("inf"), f, g)
    res = monge.solve(C, a, b, eps=2e-2, schedule=monge.solvers.EpsScaling(0.5), tol=1e-9, max_iter=20000)
    assert res.convergence.all_converged
