"""monge.apps.generative.train: short toy trainings that must work, determinism, checkpoints, failure reporting."""

from __future__ import annotations

import warnings

import pytest
import torch

from monge.apps.generative import (
    MKE,
    WGANGP,
    GaussianMixtureGenerator,
    LearnedCost,
    MLPGenerator,
    build_model,
    held_out_w2,
    load_toy,
    train,
)
from monge.nn.generators import MLP
from monge.nn import MMDLoss, SinkhornLoss


def _untrained_and_trained(name, steps, **kw):
    ds = load_toy("moons", 1000, 300, seed=0)
    model, s = build_model(name, ds, seed=0, steps=steps, batch_size=128, **kw)
    w2 = held_out_w2(ds.test)
    before = w2(model.generator)["w2_test"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # loose training tolerances of the inner Sinkhorn
        res = train(model, ds.train, steps=s["steps"], batch_size=s["batch_size"], seed=0, device="cpu",
                    eval_fn=w2, eval_every=steps)
    return before, res


@pytest.mark.parametrize("name,steps,kw", [
    ("sinkhorn", 60, {"blur": 0.05}),
    ("sinkhorn", 30, {"blur": 0.05, "grad": "unroll"}),
    ("learned-cost", 30, {"blur": 0.1, "lr_features": 5e-5}),
    ("wgan-gp", 100, {"lr": 5e-4, "n_critic": 10}),
])
def test_short_toy_training_reduces_held_out_w2(name, steps, kw):
    before, res = _untrained_and_trained(name, steps, **kw)
    after = res.history["w2_test"][-1]
    assert res.status == "finished" and res.steps == steps
    assert after < 0.5 * before, (before, after)


def _params(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


@pytest.mark.parametrize("name", ["sinkhorn", "wgan-gp"])
def test_determinism_under_a_seed(name):
    ds = load_toy("rings", 300, 100, seed=0)
    runs = []
    for _ in range(2):
        model, _ = build_model(name, ds, seed=3, steps=15)
        res = train(model, ds.train, steps=15, batch_size=64, seed=7, device="cpu", log_every=1)
        runs.append((_params(model.generator), res.history["loss"]))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    model, _ = build_model(name, ds, seed=3, steps=15)
    train(model, ds.train, steps=15, batch_size=64, seed=8, device="cpu")
    assert not torch.equal(_params(model.generator), runs[0][0])  # another seed: another run


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    ds = load_toy("gaussians", 300, 100, seed=0)
    full, _ = build_model("wgan-gp", ds, seed=0)
    train(full, ds.train, steps=12, batch_size=32, seed=1, device="cpu")
    part, _ = build_model("wgan-gp", ds, seed=0)
    ck = tmp_path / "ck.pt"
    res1 = train(part, ds.train, steps=6, batch_size=32, seed=1, device="cpu", checkpoint=ck, log_every=1)
    assert ck.exists() and res1.steps == 6
    fresh, _ = build_model("wgan-gp", ds, seed=99)  # other weights: the checkpoint must overwrite them
    res2 = train(fresh, ds.train, steps=12, batch_size=32, seed=1, device="cpu", checkpoint=ck, resume=True,
                 log_every=1)
    assert res2.steps == 12 and res2.history["step"] == list(range(1, 13))
    torch.testing.assert_close(_params(fresh.generator), _params(full.generator), rtol=0, atol=0)


def test_unrolled_and_envelope_gradients_agree_for_the_generator():
    torch.manual_seed(0)
    gen = MLPGenerator(2, 2, hidden=(8,), output="identity").double()
    y = torch.rand(30, 2, dtype=torch.float64)
    z = torch.randn(30, 2, dtype=torch.float64)
    grads = []
    for grad in ("envelope", "unroll"):
        loss = SinkhornLoss(blur=0.3, grad=grad, tol=1e-12, max_iter=5000)(gen(z), y)
        grads.append(torch.autograd.grad(loss, list(gen.parameters())))
    for ge, gu in zip(*grads):
        torch.testing.assert_close(ge, gu, rtol=1e-6, atol=1e-9)


def test_gaussian_mixture_parameters_are_fitted():
    rng = torch.Generator().manual_seed(0)
    n = 1000
    k = (torch.rand(n, generator=rng) < 0.3).long()  # 30% around (0.2, 0.2), 70% around (0.8, 0.7)
    centres = torch.tensor([[0.8, 0.7], [0.2, 0.2]])
    y = centres[k] + 0.05 * torch.randn(n, 2, generator=rng)
    torch.manual_seed(0)
    gm = GaussianMixtureGenerator(2, 2, init_means=torch.tensor([[0.4, 0.5], [0.6, 0.4]]))
    model = MKE(gm, SinkhornLoss(blur=0.1, tol=1e-3), lr=2e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = train(model, y, steps=150, batch_size=100, seed=0, device="cpu")
    assert res.finished
    order = gm.means.detach()[:, 0].argsort()  # component near x = 0.2 first
    torch.testing.assert_close(gm.means.detach()[order], centres.flip(0), atol=0.05, rtol=0)
    torch.testing.assert_close(gm.proportions.detach()[order], torch.tensor([0.3, 0.7]), atol=0.07, rtol=0)
    # scales: the minibatch bias of the blurred divergence inflates them a little (true 0.05)
    torch.testing.assert_close(gm.log_scales.detach().exp(), torch.full((2, 2), 0.06), atol=0.03, rtol=0)


def test_mmd_loss_also_trains_a_generator():
    ds = load_toy("moons", 500, 200, seed=0)
    torch.manual_seed(0)
    model = MKE(MLPGenerator(4, 2, hidden=(64, 64), output="identity"), MMDLoss(), lr=2e-3)
    w2 = held_out_w2(ds.test)
    before = w2(model.generator)["w2_test"]
    res = train(model, ds.train, steps=150, batch_size=200, seed=0, device="cpu", eval_fn=w2)
    assert res.history["w2_test"][-1] < 0.5 * before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_are_kept(dtype):
    ds = load_toy("rings", 200, 50, seed=0, dtype=dtype)
    torch.manual_seed(0)
    gen = MLPGenerator(2, 2, hidden=(16,), output="identity").to(dtype)
    critic = MLP(2, 1, hidden=(16,)).to(dtype)
    model = WGANGP(gen, critic, n_critic=2)
    res = train(model, ds.train, steps=5, batch_size=32, seed=0, device="cpu", log_every=1)
    assert res.finished and gen.sample(4).dtype == dtype
    lc = LearnedCost(MLPGenerator(2, 2, hidden=(8,), output="identity").to(dtype), MLP(2, 3, (8,)).to(dtype),
                     blur=0.1, tol=1e-3)
    assert train(lc, ds.train, steps=3, batch_size=32, device="cpu").finished


def test_non_finite_loss_stops_with_a_warning():
    ds = load_toy("rings", 100, 50)
    model = MKE(MLPGenerator(2, 2, hidden=(8,), output="identity"), lambda x, y, a=None: (x - y).sum() * float("nan"))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = train(model, ds.train, steps=10, batch_size=16, device="cpu")
    assert res.status == "diverged" and res.steps == 1 and not res.finished


def test_inner_solver_warnings_are_summarised_once():
    ds = load_toy("rings", 100, 50)
    model = MKE(MLPGenerator(2, 2, hidden=(8,), output="identity"), SinkhornLoss(blur=0.01, max_iter=3, scaling=0.9))
    with pytest.warns(RuntimeWarning, match="inner solver warned in 4 of 4 steps") as rec:
        train(model, ds.train, steps=4, batch_size=16, device="cpu")
    assert len([w for w in rec if "inner solver" in str(w.message)]) == 1


def test_bad_arguments():
    ds = load_toy("rings", 100, 50)
    model, _ = build_model("sinkhorn", ds)
    with pytest.raises(ValueError, match="steps"):
        train(model, ds.train, steps=-1)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, ds.train, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="train_data"):
        train(model, ds.train[:, 0], steps=1)
    with pytest.raises(ValueError, match="model"):
        build_model("gan", ds)
    with pytest.raises(ValueError, match="unknown setting"):
        build_model("sinkhorn", ds, blurr=0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        train(model, ds.train, steps=1, lr_schedule="step")


def test_cosine_schedule_decays_every_optimiser():
    ds = load_toy("rings", 100, 50)
    model, _ = build_model("wgan-gp", ds, lr=1e-3)
    train(model, ds.train, steps=10, batch_size=16, device="cpu", lr_schedule="cosine")
    for opt in model.optimizers().values():
        group = opt.param_groups[0]
        assert group["initial_lr"] == 1e-3 and 0 < group["lr"] < 0.03 * 1e-3  # (1 + cos(9 pi / 10)) / 2
