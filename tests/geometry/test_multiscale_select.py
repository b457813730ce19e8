"""The tree walk that selects the multiscale soft-min's blocks, against a plain Python walk and brute force: same
kept leaves and dropped sums, dropped sums that bound the exact dropped mass, every leaf pair that matters kept;
leaf-size edge cases, a symmetric cloud, d = 10 and the dense (lazy) fallback."""

import math

import pytest
import torch

from monge.geometry._backends import multiscale as ms
from monge.geometry._backends import multiscale_select as S
from monge.geometry._backends.clustering import Clusters
from monge.geometry._backends.lazy import lazy_softmin
from monge.geometry._backends.multiscale import MultiscaleSoftmin
from monge.geometry.costs import Cosine, Euclidean, SqEuclidean

D = torch.float64
RTOL = 1e-6


def _phi(kind, t2):
    k, p = kind
    return p * t2 if k == 0 else (t2 ** (0.5 * p) if k == 1 else min(0.5 * t2, 2.0))


def _low_up(boxes, a, b, kind):
    (rlo, rhi), (clo, chi) = boxes
    g = torch.stack([torch.zeros_like(rlo[a]), clo[b] - rhi[a], rlo[a] - chi[b]]).amax(0)
    f = torch.maximum(chi[b] - rlo[a], rhi[a] - clo[b])
    return _phi(kind, float((g * g).sum())), _phi(kind, float((f * f).sum()))


def _walk(boxes, L, Kr, Kc, I, est, eps, log_tau, kind):
    """The reference walk: kept leaves and the dropped terms (v, including est / eps) of row leaf I."""
    kept, terms, stack = [], [], [1]
    while stack:
        J = stack.pop()
        if L[J] == -math.inf:
            continue
        v = (float(L[J]) - _low_up(boxes, Kr + I, J, kind)[0] + est) / eps
        if v < log_tau:
            terms.append(v)
        elif J >= Kc:
            kept.append(J - Kc)
        else:
            stack += [2 * J + 1, 2 * J]
    return kept, terms


def _rigorous(boxes, L, Kr, Kc, I, kind):
    best, J = _low_up(boxes, Kr + I, 1, kind)[1] - float(L[1]), 1
    while J < Kc:
        b = [_low_up(boxes, Kr + I, 2 * J + c, kind) for c in (0, 1)]
        v = [b[c][1] - float(L[2 * J + c]) for c in (0, 1)]
        J = 2 * J + (1 if b[1][0] - float(L[2 * J + 1]) < b[0][0] - float(L[2 * J]) else 0)
        best = min(best, *v)
    return best


def _setup(n, m, d, leaf, seed, cost=SqEuclidean(), clustered=False):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, d, generator=g, dtype=D), torch.rand(m, d, generator=g, dtype=D)
    if clustered:
        x, y = (0.1 * t + (torch.rand(t.shape[0], 1, generator=g, dtype=D) > 0.5) for t in (x, y))
    h = 0.05 * torch.randn(m, generator=g, dtype=D)
    X, Y = Clusters(x, leaf), Clusters(y, leaf)
    pts = (x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)) if isinstance(cost, Cosine) else (x, y)
    boxes = (S.heap_boxes(X, pts[0]), S.heap_boxes(Y, pts[1]))
    return x, y, h, X, Y, boxes


@pytest.mark.parametrize("d, cost, clustered", [(2, SqEuclidean(), False), (3, SqEuclidean(0.5), True),
                                                (3, Euclidean(1.5), False), (4, Cosine(), False)])
def test_select_equals_the_reference_walk_and_bounds_the_dropped_mass(d, cost, clustered):
    x, y, h, X, Y, boxes = _setup(300, 250, d, 8, d, cost, clustered)
    kind, eps = S.cost_kind(cost), 0.01
    L = S.node_lse(Y.pad(h, -math.inf), eps)
    est = torch.full((X.K,), math.nan, dtype=D)
    est[::3] = 0.05  # a caller's estimate on some rows, the rigorous bound elsewhere
    ptr, cols, logD = S.select(boxes, L, est, eps, RTOL, kind, 10**9, 2)
    assert ptr.dtype == torch.int64 and cols.dtype == torch.int32 and ptr[-1] == cols.shape[0]
    C = cost(x, y)
    leaf_x, leaf_y = X.leaf, Y.leaf
    log_tau, budget = math.log(RTOL * S.TAU), math.log(RTOL / 2)
    for I in range(X.K):
        e = _rigorous(boxes, L, X.K, Y.K, I, kind)
        e = e if math.isnan(est[I]) else min(e, float(est[I]))
        lt = log_tau
        for r in range(6):  # the walk's retries with a smaller tau
            kept, terms = _walk(boxes, L, X.K, Y.K, I, e, eps, lt, kind)
            s = torch.logsumexp(torch.tensor(terms + [-math.inf], dtype=D), 0)
            if s <= budget or lt == -math.inf:
                break
            lt = lt - math.log(32) if r + 1 < 5 else -math.inf
        assert cols[ptr[I]:ptr[I + 1]].tolist() == kept
        assert torch.allclose(logD[I], s - e / eps, rtol=1e-12, atol=1e-9)
        # brute force: the exact dropped mass of each point of I is below D_I, and every leaf whose own term
        # reaches the budget is kept
        dropped_cols = ~torch.isin(leaf_y, torch.tensor(kept, dtype=torch.long))
        rows = leaf_x == I
        mass = torch.logsumexp(torch.where(dropped_cols[None], (h[None] - C[rows]) / eps, -math.inf), 1)
        assert bool((mass <= logD[I] + 1e-9).all())
        for J in range(Y.K):
            if J not in kept:
                lo = _low_up(boxes, X.K + I, Y.K + J, kind)[0]
                assert (float(L[Y.K + J]) - lo + e) / eps < budget + 1e-9


