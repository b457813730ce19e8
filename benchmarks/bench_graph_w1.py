"""Exact W1 on graphs (min-cost flow) and exact squared-Euclidean grid OT (the (d+1)-partite flow).

Workloads: smooth random images on the 4-neighbour grid graph (exact W1 with the L1 ground cost, w1_graph) and a
random connected graph with random lengths, against scipy's HiGHS LP and networkx on the sizes given by
``--peer-max`` (nodes); and images under the squared Euclidean cost (``--grid-sq``): solve_grid_flow against the
dense network simplex on the N x N cost and the multiscale solver. Wall and CPU (process) seconds are printed.
Usage:
    python benchmarks/bench_graph_w1.py [--grid 128 256 512] [--random 100000:1000000] [--peer-max 70000]
                                        [--grid-sq 32 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from _common import machine
from scipy.ndimage import gaussian_filter
from scipy.optimize import linprog

from monge.solvers.exact.graph import grid_graph, w1_graph


def images(N, seed=0):
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((N, N)), N / 40) ** 4
    b = gaussian_filter(rng.random((N, N)), N / 40) ** 4
    return (a / a.sum()).ravel(), (b / b.sum()).ravel()


def random_graph(n, E, seed=0):
    rng = np.random.default_rng(seed)
    tree = np.stack([np.arange(1, n), rng.integers(0, np.arange(1, n))], 1)
    edges = np.concatenate([tree, rng.integers(0, n, (E - (n - 1), 2))]).astype(np.int64)
    a, b = rng.random(n), rng.random(n)
    return edges, rng.random(E) + 0.01, a / a.sum(), b / b.sum()


def highs(edges, lengths, s):
    n, E = s.shape[0], edges.shape[0]
    src, dst = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]]
    ar = np.arange(2 * E)
    A = sp.csr_matrix((np.r_[np.ones(2 * E), -np.ones(2 * E)], (np.r_[src, dst], np.r_[ar, ar])), shape=(n, 2 * E))
    return linprog(np.r_[lengths, lengths], A_eq=A, b_eq=s, bounds=(0, None), method="highs").fun


def networkx_w1(edges, lengths, s):
    import networkx as nx

    scale = 10**6  # networkx's simplex wants integer demands for exactness
    G = nx.Graph()
    d = np.round(s * scale).astype(np.int64)
    d[np.argmax(np.abs(d))] -= d.sum()
    for v, dv in enumerate(d):
        G.add_node(v, demand=-int(dv))
    for (i, j), w in zip(edges.tolist(), lengths.tolist()):
        G.add_edge(i, j, weight=w)
    return nx.network_simplex(G.to_directed())[0] / scale


def timed(fn, *args, repeat=1):
    """(output, wall seconds, CPU seconds): the best of ``repeat`` runs (each measure its own minimum)."""
    best_t = best_c = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        best_t, best_c = min(best_t, time.perf_counter() - t0), min(best_c, time.process_time() - c0)
    return out, best_t, best_c


def run_sq(N, repeat=1):
    """Exact OT between two N x N images, cost |x - y|^2 between cell centres in [0, 1)^2."""
    import torch

    import monge
    from monge.solvers.exact.grid_flow import solve_grid_flow
    from monge.solvers.exact.multiscale import solve_grid_exact

    a, b = (torch.tensor(v.reshape(N, N)) for v in images(N))
    res, t, c = timed(solve_grid_flow, a, b, repeat=repeat)
    cv = res.convergence
    print(f"grid {N}x{N} squared Euclidean      flow  {t:8.3f} s (cpu {c:7.3f})  value {float(res.value):.12g}  "
          f"pivots {int(cv.n_iters)}  gap {float(cv.duality_gap):.1e}  status {cv.status[0]}", flush=True)
    pts = torch.stack(torch.meshgrid(*[torch.arange(N, dtype=torch.float64) / N] * 2, indexing="ij"), -1)
    C = torch.cdist(pts.reshape(-1, 2), pts.reshape(-1, 2)) ** 2
    peers = (("dense simplex", lambda: monge.solve(C, a.reshape(-1), b.reshape(-1))),
             ("multiscale", lambda: solve_grid_exact(a, b)))
    for pname, fn in peers:
        try:
            ref, tp, cp = timed(fn, repeat=repeat)
        except Exception as err:  # a peer that cannot run here is reported, not fatal
            print(f"{'':<36} {pname:<13} failed: {type(err).__name__}: {err}", flush=True)
            continue
        print(f"{'':<36} {pname:<13} {tp:8.3f} s (cpu {cp:7.3f})  value {float(ref.value):.12g}  ratio wall "
              f"{tp / t:6.2f}x  cpu {cp / c:6.2f}x", flush=True)


def run(name, edges, lengths, a, b, peer):
    res, t, cpu = timed(w1_graph, edges, lengths, a, b)
    c = res.convergence
    print(f"{name:<36} monge {t:8.3f} s (cpu {cpu:7.3f})  W1 {float(res.value):.10g}  status {c.status[0]}  pivots {int(c.n_iters)}  "
          f"gap {float(c.duality_gap):.1e}  lip-viol {float(c.error):.1e}", flush=True)
    if not peer:
        return
    for pname, fn in (("scipy HiGHS", highs), ("networkx", networkx_w1)):
        try:
            v, tp, cp = timed(fn, edges, lengths, a - b)
        except ImportError:
            continue
        print(f"{'':<36} {pname:<11} {tp:8.3f} s (cpu {cp:7.3f})  W1 {v:.10g}  ratio wall {tp / t:6.2f}x  cpu "
              f"{cp / cpu:6.2f}x", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grid", type=int, nargs="*", default=[64, 128, 256, 512])
    p.add_argument("--random", nargs="*", default=["100000:1000000"], help="nodes:edges")
    p.add_argument("--peer-max", type=int, default=20000, help="largest node count the peers are run on")
    p.add_argument("--no-networkx", action="store_true")
    p.add_argument("--grid-sq", type=int, nargs="*", default=[], help="image sizes for squared-Euclidean OT")
    p.add_argument("--repeat", type=int, default=1, help="best of this many runs for --grid-sq (each side)")
    args = p.parse_args()
    if args.no_networkx:
        globals()["networkx_w1"] = lambda *a: (_ for _ in ()).throw(ImportError())
    print(machine())
    for N in args.grid:
        a, b = images(N)
        e, ln = grid_graph((N, N))
        run(f"grid {N}x{N} (4-neighbour, L1)", e, ln, a, b, N * N <= args.peer_max)
    for spec in args.random:
        n, E = (int(float(v)) for v in spec.split(":"))
        e, ln, a, b = random_graph(n, E)
        run(f"random graph n={n} E={E}", e, ln, a, b, n <= args.peer_max)
    for N in args.grid_sq:
        run_sq(N, args.repeat)


if __name__ == "__main__":
    main()
