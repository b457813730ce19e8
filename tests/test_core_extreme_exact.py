"""Exact solvers at extreme cost scales (issue 11, item 7): normalised by a power of two inside the compiled
solvers where the answer is representable; otherwise converged=False, status "diverged" and a warning."""

import warnings

import numpy as np
import pytest
import torch

import monge


def _costs(n, m=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, m or n, generator=g, dtype=torch.float64) + 0.5


def _no_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


def _finite(*ts):
    return all(bool(torch.isfinite(t).all()) for t in ts)


@pytest.mark.parametrize("scale", [1e307, 1e300, 1e-300, 2e-310])
def test_assignment_scale_invariance(scale):
    C = _costs(7)
    ref = monge.assignment(C)
    res = _no_warning(lambda: monge.assignment(C * scale))
    assert res.cols.tolist() == ref.cols.tolist()
    assert bool(res.convergence.converged) and res.convergence.status == ("converged",)
    assert _finite(res.value, res.f, res.g, res.convergence.duality_gap)
    assert float(res.value) == pytest.approx(float(ref.value) * scale, rel=1e-12)
    assert abs(float(res.convergence.duality_gap)) <= 1e-12 * float(res.value)
    # dual feasibility at the caller's scale
    assert bool((res.f[:, None] + res.g[None, :] <= (C * scale) * (1 + 1e-12)).all())


def test_assignment_issue_reproducer():
    """Cost scale 1.7e308 gave a NaN duality gap without a warning."""
    C = torch.tensor([[1.7e308, 1e308], [0.5e308, 1.7e308]], dtype=torch.float64)
    res = _no_warning(lambda: monge.assignment(C))
    assert float(res.value) == 1.5e308 and float(res.convergence.duality_gap) == 0.0 and _finite(res.f, res.g)


def test_assignment_value_beyond_float64_is_diverged():
    C = torch.full((3, 3), 1.7e308, dtype=torch.float64) - torch.eye(3, dtype=torch.float64) * 1e307
    with pytest.warns(RuntimeWarning, match="representable"):
        res = monge.assignment(C)
    assert not bool(res.convergence.converged) and res.convergence.status == ("diverged",)


@pytest.mark.parametrize("scale", [1e308, 1e300, 1e-300, 2e-310])
def test_network_simplex_scale_invariance(scale):
    C = _costs(6, 8, seed=1)
    g = torch.Generator().manual_seed(2)
    a = torch.rand(6, generator=g, dtype=torch.float64)
    b = torch.rand(8, generator=g, dtype=torch.float64)
    a, b = a / a.sum(), b / b.sum()
    ref = monge.solve(C, a, b)
    res = _no_warning(lambda: monge.solve(C * scale, a, b))
    assert bool(res.convergence.converged)
    assert _finite(res.value, res.f, res.g, res.convergence.duality_gap)
    assert float(res.value) == pytest.approx(float(ref.value) * scale, rel=1e-12)
    assert abs(float(res.convergence.duality_gap)) <= 1e-12 * abs(float(res.value))
    torch.testing.assert_close(res.plan, ref.plan, rtol=0, atol=1e-15)


def test_network_simplex_value_beyond_float64_is_diverged():
    C = torch.full((2, 2), 1e308, dtype=torch.float64)
    a = torch.tensor([3.0, 3.0], dtype=torch.float64)  # mass 6: the value is 6e308
    with pytest.warns(RuntimeWarning, match="representable"):
        res = monge.solve(C, a, a)
    assert not bool(res.convergence.converged) and res.convergence.status == ("diverged",)


def test_batch_mixes_extreme_and_ordinary_problems():
    C = torch.stack([_costs(5), _costs(5, seed=3) * 1e305, torch.full((5, 5), 1e308, dtype=torch.float64)])
    a = torch.tensor([[0.2] * 5, [0.2] * 5, [2.0] * 5], dtype=torch.float64)  # the last: value 1e309
    with pytest.warns(RuntimeWarning, match="1 of 3"):
        res = monge.solve(C, a, a)
    assert res.convergence.converged.tolist() == [True, True, False]
    assert res.convergence.status == ("converged", "converged", "diverged")
    assert _finite(res.value[:2], res.f[:2], res.g[:2])


def test_points_near_1e300_never_silently_wrong():
    """Exact solve_points of points near 1e300 gave an inf value, NaN duals and converged=True."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 2, generator=g, dtype=torch.float64) * 1e300
    y = torch.rand(4, 2, generator=g, dtype=torch.float64) * 1e300
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = monge.solve_points(x, y)
    if bool(res.convergence.converged):  # a normalised solve: then the answer must be finite
        assert _finite(res.value, res.f, res.g)
    else:
        assert res.convergence.status == ("diverged",)
        assert any(issubclass(w.category, RuntimeWarning) for w in rec)


def test_ordinary_scales_unchanged():
    """Costs within 2^+-500 are solved as given (no rescaling, bitwise the same duals as the core)."""
    from monge import _core

    C = _costs(6).numpy()
    a = np.full(6, 1 / 6)
    single = _core.network_simplex(a, a, C, 0)
    ints, flts = _core.network_simplex_batch(a[None], a[None], C[None], 0, 1, False)
    np.testing.assert_array_equal(flts[0, 11:17], single[3])