def test_dropped_bounds_the_list_at_moved_potentials_and_select_stops_above_max_kept():
    x, y, h, X, Y, boxes = _setup(400, 300, 2, 16, 5)
    kind, eps = S.cost_kind(SqEuclidean()), 0.005
    L = S.node_lse(Y.pad(h, -math.inf), eps)
    ptr, cols, logD = S.select(boxes, L, torch.full((X.K,), math.nan, dtype=D), eps, RTOL, kind, 10**9, 1)
    assert S.select(boxes, L, torch.full((X.K,), math.nan, dtype=D), eps, RTOL, kind, cols.shape[0] - 1, 1) is None
    same = S.dropped(boxes, L, torch.zeros(X.K, dtype=D), eps, RTOL, kind, ptr, cols, 2)
    h2 = h + 0.3 * (y[:, 0] > 0.7).to(D)  # the potentials move: the list's dropped mass grows
    L2 = S.node_lse(Y.pad(h2, -math.inf), eps)
    moved = S.dropped(boxes, L2, torch.zeros(X.K, dtype=D), eps, RTOL, kind, ptr, cols, 1)
    C = SqEuclidean()(x, y)
    for I in range(X.K):
        keep = torch.isin(Y.leaf, cols[ptr[I]:ptr[I + 1]].long())
        for hh, bound in ((h, same[I]), (h2, moved[I])):
            mass = torch.logsumexp(torch.where(~keep[None], (hh[None] - C[X.leaf == I]) / eps, -math.inf), 1)
            assert bool((mass <= bound + 1e-9).all())
    assert float(moved.max()) > float(logD.max())


@pytest.mark.parametrize("n, leaf", [(5, 16), (37, 16), (1000, 32), (1001, 24)])
def test_leaf_sizes_not_dividing_n_equal_lazy(n, leaf, monkeypatch):
    monkeypatch.setattr(ms, "DENSE_FRACTION", math.inf)
    g = torch.Generator().manual_seed(n)
    x, y = torch.rand(n, 3, generator=g, dtype=D), torch.rand(n + 3, 3, generator=g, dtype=D)
    h = 0.1 * torch.randn(n + 3, generator=g, dtype=D)
    red = MultiscaleSoftmin(SqEuclidean(), x, y, leaf_size=leaf)
    for dim, hh in ((1, h), (0, h[:n])):
        out = red.softmin(x, y, hh, 0.002, dim)
        assert (out - lazy_softmin(x, y, hh, 0.002, dim, SqEuclidean())).abs().max() <= 0.002 * 1e-12 + 1e-12


@pytest.mark.parametrize("cost", [SqEuclidean(), Euclidean(1.0), Cosine()])
def test_symmetric_cloud_equals_lazy(cost, monkeypatch):
    monkeypatch.setattr(ms, "DENSE_FRACTION", math.inf)
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(2), dtype=D) + 0.1
    h = torch.zeros(3000, dtype=D)
    red = MultiscaleSoftmin(cost, x, x, leaf_size=16)
    assert red.sides is None and red.symmetric
    exact = -0.001 * torch.logsumexp(-cost(x, x) / 0.001, 1)  # the same rounding of the cost as the tiles
    for dim in (0, 1):
        out = red.softmin(x, x, h, 0.001, dim)
        assert (out - exact).abs().max() <= 0.001 * 1e-12 + 1e-13
    assert red.stats["kept_fraction"] < 0.9


def test_d10_uniform_falls_back_to_lazy_and_clustered_keeps_blocks():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(600, 10, generator=g, dtype=D), torch.rand(500, 10, generator=g, dtype=D)
    xg = x.clone().requires_grad_()
    red = MultiscaleSoftmin(SqEuclidean(), x, y, leaf_size=16)
    h = torch.zeros(500, dtype=D)
    out = red.softmin(xg, y, h, 0.05, 1)
    ref = lazy_softmin(xg, y, h, 0.05, 1, SqEuclidean())
    assert red.stats["dense_calls"] == 1 and torch.equal(out, ref) and red._lists[1].retry
    w = torch.rand(600, generator=g, dtype=D)
    assert torch.allclose(*(torch.autograd.grad((o * w).sum(), xg)[0] for o in (out, ref)))
    red.softmin(x, y, h, 0.05, 1)  # selected again from the first output: still dense, now for good
    assert red.stats["dense_calls"] == 2 and not red._lists[1].retry
    f = torch.zeros(600, dtype=D)
    assert torch.equal(red.softmin(x, y, f, 0.05, 0), lazy_softmin(x, y, f, 0.05, 0, SqEuclidean()))
    centres = torch.rand(20, 10, generator=g, dtype=D)
    xc = (centres[torch.arange(600) % 20] + 0.02 * torch.randn(600, 10, generator=g, dtype=D))
    yc = (centres[torch.arange(500) % 20] + 0.02 * torch.randn(500, 10, generator=g, dtype=D))
    red = MultiscaleSoftmin(SqEuclidean(), xc, yc, leaf_size=16)
    red.softmin(xc, yc, h, 0.004, 1)  # eps-scaling: the next selection starts from this output
    out = red.softmin(xc, yc, h, 0.002, 1)
    assert red.stats["dense_calls"] == 0 and red.stats["kept_fraction"] < 0.2
    assert (out - lazy_softmin(xc, yc, h, 0.002, 1, SqEuclidean())).abs().max() <= 0.002 * 1e-12 + 1e-12
