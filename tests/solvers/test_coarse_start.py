"""The nested coarse start of multiscale point clouds (``Sinkhorn._anneal`` -> ``_coarse_start``): the coarse problem
annealed and solved at the final eps, injected into the points, the fine loop from there with the over-relaxation
carried over. The start changes the path, never the converged result or its certificate."""

import pytest
import torch

import monge
from monge.geometry import PointCloud
from monge.geometry._backends import multiscale_coarse as mc
from monge.problems import LinearProblem
from monge.solvers import sinkhorn as sk
from monge.solvers._loop import Relaxation, WarmOmega, fixed_point
from monge.solvers.schedules import EpsScaling

D = torch.float64


def _clouds(n=1500, m=1200, d=2, seed=0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=dtype), torch.rand(m, d, generator=g, dtype=dtype) * 0.8 + 0.1


def _spy(monkeypatch):
    """Records ``(n, symmetric, applied)`` for every call of the coarse start."""
    calls, orig = [], sk._coarse_start

    def spy(geom, data, *args):
        at = len(calls)
        calls.append(None)  # in call order: a coarse level's own start comes after its parent's
        out = orig(geom, data, *args)
        calls[at] = (geom.shape[0], data.symmetric, out is not None)
        return out

    monkeypatch.setattr(sk, "_coarse_start", spy)
    return calls


def _count(geom):
    """Counts the soft-mins of this geometry (not of its coarse problem's)."""
    calls, orig = [0], geom._impl.softmin

    def counted(*args):
        calls[0] += 1
        return orig(*args)

    geom._impl.softmin = counted
    return calls


def _solve(geom, a=None, b=None, rho=None, eps=2e-3, tol=1e-9, **kw):
    solver = sk.Sinkhorn(eps=eps, tol=tol, schedule=EpsScaling(0.25), **kw)
    return solver(LinearProblem(geom, a, b, rho_a=rho, rho_b=rho))


def test_same_converged_result_as_the_lazy_backend_and_fewer_fine_softmins(monkeypatch):
    x, y = _clouds()
    calls = _spy(monkeypatch)
    geom = PointCloud(x, y, backend="multiscale")
    fine = _count(geom)
    res = _solve(geom, eps=2e-2)  # cells well inside the kernel: the coarse problem is solved at the final eps
    assert calls[0] == (1500, False, True)  # the coarse start ran on the fine problem
    ref = _solve(PointCloud(x, y, backend="lazy"), eps=2e-2)
    assert res.convergence.all_converged and ref.convergence.all_converged
    assert float(res.convergence.error) <= 1e-9  # the certificate is the fine loop's
    torch.testing.assert_close(res.value, ref.value, rtol=1e-9, atol=0)
    shift = float((res.f - ref.f).mean())
    torch.testing.assert_close(res.f - shift, ref.f, rtol=0, atol=1e-7)
    # the same cloud annealed on its own points (no coarse view): more soft-mins on the fine level
    monkeypatch.setattr(PointCloud, "coarse_view", lambda self, wa, wb, eps: None)
    plain_geom = PointCloud(x, y, backend="multiscale")
    plain = _count(plain_geom)
    res_plain = _solve(plain_geom, eps=2e-2)
    torch.testing.assert_close(res_plain.value, ref.value, rtol=1e-9, atol=0)
    assert fine[0] < 0.75 * plain[0], (fine[0], plain[0])



def test_separated_clusters_keep_the_iterations_of_plain_annealing(monkeypatch):
    """20 tight blobs in 10-D: a cell across two blobs would put coarse mass between them, an error between weakly
    coupled blobs that fine iterations remove very slowly (4920 iterations against 10 with the median radius rule);
    the coarse problem stands for the points only where every cell lies inside the kernel."""
    g = torch.Generator().manual_seed(0)
    centres = 0.1 + 0.8 * torch.rand(20, 10, generator=g)  # float32, as a user's embeddings
    x, y = (centres[torch.arange(3000) % 20] + 0.02 * torch.randn(3000, 10, generator=g) for _ in range(2))
    calls = _spy(monkeypatch)
    res = _solve(PointCloud(x, y, backend="multiscale"), eps=5e-3, tol=2e-5)
    ref = _solve(PointCloud(x, y, backend="lazy"), eps=5e-3, tol=2e-5)
    assert calls[0][2] and res.convergence.all_converged and ref.convergence.all_converged
    assert int(res.convergence.n_iters) <= int(ref.convergence.n_iters) + 10, (res.convergence.n_iters,
                                                                              ref.convergence.n_iters)
    torch.testing.assert_close(res.value, ref.value, rtol=1e-5, atol=0)


