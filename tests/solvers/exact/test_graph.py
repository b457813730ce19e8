"""W1 on graphs as an exact min-cost flow: closed forms, the dense solver, scipy's HiGHS LP, the certificate."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linprog
from scipy.sparse.csgraph import shortest_path

import monge
from monge.solvers.exact.graph import grid_graph, w1_graph


def _weights(rng, n, zeros=0.0):
    a, b = rng.random(n), rng.random(n)
    a[rng.random(n) < zeros] = 0.0
    b[rng.random(n) < zeros] = 0.0
    return a / a.sum(), b / b.sum()


def _random_graph(rng, n, extra):
    tree = np.stack([np.arange(1, n), rng.integers(0, np.arange(1, n))], 1)
    more = rng.integers(0, n, (extra, 2))
    return np.concatenate([tree, more]).astype(np.int64), rng.random(n - 1 + extra) + 0.01


def _highs(edges, lengths, s, directed):
    """The transshipment LP solved by scipy's HiGHS."""
    n, E = s.shape[0], edges.shape[0]
    src, dst, c = (edges[:, 0], edges[:, 1], lengths) if directed else (
        np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]], np.r_[lengths, lengths])
    m = src.shape[0]
    A = sp.coo_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[src, dst], np.r_[np.arange(m), np.arange(m)])),
                      shape=(n, m))
    res = linprog(c, A_eq=A.tocsr(), b_eq=s, bounds=(0, None), method="highs")
    return res.fun if res.status == 0 else None


def _check_certificate(res, edges, lengths, a, b, directed=False):
    u, F = res.potential.numpy(), res.flow.numpy()
    du = u[edges[:, 0]] - u[edges[:, 1]]
    lip = du if directed else np.abs(du)
    assert (lip <= lengths + 1e-12).all()  # 1-Lipschitz along every edge
    carry = np.abs(F) > 1e-12
    assert np.allclose(np.sign(F[carry]) * du[carry], lengths[carry], atol=1e-12)  # tight where flow passes
    assert abs(float(res.value) - float(np.dot(a - b, u))) < 1e-12
    assert abs(float(res.convergence.duality_gap)) < 1e-12
    assert float(res.divergence_error) < 1e-12
    assert res.convergence.status == ("converged",)


def test_path_graph_equals_1d_closed_form():
    rng = np.random.default_rng(0)
    x = np.sort(rng.random(60))
    a, b = _weights(rng, 60, zeros=0.3)
    edges = np.stack([np.arange(59), np.arange(1, 60)], 1)
    lengths = np.diff(x)
    res = w1_graph(edges, lengths, a, b)
    closed = np.sum(np.abs(np.cumsum(a - b)[:-1]) * lengths)  # W1 = int |F_a - F_b|
    assert abs(float(res.value) - closed) < 1e-14
    assert np.allclose(res.flow.numpy(), np.cumsum(a - b)[:-1], atol=1e-14)
    _check_certificate(res, edges, lengths, a, b)


@pytest.mark.parametrize("shape", [(6, 7), (3, 4, 5)])
def test_grid_graph_l1_equals_dense_solver(shape):
    rng = np.random.default_rng(1)
    N = int(np.prod(shape))
    a, b = _weights(rng, N, zeros=0.2)
    edges, lengths = grid_graph(shape)
    res = w1_graph(edges, lengths, a, b)
    pts = np.stack(np.unravel_index(np.arange(N), shape), 1).astype(np.float64)
    C = np.abs(pts[:, None] - pts[None]).sum(-1)
    dense = monge.solve(torch.tensor(C), torch.tensor(a), torch.tensor(b))
    assert abs(float(res.value) - float(dense.value)) <= 1e-12 * float(dense.value)
    _check_certificate(res, edges, lengths, a, b)


