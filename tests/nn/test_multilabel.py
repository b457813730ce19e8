"""Wasserstein loss for multi-label learning: POT agreement, gradients, batching, training, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pytest
import torch

from monge.data import circle_labels
from monge.nn.multilabel import WassersteinLoss
from monge.solvers.schedules import EpsScaling

DTYPES = [torch.float32, torch.float64]


def circle(L, dtype=torch.float64):
    phi = torch.arange(L, dtype=dtype) * (2 * math.pi / L)
    return torch.stack([phi.cos(), phi.sin()], -1)


def instance(B, L, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, generator=g, dtype=torch.float64).to(dtype)
    target = (torch.rand(B, L, generator=g, dtype=torch.float64) < 0.3).to(dtype)
    target[:, 0] = 1.0  # at least one label per sample; zeros elsewhere are allowed
    return logits, target


def kl(p, q):
    """Generalised KL(p | q) = sum p log(p / q) - p + q (monge's convention)."""
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum() - p.sum() + q.sum())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_equals_pot_sinkhorn_per_sample(dtype, p):
    B, L, eps = 6, 10, 0.1
    E = circle(L, dtype)
    loss = WassersteinLoss(embeddings=E, eps=eps, p=p, reduction="none",
                           tol=1e-11 if dtype == torch.float64 else 1e-5)
    logits, target = instance(B, L, dtype)
    res = loss.solve(logits, target)
    value = loss(logits, target)
    assert value.shape == (B,) and value.dtype == dtype and res.convergence.all_converged
    M = loss.cost.double().numpy()
    tol = {"rel": 1e-8, "abs": 1e-10} if dtype == torch.float64 else {"rel": 1e-4, "abs": 1e-5}
    for i in range(B):
        a = torch.softmax(logits[i].double(), -1).numpy()
        b = target[i].double().numpy()
        b = b / b.sum()
        with np.errstate(divide="ignore"):  # POT takes log(0) of the zero target weights
            transport = ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=100000)
            G = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=100000)
        # POT's sinkhorn2 is <G, M>; monge's value is the regularised objective <P, C> + eps KL(P | a x b)
        assert float(res.transport_cost[i]) == pytest.approx(float(transport), **tol)
        assert float(value[i]) == pytest.approx(float(transport) + eps * kl(G, np.outer(a, b)), **tol)


def test_unbalanced_equals_pot():
    B, L, eps, rho = 4, 8, 0.1, 0.5
    M = torch.cdist(circle(L), circle(L))
    loss = WassersteinLoss(M, eps=eps, rho=rho, p=1, reduction="none", tol=1e-12)
    logits, target = instance(B, L, torch.float64, seed=3)
    target = 2.0 * target + 0.1  # unnormalised multi-label counts (no zeros: POT's kernel loop divides by them)
    res = loss.solve(logits, target)
    for i in range(B):
        a, b = torch.exp(logits[i]).numpy(), target[i].numpy()
        G = ot.unbalanced.sinkhorn_unbalanced(a, b, M.numpy(), eps, rho, reg_type="kl", stopThr=1e-14,
                                              numItermax=100000)
        assert np.allclose(res.plan[i].numpy(), G, atol=1e-9)
        primal = (G * M.numpy()).sum() + eps * kl(G, np.outer(a, b)) + rho * kl(G.sum(1), a) + rho * kl(G.sum(0), b)
        assert float(res.value[i]) == pytest.approx(primal, rel=1e-9)


def test_gradcheck_envelope_and_unroll():
    logits, target = instance(2, 4, torch.float64, seed=1)
    E = circle(4) + 0.1 * torch.randn(4, 2, dtype=torch.float64)
    for grad in ("envelope", "unroll"):
        loss = WassersteinLoss(embeddings=E, eps=0.5, p=2, grad=grad, tol=1e-14, max_iter=20000)
        z = logits.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda z, loss=loss: loss(z, target), (z,), eps=1e-6, atol=1e-7)
    probs = torch.softmax(logits, -1).requires_grad_()
    loss = WassersteinLoss(embeddings=E, eps=0.5, p=2, from_logits=False, tol=1e-14, max_iter=20000)
    assert torch.autograd.gradcheck(lambda q: loss(q, target), (probs,), eps=1e-6, atol=1e-7)