@pytest.mark.parametrize("eps", [2e-4, 0.5])
def test_eps_far_below_and_far_above_the_cell_scale(eps, monkeypatch):
    x, y = _clouds(1200, 1000, seed=1)
    tree = mc._Tree.of(x, PointCloud(x, y, backend="multiscale")._impl, eps)
    coarse_stages, solve = [], sk._coarse_solve
    monkeypatch.setattr(sk, "_coarse_solve", lambda c, d, st, s: coarse_stages.append(st) or solve(c, d, st, s))
    res = _solve(PointCloud(x, y, backend="multiscale"), eps=eps, tol=1e-8)
    # below the cells' scale the coarse problem stops at its threshold and the last stages run on the points
    assert (coarse_stages[0][-1] > 4 * eps) if eps < 1e-3 else (coarse_stages[0][-1] == eps)
    ref = _solve(PointCloud(x, y, backend="lazy"), eps=eps, tol=1e-8)
    assert res.convergence.all_converged
    torch.testing.assert_close(res.value, ref.value, rtol=1e-8, atol=0)
    cells = 1 << tree.level
    assert (cells >= 1200 // 8) if eps < 1e-3 else (cells <= 1200 // 32)  # fine cells at small eps, coarse at large


def test_kl_marginals_and_non_uniform_weights(monkeypatch):
    x, y = _clouds(1300, 1100, seed=2)
    g = torch.Generator().manual_seed(5)
    a = torch.rand(1300, generator=g, dtype=D) ** 2
    b = torch.rand(1100, generator=g, dtype=D) + 0.1
    a, b = a / a.sum(), 1.3 * b / b.sum()  # unequal masses: only the KL problem is well posed
    calls = _spy(monkeypatch)
    res = _solve(PointCloud(x, y, backend="multiscale"), a, b, rho=0.05)
    ref = _solve(PointCloud(x, y, backend="lazy"), a, b, rho=0.05)
    assert calls[0][2] and res.convergence.all_converged
    torch.testing.assert_close(res.value, ref.value, rtol=1e-9, atol=0)
    torch.testing.assert_close(res.f, ref.f, rtol=0, atol=1e-7)  # unbalanced: the potentials are unique
    bal = _solve(PointCloud(x, y, backend="multiscale"), a, b / 1.3)
    bal_ref = _solve(PointCloud(x, y, backend="lazy"), a, b / 1.3)
    torch.testing.assert_close(bal.value, bal_ref.value, rtol=1e-9, atol=0)


def test_divergence_symmetric_terms_get_the_coarse_start(monkeypatch):
    x, y = _clouds(1100, 1000, d=3, seed=3)
    x.requires_grad_()
    calls = _spy(monkeypatch)
    kw = dict(eps=5e-3, schedule=EpsScaling(0.25), tol=1e-9)
    s = monge.sinkhorn_divergence(x, y, backend="multiscale", **kw)
    (gx,) = torch.autograd.grad(s, x)
    fine = [c[1:] for c in calls if c[0] >= 1000]  # (the coarse levels' own calls: no coarse view, lazy)
    assert fine == [(False, True), (True, True), (True, True)]
    xl = x.detach().clone().requires_grad_()
    s_ref = monge.sinkhorn_divergence(xl, y, backend="lazy", **kw)
    (gl,) = torch.autograd.grad(s_ref, xl)
    torch.testing.assert_close(s, s_ref, rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(gx, gl, rtol=0, atol=1e-9 * float(gl.abs().max()) + 1e-12)


def test_other_costs_and_float32():
    x, y = _clouds(800, 700, seed=4)
    for cost, eps in (("euclidean", 0.03), ("cosine", 2e-3)):  # the torch tiles of the multiscale soft-min
        xs, ys = (x, y) if cost == "euclidean" else (x + 0.05, y + 0.05)  # cosine: away from the origin
        res = _solve(PointCloud(xs, ys, cost=cost, backend="multiscale"), eps=eps, tol=1e-8)
        ref = _solve(PointCloud(xs, ys, cost=cost, backend="lazy"), eps=eps, tol=1e-8)
        assert res.convergence.all_converged, cost
        torch.testing.assert_close(res.value, ref.value, rtol=1e-8, atol=0)
    xf, yf = x.float(), y.float()
    res = _solve(PointCloud(xf, yf, backend="multiscale"), eps=5e-3, tol=2e-5)
    ref = _solve(PointCloud(xf, yf, backend="lazy"), eps=5e-3, tol=2e-5)
    assert res.convergence.all_converged and float(res.convergence.error) <= 2e-5
    torch.testing.assert_close(res.value, ref.value, rtol=1e-5, atol=0)


def test_a_large_coarse_problem_is_itself_multiscale_with_its_own_coarse_start(monkeypatch):
    monkeypatch.setattr(mc, "COARSE_MULTISCALE_MIN", 256)  # a small cloud stands for a large one
    monkeypatch.setattr(mc, "COARSE_MIN_CLUSTERS", 32)
    x, y = _clouds(2000, 1800, seed=6)
    calls = _spy(monkeypatch)
    res = _solve(PointCloud(x, y, backend="multiscale"), eps=1e-3)
    ref = _solve(PointCloud(x, y, backend="lazy"), eps=1e-3)
    # the points, their coarse (multiscale) problem, its own coarse (lazy) problem
    assert [c[2] for c in calls][:3] == [True, True, False] and calls[2][0] < calls[1][0] < calls[0][0]
    assert res.convergence.all_converged
    torch.testing.assert_close(res.value, ref.value, rtol=1e-9, atol=0)


def test_no_coarse_start_for_warm_starts_small_clouds_and_other_backends(monkeypatch):
    calls = _spy(monkeypatch)
    x, y = _clouds(1500, 1200)
    geom = PointCloud(x, y, backend="multiscale")
    warm = _solve(geom)
    sk.Sinkhorn(eps=2e-3, tol=1e-9, schedule=EpsScaling(0.25))(LinearProblem(geom), init=(warm.f, warm.g))
    _solve(PointCloud(x[:200], y[:200], backend="multiscale"))  # fewer than COARSE_MIN_CLUSTERS cells
    _solve(PointCloud(x, y, backend="lazy"))
    assert [c[2] for c in calls if c[0] in (1500, 200)] == [True, False, False, False]
    assert PointCloud(x, y, backend="lazy").coarse_view(torch.ones(1500), torch.ones(1200), 1e-3) is None


def test_warm_omega_switches_after_plain_iterations_and_keeps_its_safety_net():
    # a linear fixed point x <- M x + c whose slow mode (rate 0.95) over-relaxation removes
    M = torch.diag(torch.tensor([0.95, 0.5, 0.1], dtype=D))
    c = torch.tensor([1.0, 1.0, 1.0], dtype=D)
    sol = torch.linalg.solve(torch.eye(3, dtype=D) - M, c)
    run = lambda omega: fixed_point(lambda s, w: s + w * (M @ s + c - s), lambda s: (s - sol).abs().sum(),  # noqa
                                    torch.zeros(3, dtype=D), tol=1e-10, max_iter=2000, omega=omega, quiet=True)
    plain, warm = run(1.0), run(WarmOmega(1.6))
    assert warm.convergence.all_converged and warm.n_iters < 0.75 * plain.n_iters
    relax = Relaxation(WarmOmega(1.7), 10)
    assert relax.omega == 1.0 and relax.wants_probe(25)  # plain, probing, until the first check after them
    too_much = run(WarmOmega(3.0))  # capped at 1.8 and restored/halved if it blows up: still converges
    assert too_much.convergence.all_converged