@pytest.mark.parametrize("shape, zeros", [((72, 64), 0.0), ((132, 128), 0.5)])
def test_grid_coarse_to_fine_equals_plain_simplex_and_highs(shape, zeros, monkeypatch):
    # grids above 64 x 64 cells are detected and warm-started from the coarse (2x2-summed) optimum, on two
    # levels for 132 x 128 (then 66 x 64, whose half 33 x 32 is odd: the recursion stops); permuting the edges
    # defeats the detection, so the plain BFS-basis simplex solves the same problem (with the cost-scaling
    # start of general graphs switched off)
    from monge.solvers.exact import graph

    rng = np.random.default_rng(5)
    N = int(np.prod(shape))
    a, b = _weights(rng, N, zeros=zeros)
    edges, lengths = grid_graph(shape, spacing=0.5)
    res = w1_graph(edges, lengths, a, b)
    perm = rng.permutation(edges.shape[0])
    with monkeypatch.context() as m:
        m.setattr(graph, "_COST_SCALING_MIN", 10**12)
        plain = w1_graph(edges[perm], lengths[perm], a, b)
    scaled = w1_graph(edges[perm], lengths[perm], a, b)  # the cost-scaling start: the same optimum
    assert abs(float(scaled.value) - float(plain.value)) <= 1e-12 * float(plain.value)
    assert abs(float(res.value) - float(plain.value)) <= 1e-12 * float(plain.value)
    assert int(res.convergence.n_iters) < int(plain.convergence.n_iters)  # the warm start was taken
    _check_certificate(res, edges, lengths, a, b)
    if N < 5000:
        ref = _highs(edges, lengths, a - b, False)
        assert abs(float(res.value) - ref) <= 1e-9 * ref


def test_grid_graph_8_stencil_equals_dense_with_graph_metric():
    rng = np.random.default_rng(2)
    a, b = _weights(rng, 30)
    edges, lengths = grid_graph((5, 6), stencil=8)
    W = sp.coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(30, 30))
    D = shortest_path(W, directed=False)
    dense = monge.solve(torch.tensor(D), torch.tensor(a), torch.tensor(b))
    res = w1_graph(edges, lengths, torch.tensor(a), torch.tensor(b))
    assert abs(float(res.value) - float(dense.value)) <= 1e-12 * float(dense.value)
    assert res.flow.dtype == torch.float64


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("directed", [False, True])
def test_random_graph_equals_highs(seed, directed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 50))
    edges, lengths = _random_graph(rng, n, int(rng.integers(0, 4 * n)))
    if directed:  # a feasible directed instance: both directions of the tree, plus random arcs
        edges = np.concatenate([edges, edges[: n - 1, ::-1]])
        lengths = np.r_[lengths, rng.random(n - 1) + 0.01]
    a, b = _weights(rng, n, zeros=0.3)
    res = w1_graph(edges, lengths, a, b, directed=directed)
    ref = _highs(edges, lengths, a - b, directed)
    assert abs(float(res.value) - ref) <= 1e-9 * max(ref, 1e-12)
    _check_certificate(res, edges, lengths, a, b, directed)


def test_cost_scaling_start_equals_highs_and_the_plain_start():
    # >= 2000 nodes take the cost-scaling start (init 3); parallel edges, zero lengths and self-loops included
    from monge import _core
    from monge.solvers.exact import graph

    rng = np.random.default_rng(11)
    n = graph._COST_SCALING_MIN
    edges, lengths = _random_graph(rng, n, 3 * n)
    edges = np.concatenate([edges, edges[:50], np.array([[7, 7], [8, 8]])])
    lengths = np.r_[lengths, rng.random(50), 0.5, 0.0]
    lengths[rng.random(lengths.size) < 0.05] = 0.0
    a, b = _weights(rng, n, zeros=0.3)
    res = w1_graph(edges, lengths, a, b)
    ref = _highs(edges, lengths, a - b, False)
    assert abs(float(res.value) - ref) <= 1e-9 * ref
    _check_certificate(res, edges, lengths, a, b)
    src, dst, cost = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]], np.r_[lengths, lengths]
    plain = _core.min_cost_flow(src, dst, cost, a - b, graph._spt_prio(edges, lengths, n), 2, 0.0, 0, np.zeros(0))
    assert abs(float(np.dot(cost, plain[0])) - float(res.value)) <= 1e-12 * float(res.value)
    assert int(res.convergence.n_iters) * 10 < plain[3]  # the simplex had little left to do


