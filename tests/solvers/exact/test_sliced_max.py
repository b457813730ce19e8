"""Max-sliced Wasserstein: POT's random-projection estimate below it, exact W_p above it, closed forms, gradients."""

import numpy as np
import ot
import pytest
import torch

import monge
from monge.solvers.exact.one_d import wasserstein_1d
from monge.solvers.exact.sliced import max_sliced_direction, max_sliced_wasserstein, sliced_wasserstein

F64 = torch.float64


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("p", [1, 2])
def test_between_pots_estimate_and_exact_wasserstein(seed, p):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 4))
    y = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4)) * 0.7 + 0.3
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    v = float(max_sliced_wasserstein(tx, ty, p=p, n_projections=50, seed=seed))
    pot = ot.max_sliced_wasserstein_distance(x, y, n_projections=50, p=p, seed=seed)
    exact = float(monge.wasserstein(tx, ty, p=p))
    assert pot <= v + 1e-12 <= exact + 1e-9
    assert v >= float(sliced_wasserstein(tx, ty, p=p, n_projections=50, seed=seed))


def test_translation_and_axis_stretch_closed_forms():
    x = torch.randn(80, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1.0, -2.0, 2.0], dtype=F64)
    assert abs(float(max_sliced_wasserstein(x, x + t, p=1, seed=0)) - 3.0) < 1e-8
    th = max_sliced_direction(x, x * torch.tensor([1.0, 1.0, 5.0], dtype=F64), seed=1)
    assert abs(abs(float(th[2])) - 1.0) < 1e-6


def test_exact_direction_one_point_and_one_dimension():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 3, dtype=F64, generator=g) * torch.tensor([1.0, 3.0, 0.5], dtype=F64)
    y = torch.zeros(1, 3, dtype=F64)
    exact = max_sliced_wasserstein(x, y, method="exact")
    ascent = max_sliced_wasserstein(x, y, seed=0)
    assert abs(float(exact) - float(ascent)) < 1e-6
    # the exact value is the largest over many random directions
    th = torch.randn(3, 2000, dtype=F64, generator=g)
    assert float(exact) >= float(((x @ (th / th.norm(dim=0))) ** 2).mean(0).max().sqrt()) - 1e-12
    x1, y1 = torch.randn(9, 1, dtype=F64, generator=g), torch.randn(7, 1, dtype=F64, generator=g)
    torch.testing.assert_close(max_sliced_wasserstein(x1, y1, p=1.5, method="exact"),
                               wasserstein_1d(x1[:, 0], y1[:, 0], p=1.5))


def test_gradients_w_r_t_samples():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 3, dtype=F64, generator=g, requires_grad=True)
    y = torch.zeros(1, 3, dtype=F64)
    assert torch.autograd.gradcheck(lambda u: max_sliced_wasserstein(u, y, method="exact"), (x,))
    # ascent: where the maximum is smooth (one point on a side), Danskin's gradient at the found direction is the
    # exact method's and matches finite differences (at a kink of theta -> W_p the gradient is one active piece's)
    xa = torch.randn(10, 3, dtype=F64, generator=g, requires_grad=True)
    ya = torch.tensor([[0.5, -0.2, 0.1]], dtype=F64)
    (gx,) = torch.autograd.grad(max_sliced_wasserstein(xa, ya, seed=0), xa)
    (ge,) = torch.autograd.grad(max_sliced_wasserstein(xa, ya, method="exact"), xa)
    torch.testing.assert_close(gx, ge, atol=1e-6, rtol=1e-5)
    d = torch.randn(10, 3, dtype=F64, generator=g)
    h = 1e-6
    fd = (max_sliced_wasserstein(xa.detach() + h * d, ya, seed=0)
          - max_sliced_wasserstein(xa.detach() - h * d, ya, seed=0)) / (2 * h)
    assert abs(float(fd) - float((gx * d).sum())) < 1e-5


@pytest.mark.parametrize("B", [3, 7])  # B = d, B = n
def test_batched_equals_looped(B):
    g = torch.Generator().manual_seed(B)
    x = torch.randn(B, 7, 3, dtype=F64, generator=g)
    y = torch.randn(B, 5, 3, dtype=F64, generator=g) * 2.0
    v = max_sliced_wasserstein(x, y, seed=0)
    assert v.shape == (B,)
    looped = torch.stack([max_sliced_wasserstein(x[i], y[i], seed=0) for i in range(B)])
    torch.testing.assert_close(v, looped)


def test_float32_and_weights():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(20, 2, generator=g), torch.randn(15, 2, generator=g) + 1.0
    a = torch.rand(20, generator=g)
    a = a / a.sum()
    v = max_sliced_wasserstein(x, y, a, p=2, seed=0)
    assert v.dtype == torch.float32
    assert float(v) <= float(monge.wasserstein(x.double(), y.double(), a.double() / a.double().sum(), p=2)) + 1e-4


def test_bad_inputs():
    x = torch.rand(5, 2, dtype=F64)
    with pytest.raises(ValueError, match="method"):
        max_sliced_wasserstein(x, x, method="newton")
    with pytest.raises(ValueError, match="closed-form"):
        max_sliced_wasserstein(x, x, method="exact")
    with pytest.raises(ValueError, match="n_starts"):
        max_sliced_wasserstein(x, x, n_starts=0)
    with pytest.raises(ValueError, match="y: expected points"):
        max_sliced_wasserstein(x, torch.rand(5, 3, dtype=F64))
