"""1-D exact W_p by sorting: peers (scipy, POT), closed forms, exact LP, gradients, invariants, errors."""

import numpy as np
import ot
import pytest
import scipy.optimize
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from monge.solvers.exact.one_d import quantile_function, wasserstein_1d

T = torch.tensor
F64 = torch.float64


def _instance(rng, n, m, kind):
    x = rng.normal(size=n)
    y = rng.normal(0.5, 2.0, size=m)
    if kind == "ties":
        x, y = np.round(x, 0), np.round(y, 0)
    if kind == "uniform":
        return x, y, None, None
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    if kind == "zeros":
        a[rng.integers(n)] = 0.0 if n > 1 else a[0]
        b[rng.integers(m)] = 0.0 if m > 1 else b[0]
        a, b = a / a.sum(), b / b.sum()
    return x, y, a, b


def _t(v):
    return None if v is None else torch.from_numpy(v)


@pytest.mark.parametrize("kind", ["uniform", "dirichlet", "ties", "zeros"])
def test_against_scipy_and_pot(kind):
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, m = rng.integers(1, 30, size=2)
        x, y, a, b = _instance(rng, n, m, kind)
        w1 = float(wasserstein_1d(_t(x), _t(y), _t(a), _t(b), p=1))
        assert w1 == pytest.approx(scipy.stats.wasserstein_distance(x, y, a, b), rel=1e-9, abs=1e-12)
        for p in (1.0, 1.5, 2.0, 3.0):
            w = float(wasserstein_1d(_t(x), _t(y), _t(a), _t(b), p=p))
            ref = ot.wasserstein_1d(x, y, a, b, p=p) ** (1 / p)  # POT returns W_p^p
            assert w == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_equal_sizes_uniform_fast_path():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=17), rng.normal(size=17)
    for p in (1, 2, 2.5):
        ref = np.mean(np.abs(np.sort(x) - np.sort(y)) ** p) ** (1 / p)
        assert float(wasserstein_1d(T(x), T(y), p=p)) == pytest.approx(ref, rel=1e-12)
        # the general path (explicit uniform weights) agrees
        w = wasserstein_1d(T(x), T(y), torch.full((17,), 1 / 17, dtype=F64), None, p=p)
        assert float(w) == pytest.approx(ref, rel=1e-12)


def test_closed_forms():
    s, t = T([1.5], dtype=F64), T([-2.0], dtype=F64)
    for p in (1, 2, 3.7):
        assert float(wasserstein_1d(s, t, p=p)) == pytest.approx(3.5)
    x = torch.randn(13, dtype=F64, generator=torch.Generator().manual_seed(0))
    a = torch.rand(13, dtype=F64, generator=torch.Generator().manual_seed(1))
    a = a / a.sum()
    for c in (0.3, -2.0):
        assert float(wasserstein_1d(x, x + c, a, a, p=2)) == pytest.approx(abs(c), rel=1e-12)
        assert float(wasserstein_1d(x, x + c, p=1.3)) == pytest.approx(abs(c), rel=1e-12)


def _lp(x, y, a, b, p):
    C = np.abs(x[:, None] - y[None, :]) ** p
    n, m = C.shape
    A = np.vstack([np.kron(np.eye(n), np.ones(m)), np.kron(np.ones(n), np.eye(m))])
    res = scipy.optimize.linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), method="highs")
    return res.fun ** (1 / p)


def test_against_exact_lp():
    rng = np.random.default_rng(2)
    for _ in range(10):
        n, m = rng.integers(1, 8, size=2)
        x, y, a, b = _instance(rng, n, m, "zeros" if n > 1 and m > 1 else "dirichlet")
        for p in (1, 2, 3):
            w = float(wasserstein_1d(_t(x), _t(y), _t(a), _t(b), p=p))
            assert w == pytest.approx(_lp(x, y, a, b, p), rel=1e-7, abs=1e-9)


def test_batched_equals_looped_and_broadcast():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 3, 9, dtype=F64, generator=g), torch.randn(3, 6, dtype=F64, generator=g)
    a = torch.rand(4, 1, 9, dtype=F64, generator=g)
    a = a / a.sum(-1, keepdim=True)
    w = wasserstein_1d(x, y, a, None, p=2)
    assert w.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert float(w[i, j]) == pytest.approx(float(wasserstein_1d(x[i, j], y[j], a[i, 0], p=2)), rel=1e-12)
    wu = wasserstein_1d(x[..., :6], y, p=1)  # uniform, equal sizes, broadcast batch
    assert wu.shape == (4, 3)
    assert float(wu[2, 1]) == pytest.approx(float(wasserstein_1d(x[2, 1, :6], y[1], p=1)), rel=1e-12)


