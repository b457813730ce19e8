"""Sliced Wasserstein: POT with the same projections, closed forms, determinism, batching, gradients, errors."""

import numpy as np
import ot
import pytest
import torch

from monge.solvers.exact.one_d import wasserstein_1d
from monge.solvers.exact.sliced import sliced_wasserstein

F64 = torch.float64


def _cloud(rng, n, d, shift=0.0):
    return rng.normal(size=(n, d)) + shift


@pytest.mark.parametrize("weighted", [False, True])
def test_against_pot_same_projections(weighted):
    rng = np.random.default_rng(0)
    for _ in range(8):
        n, m, d, L = *rng.integers(1, 25, size=2), int(rng.integers(1, 5)), int(rng.integers(1, 30))
        x, y = _cloud(rng, n, d), _cloud(rng, m, d, 0.7)
        a = rng.dirichlet(np.ones(n)) if weighted else None
        b = rng.dirichlet(np.ones(m)) if weighted else None
        th = rng.normal(size=(d, L))
        th /= np.linalg.norm(th, axis=0)
        for p in (1, 2, 3):
            ref = ot.sliced_wasserstein_distance(x, y, a, b, projections=th, p=p)
            t = lambda v: None if v is None else torch.from_numpy(v)  # noqa: E731
            w = sliced_wasserstein(t(x), t(y), t(a), t(b), p=p, projections=t(th))
            assert float(w) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_closed_forms_and_one_dimension():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, dtype=F64, generator=g)
    assert float(sliced_wasserstein(x, x, seed=0)) == 0.0
    # a permutation of the points: zero up to the rounding of the matrix product
    assert float(sliced_wasserstein(x, x[torch.randperm(40, generator=g)], seed=0)) < 1e-12
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    theta = torch.randn(3, 16, dtype=F64, generator=g)
    theta = theta / theta.norm(dim=0)
    # translation: every projection moves by <theta, c>; SW_2^2 = mean <theta, c>^2
    ref = float(((theta.T @ c) ** 2).mean().sqrt())
    assert float(sliced_wasserstein(x, x + c, projections=theta)) == pytest.approx(ref, rel=1e-12)
    # d = 1 with the direction +1 is the 1-D distance
    u, v = torch.randn(7, 1, dtype=F64, generator=g), torch.randn(5, 1, dtype=F64, generator=g)
    one = torch.ones(1, 1, dtype=F64)
    assert float(sliced_wasserstein(u, v, p=2, projections=one)) == pytest.approx(
        float(wasserstein_1d(u[:, 0], v[:, 0], p=2)), rel=1e-12
    )


def test_seed_determinism_and_directions():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 4, dtype=F64, generator=g), torch.randn(20, 4, dtype=F64, generator=g)
    w1 = sliced_wasserstein(x, y, seed=7, n_projections=32)
    assert float(w1) == float(sliced_wasserstein(x, y, seed=7, n_projections=32))
    assert float(w1) != float(sliced_wasserstein(x, y, seed=8, n_projections=32))
    gen = torch.Generator().manual_seed(7)
    th = torch.randn(4, 32, generator=gen, dtype=F64)
    assert float(w1) == pytest.approx(float(sliced_wasserstein(x, y, projections=th / th.norm(dim=0))), rel=1e-12)


def test_batched_equals_looped_dtype_float32():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(3, 12, 2, dtype=F64, generator=g), torch.randn(3, 9, 2, dtype=F64, generator=g)
    a = torch.rand(3, 12, dtype=F64, generator=g)
    a = a / a.sum(-1, keepdim=True)
    w = sliced_wasserstein(x, y, a, p=2, seed=1)
    assert w.shape == (3,) and w.dtype == F64
    for i in range(3):
        assert float(w[i]) == pytest.approx(float(sliced_wasserstein(x[i], y[i], a[i], p=2, seed=1)), rel=1e-12)
    th = torch.randn(2, 16, dtype=F64, generator=g)
    w = sliced_wasserstein(x, y, a, p=2, projections=th)
    w32 = sliced_wasserstein(x.float(), y.float(), a.float(), p=2, projections=th.float())
    assert w32.dtype == torch.float32 and w32.shape == (3,)
    assert torch.allclose(w32.double(), w, rtol=1e-4)


def test_gradients():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, dtype=F64, generator=g, requires_grad=True)
    y = torch.randn(5, 2, dtype=F64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: sliced_wasserstein(x, y, p=2, n_projections=8, seed=0), (x, y))
    z = x.detach().clone().requires_grad_(True)
    w = sliced_wasserstein(z, z.detach(), seed=0)
    w.backward()
    assert float(w.detach()) == 0.0 and torch.isfinite(z.grad).all()


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(projections=torch.ones(2, 3, dtype=F64)), ValueError, "projections"),
        (dict(projections=torch.ones(3, 0, dtype=F64)), ValueError, "projections"),
        (dict(projections=torch.ones(3, 4)), TypeError, "projections"),
        (dict(n_projections=0), ValueError, "n_projections"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(p=0.9), ValueError, "p"),
        (dict(a=-torch.ones(4, dtype=F64)), ValueError, "a"),
        (dict(b=torch.ones(5, dtype=F64)), ValueError, "mass"),
        (dict(y=torch.zeros(5, 2, dtype=F64)), ValueError, "y"),
        (dict(x=torch.zeros(4, dtype=F64)), ValueError, "x"),
        (dict(x=torch.full((4, 3), float("nan"), dtype=F64)), ValueError, "x"),
        (dict(y=torch.zeros(5, 3)), TypeError, "dtype"),
    ],
)
def test_bad_inputs(kwargs, exc, word):
    args = dict(x=torch.zeros(4, 3, dtype=F64), y=torch.ones(5, 3, dtype=F64))
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        sliced_wasserstein(**args)


def test_extreme_scales_are_normalised_per_problem():
    """Points near 1e300 or 1e-300 give the representable SW_p (1-homogeneous), per problem of a batch."""
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(3, 6, 2, dtype=F64, generator=g), torch.rand(3, 5, 2, dtype=F64, generator=g)
    s = torch.tensor([1.0, 1e300, 1e-300], dtype=F64)[:, None, None]
    for p in (1, 2):
        ref = sliced_wasserstein(x, y, p=p, seed=0)
        out = sliced_wasserstein(x * s, y * s, p=p, seed=0)
        assert bool(torch.isfinite(out).all())
        torch.testing.assert_close(out / s[:, 0, 0], ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kwargs, word", [(dict(n_projections=8), "n_projections"), (dict(seed=1), "seed")])
def test_knobs_ignored_with_given_projections_are_errors(kwargs, word):
    x = torch.zeros(4, 3, dtype=F64)
    with pytest.raises(ValueError, match=f"^{word}: .*ignored"):
        sliced_wasserstein(x, x + 1, projections=torch.eye(3, dtype=F64), **kwargs)