def test_embedding_gradient_matches_finite_differences():
    logits, target = instance(3, 5, torch.float64, seed=2)
    E = circle(5).requires_grad_()

    def f(E):
        return WassersteinLoss(embeddings=E, eps=0.3, p=2, tol=1e-14, max_iter=20000)(logits, target)

    assert torch.autograd.gradcheck(f, (E,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_equals_looped_and_reductions(dtype):
    logits, target = instance(5, 7, dtype, seed=4)
    M = torch.cdist(circle(7, dtype), circle(7, dtype))
    none = WassersteinLoss(M, eps=0.05, reduction="none")(logits, target)
    for i in range(5):
        one = WassersteinLoss(M, eps=0.05, reduction="none")(logits[i], target[i])
        assert one.shape == () and torch.allclose(one, none[i], rtol=1e-4 if dtype == torch.float32 else 1e-9)
    assert torch.allclose(WassersteinLoss(M, eps=0.05)(logits, target), none.mean())
    assert torch.allclose(WassersteinLoss(M, eps=0.05, reduction="sum")(logits, target), none.sum())


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_eps_is_stable(dtype):
    logits, target = instance(4, 8, dtype, seed=5)
    # eps = 1e-3 against costs up to 2: exp(-C / eps) underflows in any dtype; the log domain stays finite (labels
    # on a circle tie many plans, so Sinkhorn can plateau there: convergence is not what this test checks)
    loss = WassersteinLoss(embeddings=circle(8, dtype), eps=1e-3, schedule=EpsScaling(0.5), max_iter=1000)
    z = logits.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = loss(z, target)
    value.backward()
    assert torch.isfinite(value) and bool(torch.isfinite(z.grad).all())
    wide = WassersteinLoss(embeddings=circle(8, dtype), eps=2e-2)  # the same data converges at a moderate eps
    assert wide.solve(logits, target).convergence.all_converged


def test_non_convergence_is_reported():
    logits, target = instance(3, 6, torch.float64)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        res = WassersteinLoss(embeddings=circle(6), eps=1e-3, max_iter=5).solve(logits, target)
    assert not res.convergence.all_converged


def test_training_is_semantically_smoother_than_bce():
    """Frogner et al.: predictions trained with the Wasserstein loss put mass near the true labels."""
    L = 12
    E = circle(L)
    D = torch.cdist(E, E)
    x, y, _ = circle_labels(128, L, 0)
    xt, yt, _ = circle_labels(500, L, 1)
    wloss = WassersteinLoss(embeddings=E, eps=0.1, p=1, tol=1e-5)
    results = {}
    for kind in ("wasserstein", "bce"):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, L).double()
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        for step in range(60):
            opt.zero_grad()
            z = model(x)
            loss = wloss(z, y) if kind == "wasserstein" else torch.nn.functional.binary_cross_entropy_with_logits(z, y)
            if step == 0:
                first = float(loss.detach())
            loss.backward()
            opt.step()
        assert float(loss.detach()) < 0.8 * first
        with torch.no_grad():
            z = model(xt)
            h = torch.softmax(z, -1) if kind == "wasserstein" else torch.sigmoid(z) / torch.sigmoid(z).sum(-1, True)
            nearest = torch.where(yt[:, None, :] > 0, D[None], torch.full_like(D[None], math.inf)).amin(-1)
            results[kind] = float((h * nearest).sum(-1).mean())  # expected distance to the nearest true label
    assert results["wasserstein"] < 0.85 * results["bce"], results


def test_errors_name_the_argument():
    E = circle(4)
    with pytest.raises(ValueError, match="M, embeddings"):
        WassersteinLoss()
    with pytest.raises(ValueError, match="M"):
        WassersteinLoss(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="embeddings"):
        WassersteinLoss(embeddings=torch.zeros(4))
    with pytest.raises(ValueError, match="eps"):
        WassersteinLoss(embeddings=E, eps=0.0)
    with pytest.raises(ValueError, match="reduction"):
        WassersteinLoss(embeddings=E, reduction="avg")
    with pytest.raises(ValueError, match="grad"):
        WassersteinLoss(embeddings=E, grad="implicit")
    loss = WassersteinLoss(embeddings=E)
    z = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="pred"):
        loss(torch.zeros(2, 5, dtype=torch.float64), z)
    with pytest.raises(ValueError, match="target"):
        loss(z, torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="target"):
        loss(z, -torch.ones(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="target"):
        loss(z, torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="target"):
        loss(z, torch.ones(2, 4))
    with pytest.raises(ValueError, match="pred"):
        WassersteinLoss(embeddings=E, from_logits=False)(-torch.ones(2, 4, dtype=torch.float64), z + 1)