def test_dtype_and_float32():
    rng = np.random.default_rng(4)
    x, y, a, b = _instance(rng, 20, 15, "dirichlet")
    w32 = wasserstein_1d(_t(x).float(), _t(y).float(), _t(a).float(), _t(b).float(), p=2)
    w64 = wasserstein_1d(_t(x), _t(y), _t(a), _t(b), p=2)
    assert w32.dtype == torch.float32 and w64.dtype == F64 and w32.device == w64.device
    assert float(w32) == pytest.approx(float(w64), rel=1e-5)
    assert wasserstein_1d(torch.randn(5), torch.randn(5)).dtype == torch.float32
    assert wasserstein_1d([0, 1, 2], [1, 2, 3], p=1).item() == pytest.approx(1.0)  # array-likes


def test_gradcheck_positions_and_weights():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, dtype=F64, generator=g, requires_grad=True)
    y = torch.randn(2, 4, dtype=F64, generator=g, requires_grad=True)
    a0 = torch.rand(2, 6, dtype=F64, generator=g) + 0.1
    b0 = torch.rand(2, 4, dtype=F64, generator=g) + 0.1
    a0, b0 = a0 / a0.sum(-1, keepdim=True), b0 / b0.sum(-1, keepdim=True)
    for p in (1.0, 2.0, 2.5):
        assert torch.autograd.gradcheck(lambda x, y: wasserstein_1d(x, y, a0, b0, p=p), (x, y))
        assert torch.autograd.gradcheck(lambda x, y: wasserstein_1d(x, y, p=p), (x, y))
    # weights: move along directions that keep each total mass fixed (zero-sum tangents)
    da = torch.randn(2, 6, dtype=F64, generator=g)
    db = torch.randn(2, 4, dtype=F64, generator=g)
    da, db = 0.05 * (da - da.mean(-1, keepdim=True)), 0.05 * (db - db.mean(-1, keepdim=True))
    s = torch.zeros(2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s: wasserstein_1d(x.detach(), y.detach(), a0 + s[0] * da, b0 + s[1] * db, p=2), (s,)
    )


def test_no_nan_gradient_at_zero():
    for p in (1.0, 2.0, 3.0):
        x = torch.tensor([0.0, 1.0, 3.0], dtype=F64, requires_grad=True)
        w = wasserstein_1d(x, x.detach().clone(), p=p)
        w.backward()
        assert float(w.detach()) == 0.0 and torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_quantile_function():
    xs, cws = T([0.0, 1.0, 2.0, 5.0]), T([0.25, 0.25, 0.5, 1.0])  # a zero weight on 1.0
    assert quantile_function(T([0.0, 0.2, 0.25, 0.26, 0.5, 0.7, 1.0, 1.1]), cws, xs).tolist() == [
        0.0, 0.0, 0.0, 2.0, 2.0, 5.0, 5.0, 5.0,
    ]
    with pytest.raises(ValueError, match="cws"):
        quantile_function(T([0.5]), T([1.0]), xs)


floats = st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(floats, floats, floats, st.sampled_from([1.0, 2.0, 3.5]))
def test_metric_properties(u, v, w, p):
    x, y, z = T(u, dtype=F64), T(v, dtype=F64), T(w, dtype=F64)
    dxy, dyx = float(wasserstein_1d(x, y, p=p)), float(wasserstein_1d(y, x, p=p))
    assert dxy >= 0 and dxy == pytest.approx(dyx, rel=1e-9, abs=1e-9)
    assert float(wasserstein_1d(x, x.flip(0), p=p)) == 0.0
    dxz, dzy = float(wasserstein_1d(x, z, p=p)), float(wasserstein_1d(z, y, p=p))
    assert dxy <= dxz + dzy + 1e-9 * (1 + dxz + dzy)


