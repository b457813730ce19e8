"""monge.apps.generative.losses: the W_1 dual and its penalty, the dual estimator against exact W_1, the learned cost."""

from __future__ import annotations

import pytest
import torch

import monge
from monge.apps.generative import LearnedCostLoss, fit_w1_dual, gradient_penalty, toy, w1_dual
from monge.nn.generators import MLP

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_w1_dual_closed_form_and_weights(dtype):
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=dtype)
    y = torch.tensor([[1.0, 1.0]], dtype=dtype)
    u = lambda t: t[:, 0]
    assert float(w1_dual(u, x, y)) == pytest.approx(0.0)
    a = torch.tensor([0.25, 0.75], dtype=dtype)
    out = w1_dual(u, x, y, a=a)
    assert out.dtype == dtype and float(out) == pytest.approx(0.5)  # 0.75 * 2 - 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_penalty_values(dtype):
    x, y = torch.rand(10, 3, dtype=dtype), torch.rand(7, 3, dtype=dtype)
    assert float(gradient_penalty(lambda t: t @ torch.tensor([0.6, 0.8, 0.0], dtype=dtype), x, y)) < 1e-10
    pen = gradient_penalty(lambda t: 2 * t[:, 1], x, y, lam=3.0)  # |grad| = 2: 3 * (2 - 1)^2
    assert pen.dtype == dtype and float(pen) == pytest.approx(3.0)


def test_gradient_penalty_gradcheck_in_critic_parameters():
    torch.manual_seed(0)
    x, y = torch.rand(4, 2, dtype=torch.float64), torch.rand(4, 2, dtype=torch.float64)
    W1 = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(5, dtype=torch.float64, requires_grad=True)

    def penalty(W1, w2):
        critic = lambda t: torch.tanh(t @ W1.T) @ w2
        return gradient_penalty(critic, x, y, generator=torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(penalty, (W1, w2))


def test_w1_dual_gradcheck_in_points():
    W = torch.randn(3, 2, dtype=torch.float64)
    critic = lambda t: torch.tanh(t @ W.T).sum(-1)
    x = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: w1_dual(critic, x, y), (x, y))


@pytest.mark.parametrize("pair", [("moons", "grid"), ("gaussians", "moons")])
def test_fit_w1_dual_within_10_percent_of_exact(pair):
    x, y = toy(pair[0], 200, seed=0, dtype=torch.float64), toy(pair[1], 200, seed=1, dtype=torch.float64)
    exact = float(monge.wasserstein(x, y, p=1))
    est = fit_w1_dual(x.float(), y.float(), steps=500, seed=0)
    assert abs(est.value - exact) <= 0.1 * exact, (est.value, exact)
    assert len(est.history) == 500
    with torch.no_grad():  # the returned critic works in data units
        assert float(w1_dual(est.critic, x.float(), y.float())) == pytest.approx(est.value, rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("include_input", [True, False])
def test_learned_cost_stays_a_valid_cost_under_adversarial_training(dtype, include_input):
    torch.manual_seed(0)
    feats = MLP(2, 4, hidden=(16,)).to(dtype)
    loss = LearnedCostLoss(feats, blur=0.1, include_input=include_input, tol=1e-4)
    opt = torch.optim.Adam(feats.parameters(), lr=1e-2)
    x, y = toy("moons", 64, seed=0, dtype=dtype), toy("rings", 64, seed=1, dtype=dtype)
    with torch.no_grad():
        before = float(loss(x, y))
    for _ in range(15):  # the adversary: ascent on the divergence
        out = -loss(x, y)
        opt.zero_grad()
        out.backward()
        opt.step()
    assert float(loss(x, y)) > before  # the max over phi does increase it
    z = torch.cat([x, y])
    C = loss.cost(z, z).detach()
    assert C.dtype == dtype and bool((C >= 0).all())
    assert float(C.diagonal().abs().max()) <= (1e-5 if dtype == torch.float32 else 1e-12)
    torch.testing.assert_close(C, C.T)
    if include_input:  # a squared metric: distinct points are at positive cost
        off = C + torch.eye(len(z), dtype=dtype) * 1e9
        assert float(off.min()) > 0


def test_learned_cost_gradcheck_in_points():
    torch.manual_seed(0)
    feats = MLP(2, 2, hidden=(4,)).double()
    loss = LearnedCostLoss(feats, blur=0.5, tol=1e-13, max_iter=5000)
    x = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (x,), atol=1e-6, rtol=1e-4)


def test_bad_inputs_name_the_argument():
    u = lambda t: t.sum(-1)
    with pytest.raises(ValueError, match="x, y"):
        w1_dual(u, torch.rand(3, 2), torch.rand(3, 3))
    with pytest.raises(TypeError, match="dtype"):
        w1_dual(u, torch.rand(3, 2), torch.rand(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x"):
        w1_dual(u, torch.rand(3), torch.rand(3, 2))
    with pytest.raises(ValueError, match="lam"):
        gradient_penalty(u, torch.rand(3, 2), torch.rand(3, 2), lam=-1.0)
    with pytest.raises(ValueError, match="steps"):
        fit_w1_dual(torch.rand(3, 2), torch.rand(3, 2), steps=0)
    with pytest.raises(ValueError, match="finite"):
        w1_dual(u, torch.tensor([[float("nan"), 0.0]]), torch.rand(3, 2))
