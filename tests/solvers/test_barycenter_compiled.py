"""The compiled barycenter loop of dense float64 costs (csrc/barycenter_dense.cpp) against the torch log-domain
iterations and POT: same barycenters and certificates up to rounding, symmetric (upper-triangle) and general
kernels, debiased, unbalanced, underflow fallback, gradients, batch sizes colliding with n, and the debiased
barycenter of sharp inputs."""

import warnings

import numpy as np
import ot
import pytest
import torch

import monge.solvers._barycenter_compiled as compiled
from monge import _core
from monge.geometry import DenseCost
from monge.problems.barycenter import BarycenterProblem
from monge.solvers.barycenter import Barycenter

F64 = torch.float64


class _TorchOnly(DenseCost):
    """The same geometry with its own soft-min: the compiled loop steps aside (the reference path)."""

    def softmin(self, h, eps, dim):
        return super().softmin(h, eps, dim)


def _instance(n, m=None, K=3, seed=0, sym=True, zeros=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=F64)
    y = x if sym else torch.rand(m or n, 2, generator=g, dtype=F64)
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    if not sym and C.shape[0] == C.shape[1]:
        C = C + 0.05 * torch.rand(C.shape, generator=g, dtype=F64)  # square but not symmetric
    A = torch.rand(K, n, generator=g, dtype=F64) + 0.05
    if zeros:
        A[min(1, K - 1), : n // 5] = 0.0  # zero weights: f = -inf there
    w = torch.rand(K, generator=g, dtype=F64) + 0.2
    return C, A / A.sum(1, keepdim=True), w / w.sum()


def _both(C, A, w, **kw):
    rho = kw.pop("rho", None)
    solver = Barycenter(**kw)
    fast = solver(BarycenterProblem(DenseCost(C), A, w, rho=rho))
    return fast, solver(BarycenterProblem(_TorchOnly(C), A, w, rho=rho))


def _close(fast, ref, atol=1e-12):
    torch.testing.assert_close(fast.barycenter, ref.barycenter, atol=atol, rtol=1e-9)
    fin = torch.isfinite(ref.f)
    assert torch.equal(fin, torch.isfinite(fast.f))
    torch.testing.assert_close(fast.f[fin], ref.f[fin], atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.g, ref.g, atol=1e-9, rtol=0)
    assert int(fast.convergence.n_iters) == int(ref.convergence.n_iters)  # the same relaxation decisions
    assert fast.convergence.status == ref.convergence.status
    torch.testing.assert_close(fast.convergence.error, ref.convergence.error, atol=1e-13, rtol=1e-3)


@pytest.mark.parametrize("n,m,sym", [(40, None, True), (41, None, False), (30, 23, False), (9, None, True)])
@pytest.mark.parametrize("omega", ["auto", 1.0, 1.4])
def test_compiled_equals_torch(n, m, sym, omega):
    C, A, w = _instance(n, m, sym=sym, zeros=True)
    assert compiled._run is not None
    fast, ref = _both(C, A, w, eps=0.02, tol=1e-11, omega=omega, max_iter=5000)
    assert fast.convergence.all_converged and ref.convergence.all_converged
    _close(fast, ref)
    # the certificate describes the returned barycenter: its couplings' marginals
    rows, cols = fast.marginals
    A_err = (rows - A).abs().sum(-1) + (cols - fast.barycenter).abs().sum(-1)
    assert float(A_err.max()) <= float(fast.convergence.error) * 1.01 + 1e-14


@pytest.mark.parametrize("sym", [True, False])
def test_compiled_debiased_and_unbalanced(sym):
    C, A, w = _instance(36, sym=sym)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the square non-symmetric debiased instance need not converge: both say so
        fast, ref = _both(C, A, w, eps=0.05, tol=1e-10, debias=True, max_iter=800)
    _close(fast, ref, atol=1e-11)
    C, A, w = _instance(36, sym=sym, zeros=True)
    A = A * torch.tensor([[1.0], [1.5], [0.7]], dtype=F64)  # unequal masses: the unbalanced problem
    fast, ref = _both(C, A, w, eps=0.05, tol=1e-10, rho=0.3)
    assert fast.convergence.all_converged  # zero weights under a penalty: no 0 * inf in the certificate
    _close(fast, ref)


def test_compiled_matches_pot():
    C, A, w = _instance(60, zeros=True)
    ref = ot.bregman.barycenter(A.T.numpy(), C.numpy(), 0.02, w.numpy(), method="sinkhorn_log", numItermax=20000,
                                stopThr=1e-15)
    res = Barycenter(eps=0.02, tol=1e-12)(BarycenterProblem(DenseCost(C), A, w))
    assert res.convergence.all_converged
    np.testing.assert_allclose(res.barycenter.numpy(), ref, atol=1e-10 * ref.max())


def test_symmetric_kernel_detection():
    C, _, _ = _instance(20)
    K = torch.exp(-C / 0.1).numpy()
    assert _core.kernel_symmetric(K)
    K2 = K.copy()
    K2[3, 17] = np.nextafter(K2[3, 17], 1.0)  # one ulp off: general kernel
    assert not _core.kernel_symmetric(K2) and not _core.kernel_symmetric(K[:, :19].copy())


def _counting(monkeypatch):
    calls, real = [], compiled._run
    monkeypatch.setattr(compiled, "_run", lambda *a: calls.append(1) or real(*a))
    return calls


def test_declared_symmetric_cost_skips_the_check(monkeypatch):
    C, A, w = _instance(30, seed=5)
    ref = Barycenter(eps=0.05, tol=1e-12)(BarycenterProblem(DenseCost(C), A, w))
    monkeypatch.setattr(compiled, "_symmetric", None)  # DenseCost(symmetric=True) was checked at construction
    res = Barycenter(eps=0.05, tol=1e-12)(BarycenterProblem(DenseCost(C, symmetric=True), A, w))
    torch.testing.assert_close(res.barycenter, ref.barycenter, atol=1e-14, rtol=1e-12)


@pytest.mark.parametrize("K", [4, 5, 8, 9])
def test_histogram_count_colliding_with_n(K, monkeypatch):
    """K = n histograms (K x n blocks whose layout a transposition would not change), K beyond one sweep's group of
    four right-hand sides, and beyond MAX_INPUTS (the torch path: one blocked matrix product is cheaper there)."""
    C, A, w = _instance(K, K=K, seed=K)
    calls = _counting(monkeypatch)
    fast, ref = _both(C, A, w, eps=0.3, tol=1e-11)
    assert fast.convergence.all_converged
    assert bool(calls) == (K <= compiled.MAX_INPUTS)
    _close(fast, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eps large against the spacing: the debiased solve may end at max_iter
        fast, ref = _both(C, A, w, eps=0.3, tol=1e-11, debias=True, max_iter=500)
    _close(fast, ref)


@pytest.mark.parametrize("sym", [True, False])
def test_threaded_passes_equal_one_thread(sym):
    """From 2^21 kernel entries the passes split rows over threads (equal triangle work for a symmetric kernel):
    the same iterates up to rounding for 1, 2 and 3 threads, debiased (R + 1 rows in the second pass)."""
    n = 1460
    C, A, w = _instance(n, sym=sym, seed=7)
    K = torch.exp(-(C - C.min()) / 0.05).contiguous().numpy()
    assert K.size >= 1 << 21 and _core.kernel_symmetric(K) == sym
    z = torch.zeros(3, n, dtype=F64).numpy()
    h = torch.zeros(n, dtype=F64).numpy()
    args = (K, float(C.min()), 0.05, z, z, z, h, h, torch.log(A).numpy(), w.numpy(), A.numpy(), float("inf"), 1.3, 4,
            sym, True)
    outs = [_core.barycenter_kernel_run(*args, n_threads=t) for t in (1, 2, 3)]
    for out in outs[1:]:
        assert out[7] == 4 and out[8]
        for a, b in zip(out[:7], outs[0][:7]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        assert out[9] == pytest.approx(outs[0][9], rel=1e-9)


def test_batched_problem_with_batch_equal_to_n_and_k():
    """A batch of B = K = n problems takes the batched torch path; it equals the compiled single solves."""
    n = 5
    C, A, _ = _instance(n, K=n, seed=3)
    Ab = torch.stack([A.roll(i, 0) for i in range(n)])
    W = torch.softmax(torch.arange(n * n, dtype=F64).reshape(n, n) / 7.0, -1)
    res = Barycenter(eps=0.1, tol=1e-12)(BarycenterProblem(DenseCost(C), Ab, W))
    assert res.barycenter.shape == (n, n) and res.convergence.converged.shape == (n,)
    for i in range(n):
        one = Barycenter(eps=0.1, tol=1e-12)(BarycenterProblem(DenseCost(C), Ab[i], W[i]))
        torch.testing.assert_close(res.barycenter[i], one.barycenter, atol=1e-11, rtol=0)


def test_underflow_falls_back_to_the_log_domain():
    """Costs up to 800 / eps: kernel sums underflow; the loop goes on in the log domain, the same as torch."""
    C, A, w = _instance(30, seed=2)
    C = C * (8.0 / float(C.max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, ref = _both(C, A, w, eps=1e-2, tol=1e-9, max_iter=4000)
    torch.testing.assert_close(fast.barycenter, ref.barycenter, atol=1e-9, rtol=1e-6)
    assert fast.convergence.status == ref.convergence.status


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_float32_iterates_in_float64(scale, monkeypatch):
    """float32 inputs run the compiled float64 loop and come back in float32, within float32's tolerance of the
    float64 barycenter; where kernel sums may underflow (scale 8: costs up to 800 eps) they run the float32 torch loop
    from the start (a fallback midway would switch precision)."""
    C, A, w = _instance(40, seed=4, zeros=True)
    C = C * (scale / float(C.max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Barycenter(eps=1e-2, tol=1e-12, max_iter=20000)(BarycenterProblem(DenseCost(C), A, w))
        calls = _counting(monkeypatch)
        res = Barycenter(eps=1e-2, max_iter=5000)(BarycenterProblem(DenseCost(C.float()), A.float(), w.float()))
    assert bool(calls) == (scale == 1.0)
    assert res.barycenter.dtype == res.f.dtype == res.convergence.error.dtype == torch.float32
    assert res.convergence.status == ref.convergence.status
    assert float((res.barycenter.double() - ref.barycenter).abs().sum()) < 1e-4


def test_gradients_refuse_or_recompute_in_torch(monkeypatch):
    """unroll with inputs that require grad never enters the compiled loop (autograd needs every iteration);
    envelope runs its detached loop compiled and its final step in torch, with the same gradient as the torch path."""
    C, A, w = _instance(12)

    def loss(geom_cls, grad, hists):
        res = Barycenter(eps=0.1, tol=1e-11, grad=grad)(BarycenterProblem(geom_cls(C), hists, w))
        return (res.barycenter * torch.arange(12, dtype=F64)).sum()

    for grad in ("unroll", "envelope"):
        ref_in = A.clone().requires_grad_()
        loss(_TorchOnly, grad, ref_in).backward()
        calls = []
        real = compiled._run
        monkeypatch.setattr(compiled, "_run", lambda *a: calls.append(1) or real(*a))
        fast_in = A.clone().requires_grad_()
        loss(DenseCost, grad, fast_in).backward()
        monkeypatch.setattr(compiled, "_run", real)
        assert (len(calls) > 0) == (grad == "envelope")
        torch.testing.assert_close(fast_in.grad, ref_in.grad, atol=1e-10, rtol=1e-7)


def test_debiased_sharp_inputs_report_sublinear_convergence():
    """Near-Diracs on a 1-D grid (sigma half a cell, sqrt(eps) three cells): the debiased barycenter is a Dirac at the
    midpoint, zero mass elsewhere; the iteration approaches it sublinearly. Reaching max_iter is reported with its
    cause and an estimate of the iterations needed; given them, the solve converges (to the residual tol)."""
    n = 100
    x = torch.linspace(0, 1, n, dtype=F64)
    C = (x[:, None] - x[None]) ** 2
    A = torch.stack([torch.exp(-(x - c) ** 2 / (2 * 0.005**2)) for c in (0.25, 0.75)])
    prob = BarycenterProblem(DenseCost(C), A / A.sum(1, keepdim=True))
    with pytest.warns(RuntimeWarning, match=r"sublinearly .* tol needs about [0-9.e+]+ iterations"):
        res = Barycenter(eps=1e-3, debias=True, max_iter=2000)(prob)
    assert res.convergence.status == ("max_iter",) and not res.convergence.all_converged
    assert float(res.convergence.error) > 1e-7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = Barycenter(eps=1e-3, debias=True, max_iter=30000)(prob)
    assert res.convergence.all_converged
    assert float(res.barycenter[49:51].sum()) > 0.999  # the two cells around 0.5
