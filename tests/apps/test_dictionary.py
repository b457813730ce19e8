"""Wasserstein unmixing and dictionary learning: recovery, certificates, brute force, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

import monge
import monge.data
from monge.apps.dictionary import dictionary_learning, unmix
from monge.divergences import sinkhorn_divergence_hist
from monge.geometry import DenseCost, Grid

F64 = torch.float64


def _bumps(n=30, width=0.15, centres=(0.2, 0.5, 0.8), dtype=F64):
    x = torch.arange(n, dtype=dtype) / n
    return x, torch.stack([torch.softmax(-((x - c) / width) ** 2, 0) for c in centres])


def _line_geom(x):
    return DenseCost((x[:, None] - x[None, :]) ** 2, symmetric=True)


def test_unmix_recovers_planted_weights_batched():
    x, atoms = _bumps()
    lam = torch.tensor([[0.6, 0.0, 0.4], [0.2, 0.5, 0.3]], dtype=F64)
    res = unmix(lam @ atoms, atoms, _line_geom(x), eps=1e-2)
    assert res.weights.shape == (2, 3)
    torch.testing.assert_close(res.weights, lam, atol=2e-3, rtol=0)
    assert res.convergence.converged.all()
    assert float(res.convergence.error.max()) <= 1e-4  # the Frank-Wolfe gap certificate
    torch.testing.assert_close(res.weights.sum(-1), torch.ones(2, dtype=F64))


def test_unmix_matches_a_brute_force_search_over_the_simplex():
    """An off-model target: the optimum is interior and must beat every point of a fine grid on the simplex."""
    x, atoms = _bumps(n=20)
    geom = _line_geom(x)
    target = torch.softmax(-((x - 0.35) / 0.1) ** 2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = unmix(target, atoms, geom, eps=1e-2, loss="ot")
    step = 0.02
    grid = [(i * step, j * step, 1 - (i + j) * step) for i in range(51) for j in range(51 - i)]
    lam = torch.tensor(grid, dtype=F64).clamp_min(0)
    vals = monge.Sinkhorn(eps=1e-2, tol=1e-9)(monge.LinearProblem(geom, target.expand(len(lam), -1), lam @ atoms)).value
    best = int(vals.argmin())
    assert float(res.value) <= float(vals[best]) + 1e-7
    assert float((res.weights - lam[best]).abs().max()) <= step


def test_unmix_on_a_grid_float32():
    x, atoms = _bumps(n=24, dtype=torch.float32)
    lam = torch.tensor([0.3, 0.3, 0.4])
    res = unmix(lam @ atoms, atoms, Grid((24,)), eps=4e-3)
    assert res.weights.dtype == torch.float32
    torch.testing.assert_close(res.weights, lam, atol=5e-3, rtol=0)


def test_unmix_prior_pulls_towards_lambda0():
    x, atoms = _bumps()
    target = (torch.tensor([0.5, 0.0, 0.5], dtype=F64)) @ atoms
    C0 = torch.tensor([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]], dtype=F64)
    lam0 = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        free = unmix(target, atoms, _line_geom(x), eps=1e-2)
        pulled = unmix(target, atoms, _line_geom(x), eps=1e-2, prior=(lam0, C0, 0.1), alpha=0.5)
    assert float(pulled.weights[1]) > float(free.weights[1]) + 0.1


def test_sinkhorn_divergence_hist_is_zero_on_equal_inputs_and_positive_otherwise():
    x, atoms = _bumps()
    geom = _line_geom(x)
    s = sinkhorn_divergence_hist(atoms, atoms.flip(0), geom, eps=1e-2)
    assert s.shape == (3,)
    assert float(s[1]) < 1e-9 and float(s[0]) > 0.05 and float(s[2]) > 0.05
    torch.testing.assert_close(s[0], s[2])


def _planted(n=30, extra=17, seed=0):
    x, D = _bumps(n=n, width=0.07)
    mix = torch.distributions.Dirichlet(torch.full((3,), 0.5, dtype=F64))
    torch.manual_seed(seed)
    W = torch.cat([torch.eye(3, dtype=F64), mix.sample((extra,))])  # separable: the pure atoms are observed
    return x, D, W @ D


def _atom_errors(x, learned, planted):
    """W_2 from each planted atom to its nearest learned atom (matching by the assignment solver)."""
    M = torch.stack([torch.stack([monge.wasserstein_1d(x, x, u, v, p=2) for v in planted]) for u in learned])
    res = monge.assignment(M)
    return M[torch.arange(len(M)), res.cols]


def test_dictionary_learning_reduces_the_loss_and_approaches_planted_atoms():
    x, D, X = _planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = dictionary_learning(X, 3, Grid((30,), dtype=F64), eps=4e-3, lr=0.1, max_iter=100)
    assert float(res.trace[-1]) < float(res.trace[0]) / 50
    err = _atom_errors(x, res.atoms, D)
    assert float(err.max()) < 0.1  # bumps are 0.3 apart
    torch.testing.assert_close(res.atoms.sum(-1), torch.ones(3, dtype=F64))
    torch.testing.assert_close(res.weights.sum(-1), torch.ones(20, dtype=F64))
    assert res.reconstruction.shape == X.shape
    assert not bool(res.convergence.converged) and res.convergence.status == ("max_iter",)


@pytest.mark.slow
def test_dictionary_learning_recovers_planted_atoms_closely():
    x, D, X = _planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = dictionary_learning(X, 3, Grid((30,), dtype=F64), eps=4e-3, lr=0.1, max_iter=300)
    assert float(_atom_errors(x, res.atoms, D).max()) < 0.03


def test_dictionary_learning_on_digit_images_runs_in_float32():
    imgs, _ = monge.data.digits()
    X = imgs[:12].float() + 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = dictionary_learning(X, 4, Grid((8, 8)), eps=0.01, max_iter=15)
    assert res.atoms.shape == (4, 8, 8) and res.atoms.dtype == torch.float32
    assert float(res.trace[-1]) < float(res.trace[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "l2"}, "loss"),
        ({"mixing": "average"}, "mixing"),
        ({"eps": -1.0}, "eps"),
        ({"alpha": 1.0}, "alpha"),
    ],
)
def test_unmix_errors(kwargs, match):
    x, atoms = _bumps()
    kw = {"eps": 1e-2, **kwargs}
    with pytest.raises(ValueError, match=match):
        unmix(atoms[0], atoms, _line_geom(x), **kw)


def test_input_errors_name_the_argument():
    x, atoms = _bumps()
    geom = _line_geom(x)
    with pytest.raises(ValueError, match="atoms"):
        unmix(atoms[0], atoms[:, :10], geom, eps=1e-2)
    with pytest.raises(ValueError, match="target"):
        unmix(-atoms[0], atoms, geom, eps=1e-2)
    with pytest.raises(ValueError, match="target"):
        unmix(atoms[0, :5], atoms, geom, eps=1e-2)
    with pytest.raises(TypeError, match="geom"):
        unmix(atoms[0], atoms, torch.zeros(30, 30), eps=1e-2)
    with pytest.raises(ValueError, match="n_atoms"):
        dictionary_learning(atoms, 0, geom, eps=1e-2)
    with pytest.raises(ValueError, match="data"):
        dictionary_learning(atoms[0], 2, geom, eps=1e-2)


def test_unmix_with_barycentric_mixing_recovers_weights():
    """Wasserstein barycentric coordinates through the unrolled barycenter: a translated bump between two atoms."""
    from monge.api import barycenter

    geom = Grid((30,), dtype=F64)
    x = torch.arange(30, dtype=F64) / 30
    atoms = torch.stack([torch.softmax(-((x - c) / 0.05) ** 2, 0) for c in (0.2, 0.8)])
    lam = torch.tensor([0.3, 0.7], dtype=F64)
    target = barycenter(atoms, lam, geom=geom, eps=1e-3).barycenter
    res = unmix(target, atoms, geom, eps=1e-3, mixing="barycenter", bary_iter=100)
    torch.testing.assert_close(res.weights, lam, atol=1e-3, rtol=0)
    linear = unmix(target, atoms, geom, eps=1e-3, tol=1.0)  # a linear mixture cannot move mass to the middle
    assert float(linear.value) > 10 * float(res.value) + 1e-6


def test_unmix_with_prior_beats_pot_unmix_on_the_documented_objective():
    """POT's ``ot.bregman.unmix`` states min (1-alpha) W(a, D h) + alpha W0(h0, h) and runs a Bregman heuristic; on
    that objective (entropic costs, as monge's value) monge's certified optimum must be at least as low, for either
    reading of POT's alpha."""
    import numpy as np
    import ot

    x = torch.arange(30, dtype=F64) / 30
    bump = lambda c, w=0.1: torch.softmax(-((x - c) / w) ** 2, 0)  # noqa: E731
    D = torch.stack([bump(0.2), bump(0.5), bump(0.8)])
    a = bump(0.4, 0.15)
    M = (x[:, None] - x[None]) ** 2
    M0 = torch.tensor([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]], dtype=F64)
    h0 = torch.tensor([0.2, 0.6, 0.2], dtype=F64)
    reg, reg0 = 1e-2, 0.1
    solve = monge.Sinkhorn

    def J(h, alpha):
        h = torch.as_tensor(np.asarray(h), dtype=F64)
        fit = solve(eps=reg, tol=1e-10, max_iter=100000)(monge.LinearProblem(DenseCost(M), a, h @ D)).value
        prior = solve(eps=reg0, tol=1e-10, max_iter=100000)(monge.LinearProblem(DenseCost(M0), h0, h)).value
        return float((1 - alpha) * fit + alpha * prior)

    for alpha in (0.01, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = unmix(a, D, DenseCost(M, symmetric=True), eps=reg, loss="ot", prior=(h0, M0, reg0), alpha=alpha,
                         tol=1e-5)
            theirs = [ot.bregman.unmix(a.numpy(), D.T.numpy(), M.numpy(), M0.numpy(), h0.numpy(), reg, reg0, al,
                                       numItermax=100000, stopThr=1e-12) for al in (alpha, 1 - alpha)]
        assert ours.convergence.converged
        best_pot = min(J(h, alpha) for h in theirs)
        assert J(ours.weights, alpha) <= best_pot + 1e-8


def test_unmix_with_barycentric_mixing_runs_with_its_defaults():
    """Issue 11, item 12: the fixed-iteration barycenter it mixes with did not have unit mass (here 0.64 after the
    default 50 iterations at eps = 1e-4), so the fit raised a mass-mismatch error; it is normalised (differentiably)."""
    from monge.api import barycenter

    geom = Grid((30,), dtype=F64)
    x = torch.arange(30, dtype=F64) / 30
    atoms = torch.stack([torch.softmax(-((x - c) / 0.05) ** 2, 0) for c in (0.2, 0.8)])
    lam = torch.tensor([0.3, 0.7], dtype=F64)
    q = barycenter(atoms, lam, geom=geom, eps=1e-4, grad="unroll", tol=0, max_iter=50).barycenter
    assert abs(float(q.sum()) - 1) > 1e-2  # the instance: far from unit mass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the certificate is not the point here
        res = unmix(q / q.sum(), atoms, geom, eps=1e-4, mixing="barycenter")
    assert float(res.mixture.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(res.weights, lam, atol=2e-2, rtol=0)
    assert res.convergence.criterion == "fw_gap"