def _errors():
    x, y = T([0.0, 1.0], dtype=F64), T([1.0], dtype=F64)
    return [
        (dict(x=T([0.0, float("nan")], dtype=F64), y=y), ValueError, "x"),
        (dict(x=x, y=T([float("inf")], dtype=F64)), ValueError, "y"),
        (dict(x=x, y=y, a=T([-0.5, 1.5], dtype=F64)), ValueError, "a"),
        (dict(x=x, y=y, a=T([0.5, 0.2, 0.3], dtype=F64)), ValueError, "a"),
        (dict(x=x, y=y, b=T([0.5, 0.5], dtype=F64)), ValueError, "b"),
        (dict(x=T([], dtype=F64), y=y), ValueError, "x"),
        (dict(x=x, y=T(2.0, dtype=F64)), ValueError, "y"),
        (dict(x=x, y=y, p=0.5), ValueError, "p"),
        (dict(x=x, y=y, p="2"), TypeError, "p"),
        (dict(x=x, y=y, a=T([0.5, 0.5], dtype=F64), b=T([2.0], dtype=F64)), ValueError, "mass"),
        (dict(x=x, y=y.float()), TypeError, "dtype"),
        (dict(x=x, y=y, a=T([0.5, 0.5])), TypeError, "dtype"),
        (dict(x=torch.zeros(2, 3, dtype=F64), y=torch.zeros(4, 3, dtype=F64)), ValueError, "broadcast"),
        (dict(x=torch.tensor([1, 2], dtype=torch.int8).to(torch.complex64), y=y), TypeError, "x"),
    ]


@pytest.mark.parametrize("kwargs, exc, word", _errors())
def test_bad_inputs(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        wasserstein_1d(**kwargs)


def test_large_parallel_paths_match_scipy():
    rng = np.random.default_rng(6)
    n, m = 70_000, 66_000  # above the threshold where the two sorts run in threads
    x, y = rng.normal(size=n), rng.normal(1.0, 1.0, size=m)
    a = rng.dirichlet(np.ones(n))
    assert float(wasserstein_1d(T(x), T(y[:n] if m >= n else y), p=1)) > 0
    assert float(wasserstein_1d(T(x), T(y), p=1)) == pytest.approx(scipy.stats.wasserstein_distance(x, y), rel=1e-9)
    assert float(wasserstein_1d(T(x), T(x[::-1].copy() + 0.5), p=1)) == pytest.approx(0.5, rel=1e-9)
    w = float(wasserstein_1d(T(x), T(y), T(a), p=1))
    assert w == pytest.approx(scipy.stats.wasserstein_distance(x, y, a), rel=1e-9)
    xg = T(x).requires_grad_(True)  # the gradient path (argsort + gather) gives the same value
    assert float(wasserstein_1d(xg, T(y), T(a), p=1).detach()) == pytest.approx(w, rel=1e-12)
    with torch.no_grad():  # the worker thread follows the caller's grad mode
        assert not wasserstein_1d(xg, T(y).requires_grad_(True), T(a), p=1).requires_grad


def test_unnormalised_equal_masses():
    x, y = T([0.0, 1.0], dtype=F64), T([2.0], dtype=F64)
    # a measure of total mass M: W_p^p scales with M
    assert float(wasserstein_1d(x, y, T([1.0, 1.0], dtype=F64), T([2.0], dtype=F64), p=1)) == pytest.approx(3.0)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_extreme_scales_are_normalised_per_problem(p):
    """Issue 11 item 7: samples near 1e154-1e300 (|x - y|^p overflows) or 1e-300 (underflows) give the representable
    W_p, not inf or 0; a batch mixing scales keeps every problem right (the scale is per problem)."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(4, 6, dtype=F64, generator=g), torch.rand(4, 5, dtype=F64, generator=g)
    a = torch.softmax(torch.randn(4, 6, dtype=F64, generator=g), -1)
    s = torch.tensor([[1.0], [1e154], [1e300], [1e-300]], dtype=F64)
    ref = wasserstein_1d(x, y, a, p=p)
    out = wasserstein_1d(x * s, y * s, a, p=p)
    assert bool(torch.isfinite(out).all()) and bool((out > 0).all())
    torch.testing.assert_close(out / s[:, 0], ref, rtol=1e-12, atol=0)


def test_a_nan_value_is_never_reported_as_zero():
    from monge.solvers.exact.one_d import _safe_root

    out = _safe_root(T([float("nan"), 0.0, 4.0], dtype=F64), 2.0)
    assert bool(torch.isnan(out[0])) and out[1:].tolist() == [0.0, 2.0]
