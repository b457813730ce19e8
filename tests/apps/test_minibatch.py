"""Minibatch OT pairing for flow matching: optimal for exact/auction, batched == looped, sinkhorn near-optimal."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from monge.apps.minibatch import ot_match, ot_pairs


def _cost(x0, x1):
    return ((x0.reshape(len(x0), -1)[:, None] - x1.reshape(len(x1), -1)[None]) ** 2).sum(-1)


@pytest.mark.parametrize("method", ["auto", "exact", "auction"])
def test_pairs_are_optimal(method):
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(40, 3, 2, generator=g, dtype=torch.float64), torch.randn(40, 3, 2, generator=g,
                                                                                 dtype=torch.float64)
    p0, p1 = ot_pairs(x0, x1, method=method)
    assert torch.equal(p0, x0) and p1.shape == x1.shape
    C = _cost(x0, x1).numpy()
    r, c = linear_sum_assignment(C)
    np.testing.assert_allclose(((p0 - p1) ** 2).sum().item(), C[r, c].sum(), rtol=1e-9)
    assert sorted(ot_match(x0, x1, method=method).tolist()) == list(range(40))  # a permutation


def test_batched_equals_looped():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(5, 16, 2, generator=g), torch.randn(5, 16, 2, generator=g)
    s = ot_match(x0, x1, method="auction", batch_dims=1, engine="torch")  # the bidding loop a GPU runs
    assert torch.equal(ot_match(x0, x1, batch_dims=1), ot_match(x0, x1, method="exact", batch_dims=1))  # B = 5 = d + 3
    looped = torch.stack([ot_match(a, b, method="exact") for a, b in zip(x0, x1)])
    costs = torch.stack([_cost(a, b) for a, b in zip(x0, x1)])
    v = costs.gather(-1, s[..., None]).sum((-1, -2))
    vl = costs.gather(-1, looped[..., None]).sum((-1, -2))
    torch.testing.assert_close(v, vl, rtol=1e-4, atol=1e-4)
    _, p1 = ot_pairs(x0, x1, method="auction", batch_dims=1)
    assert torch.equal(p1, torch.stack([b[i] for b, i in zip(x1, s)]))


def test_sinkhorn_pairs_close_to_optimal():
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(50, 2, generator=g, dtype=torch.float64), torch.randn(50, 2, generator=g,
                                                                              dtype=torch.float64)
    s = ot_match(x0, x1, method="sinkhorn", eps_rel=1e-2, generator=torch.Generator().manual_seed(0))
    C = _cost(x0, x1)
    opt = C.numpy()[linear_sum_assignment(C.numpy())].sum()
    rnd = C.diagonal().sum().item()  # an independent pairing
    got = C.gather(1, s[:, None]).sum().item()
    assert got <= opt + 0.2 * (rnd - opt)


def test_errors():
    with pytest.raises(ValueError, match="x0, x1: expected two batches of the same shape"):
        ot_pairs(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="method"):
        ot_pairs(torch.zeros(3, 2), torch.zeros(3, 2), method="emd")