@pytest.mark.parametrize("eps_final", [0.0, 0.5, 1e-9])
def test_cost_scaling_core_start_on_small_and_unbalanced_graphs(eps_final):
    from monge import _core

    rng = np.random.default_rng(4)
    edges, lengths = _random_graph(rng, 30, 60)
    a, b = _weights(rng, 30, zeros=0.3)
    src, dst, cost = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]], np.r_[lengths, lengths]
    flow, u, status, _, art, _ = _core.min_cost_flow(src, dst, cost, a - b, np.zeros(0), 3, eps_final, 0,
                                                      np.zeros(0))
    ref = _highs(edges, lengths, a - b, False)
    assert status == 0 and art < 1e-15 and abs(float(np.dot(cost, flow)) - ref) <= 1e-9 * ref
    assert (u[src] - u[dst] <= cost + 1e-13).all()
    # two components whose supplies do not balance: no feasible flow, reported through the artificial flow
    e2 = np.array([[0, 1], [2, 3]])
    s2 = np.array([0.5, 0.0, 0.0, -0.5])
    out = _core.min_cost_flow(np.r_[e2[:, 0], e2[:, 1]], np.r_[e2[:, 1], e2[:, 0]], np.ones(4), s2, np.zeros(0), 3,
                              eps_final, 0, np.zeros(0))
    assert out[4] > 0.4
    # an isolated node holding mass (infeasible) and no imbalance at all (a == b) both end
    out = _core.min_cost_flow(np.r_[e2[:, 0], e2[:, 1]], np.r_[e2[:, 1], e2[:, 0]], np.ones(4),
                              np.array([0.5, -0.5, 0.0, 0.0, 0.25]), np.zeros(0), 3, eps_final, 0, np.zeros(0))
    assert out[4] > 0.2
    out = _core.min_cost_flow(src, dst, cost, np.zeros(30), np.zeros(0), 3, eps_final, 0, np.zeros(0))
    assert out[2] == 0 and np.abs(out[0]).max() == 0.0


def test_scipy_sparse_adjacency_and_torch_inputs():
    rng = np.random.default_rng(3)
    edges, lengths = _random_graph(rng, 40, 80)
    edges, keep = np.unique(np.sort(edges, 1), axis=0, return_index=True)  # a matrix holds one entry per pair
    lengths = lengths[keep]
    edges, lengths = edges[edges[:, 0] != edges[:, 1]], lengths[edges[:, 0] != edges[:, 1]]
    a, b = _weights(rng, 40)
    W = sp.csr_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(40, 40))
    ref = w1_graph(edges, lengths, a, b)
    res = w1_graph(W, None, torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    assert res.value.dtype == torch.float32
    assert abs(float(res.value) - float(ref.value)) < 1e-6
    # W1 is a metric: symmetric, zero on equal inputs
    assert abs(float(w1_graph(edges, lengths, b, a).value) - float(ref.value)) < 1e-12
    assert float(w1_graph(edges, lengths, a, a).value) == 0.0


def test_directed_without_feasible_flow_reports_infeasible():
    edges = np.array([[0, 1], [1, 2]])
    res = w1_graph(edges, np.ones(2), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), directed=True)
    assert res.convergence.status == ("infeasible",)
    assert not res.convergence.all_converged


def test_disconnected_graph_balanced_per_component():
    edges = np.array([[0, 1], [2, 3]])
    a, b = np.array([0.5, 0, 0.5, 0]), np.array([0, 0.5, 0, 0.5])
    res = w1_graph(edges, np.array([1.0, 2.0]), a, b)
    assert abs(float(res.value) - 1.5) < 1e-15 and res.convergence.all_converged


@pytest.mark.parametrize("kwargs, match", [
    (dict(edges=np.array([0, 1])), "edges: expected an integer array"),
    (dict(edges=np.array([[0.0, 1.0]])), "edges: expected an integer array"),
    (dict(lengths=np.ones(3)), r"lengths: expected shape \(E,\) = \(2,\)"),
    (dict(lengths=np.array([1.0, -1.0])), "lengths: expected finite nonnegative"),
    (dict(lengths=None), "lengths: expected"),
    (dict(a=np.array([1.0, 0.0])), "a, b: expected the same number"),
    (dict(b=np.array([0.0, 0.0, 2.0])), "a, b: W1 needs equal masses"),
    (dict(a=np.array([1.5, -0.5, 0.0])), "a: expected finite nonnegative"),
    (dict(edges=np.array([[0, 1], [1, 3]])), r"edges: node ids must lie in \[0, n\)"),
    (dict(max_iter=0), "max_iter: expected a positive int"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    args = dict(edges=np.array([[0, 1], [1, 2]]), lengths=np.ones(2), a=np.array([1.0, 0, 0]),
                b=np.array([0, 0, 1.0]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        w1_graph(args.pop("edges"), args.pop("lengths"), args.pop("a"), args.pop("b"), **args)


def test_grid_graph_shapes_and_errors():
    e, ln = grid_graph((3, 3), stencil=8)
    assert e.shape == (12 + 8, 2) and np.isclose(ln.max(), np.sqrt(2))
    with pytest.raises(ValueError, match="stencil"):
        grid_graph((3, 3, 3), stencil=8)
    with pytest.raises(ValueError, match="shape"):
        grid_graph((0, 3))
