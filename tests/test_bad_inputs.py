"""The bad-input matrix over the public surface (issue 11): every bad input either raises a ``ValueError`` /
``TypeError`` whose message starts with (or names) the argument the user passed, or gives a finite, correct result.

Each row of ``RAISES`` is ``(id, call, exception, pattern)``; the pattern names the argument (most messages start
with ``"<argument>:"``). Each row of ``CORRECT`` is ``(id, call, reference)``: the call must return a finite
result equal to the reference (a closed form or the same problem at a tame scale). Everything is small: the whole
matrix runs in a few seconds.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import monge
from monge.nn import MMDLoss, SinkhornLoss

F64 = torch.float64
G = torch.Generator().manual_seed(0)
X = torch.rand(5, 2, dtype=F64, generator=G)
Y = torch.rand(4, 2, dtype=F64, generator=G)
C = torch.rand(5, 4, dtype=F64, generator=G)
A = torch.full((5,), 0.2, dtype=F64)
B = torch.full((4,), 0.25, dtype=F64)
H = torch.softmax(torch.randn(3, 6, dtype=F64, generator=G), -1)
CB = torch.rand(6, 6, dtype=F64, generator=G)
NAN, INF = float("nan"), float("inf")
I64 = torch.int64


def u(n, dtype=F64):
    return torch.full((n,), 1.0 / n, dtype=dtype)


# ----------------------------------------------------------------------------------------------------------------
# inputs: dtype, shape, NaN/inf, negative, empty, batch
# ----------------------------------------------------------------------------------------------------------------
INPUTS = [
    ("solve C float16", lambda: monge.solve(C.half()), TypeError, r"^C: .*float16"),
    ("solve C complex", lambda: monge.solve(C.to(torch.complex64)), TypeError, r"^C: .*complex"),
    ("solve C int + a float64", lambda: monge.solve(torch.ones(3, 3, dtype=I64), u(3)), TypeError,
     r"^C: .*int64.*C\.to\(torch\.float64\)"),
    ("solve C bool + a float64", lambda: monge.solve(torch.eye(3, dtype=torch.bool), u(3)), TypeError,
     r"^C: .*torch\.bool.*C\.to\(torch\.float64\)"),
    ("solve C float32 + a float64", lambda: monge.solve(C.float(), A), TypeError, r"^a has dtype torch\.float64"),
    ("solve batch C (2) vs a (3), exact", lambda: monge.solve(torch.rand(2, 5, 4, dtype=F64), torch.full((3, 5), .2,
     dtype=F64)), ValueError, r"^geom, a, b: leading batch dimensions"),
    ("solve batch C (2) vs a (3), eps", lambda: monge.solve(torch.rand(2, 5, 4, dtype=F64), torch.full((3, 5), .2,
     dtype=F64), eps=0.1), ValueError, r"^geom, a, b: leading batch dimensions"),
    ("solve C NaN", lambda: monge.solve(C * NAN), ValueError, r"^C: expected finite.*NaN"),
    ("solve C inf", lambda: monge.solve(C + INF), ValueError, r"^C: expected finite.*infinite"),
    ("solve C empty", lambda: monge.solve(torch.zeros(0, 4, dtype=F64)), ValueError, r"^C: expected a non-empty"),
    ("solve C 1-D", lambda: monge.solve(torch.zeros(4, dtype=F64)), ValueError, r"^C: expected a cost matrix"),
    ("solve C 0-D", lambda: monge.solve(torch.tensor(1.0)), ValueError, r"^C: expected a cost matrix"),
    ("solve a negative", lambda: monge.solve(C, -A, -B), ValueError, r"^a: expected nonnegative"),
    ("solve a NaN", lambda: monge.solve(C, A * NAN, B), ValueError, r"^a: expected finite"),
    ("solve a zero mass", lambda: monge.solve(C, A * 0, B, eps=0.1, rho=1.0), ValueError, r"^a: .*positive total"),
    ("solve a wrong n", lambda: monge.solve(C, B), ValueError, r"^a: expected weights of shape \(\.\.\., n\)"),
    ("solve masses differ", lambda: monge.solve(C, A, 2 * B), ValueError, r"^a and b must have the same total mass"),
    ("solve_points x int + y float64", lambda: monge.solve_points(torch.ones(5, 2, dtype=I64), Y), TypeError,
     r"^x: .*int64.*x\.to\(torch\.float64\)"),
    ("solve_points x float16", lambda: monge.solve_points(X.half(), Y.half()), TypeError, r"^x: .*float16"),
    ("solve_points x 1-D", lambda: monge.solve_points(X[:, 0], Y), ValueError, r"^x: expected points.*x\[:, None\]"),
    ("solve_points d differs", lambda: monge.solve_points(X, torch.rand(4, 3, dtype=F64)), ValueError,
     r"^x and y must have the same dimension"),
    ("solve_points batch a", lambda: monge.solve_points(torch.rand(2, 5, 2, dtype=F64), Y, torch.full((3, 5), .2,
     dtype=F64)), ValueError, r"^geom, a, b: leading batch"),
    ("solve_grid b shape", lambda: monge.solve_grid(torch.full((4, 4), 1 / 16, dtype=F64),
     torch.full((4, 5), 1 / 20, dtype=F64), eps=0.1), ValueError, r"^b: expected weights of shape"),
    ("solve_grid a negative", lambda: monge.solve_grid(-torch.full((4, 4), 1 / 16, dtype=F64),
     torch.full((4, 4), 1 / 16, dtype=F64), eps=0.1), ValueError, r"^a: expected nonnegative"),
    ("wasserstein_1d x float16", lambda: monge.wasserstein_1d(X[:, 0].half(), Y[:, 0].half()), TypeError, r"^x: "),
    ("wasserstein_1d x empty", lambda: monge.wasserstein_1d(X[:0, 0], Y[:, 0]), ValueError,
     r"^x: expected a non-empty"),
    ("wasserstein_1d x NaN", lambda: monge.wasserstein_1d(X[:, 0] * NAN, Y[:, 0]), ValueError, r"^x: expected finite"),
    ("wasserstein_1d a negative", lambda: monge.wasserstein_1d(X[:, 0], Y[:, 0], -A, -B), ValueError, r"^a: "),
    ("wasserstein_1d batch", lambda: monge.wasserstein_1d(torch.rand(2, 5), torch.rand(3, 4)), ValueError,
     r"^x, y, a, b: leading batch"),
    ("sliced projections shape", lambda: monge.sliced_wasserstein(X, Y, projections=torch.ones(3, 2, dtype=F64)),
     ValueError, r"^projections: "),
    ("assignment n > m", lambda: monge.assignment(torch.rand(4, 3)), ValueError, r"^C: expected n <= m"),
    ("assignment C NaN", lambda: monge.assignment(torch.eye(3) * NAN), ValueError, r"^C: expected finite"),
    ("assignment C empty", lambda: monge.assignment(torch.zeros(0, 0)), ValueError, r"^C: expected a non-empty"),
    ("emd C int + a float64", lambda: monge.emd(u(3), u(3), torch.eye(3, dtype=I64)), TypeError, r"^C: .*int64"),
    ("mmd x NaN", lambda: monge.mmd(X * NAN, Y), ValueError, r"^x: expected finite"),
    ("mmd x int + y float64", lambda: monge.mmd(torch.ones(3, 2, dtype=I64), Y), TypeError, r"^x: .*int64"),
    ("barycenter K = 0", lambda: monge.barycenter(torch.zeros(0, 6, dtype=F64), eps=0.1, geom=CB), ValueError,
     r"^hists: expected K >= 1"),
    ("barycenter hists negative", lambda: monge.barycenter(-H, eps=0.1, geom=CB), ValueError, r"^hists: "),
    ("barycenter hists int + C float64", lambda: monge.barycenter(torch.ones(3, 6, dtype=I64), eps=0.1, geom=CB),
     TypeError, r"^hists: .*int64.*hists\.to\(torch\.float64\)"),
    ("barycenter weights negative", lambda: monge.barycenter(H, torch.tensor([.5, .6, -.1], dtype=F64), eps=0.1,
     geom=CB), ValueError, r"^weights: expected nonnegative"),
    ("barycenter weights sum", lambda: monge.barycenter(H, torch.tensor([.5, .6, .1], dtype=F64), eps=0.1, geom=CB),
     ValueError, r"^weights: expected weights summing to 1.*weights / weights\.sum"),
    ("barycenter weights shape", lambda: monge.barycenter(H, u(2), eps=0.1, geom=CB), ValueError, r"^weights: "),
    ("interpolate a, b shapes", lambda: monge.interpolate_histograms(H[0], H[1, :5], 0.5, eps=0.1, geom=CB),
     ValueError, r"^a and b"),
    ("lp_barycenter K = 0", lambda: monge.lp_barycenter(torch.zeros(0, 6, dtype=F64), None, CB), ValueError,
     r"^hists: expected K >= 1"),
    ("lp_barycenter weights sum", lambda: monge.lp_barycenter(H, torch.tensor([.5, .6, .1], dtype=F64), CB),
     ValueError, r"^weights: expected weights summing to 1"),
    ("lp_barycenter C int + hists float64", lambda: monge.lp_barycenter(H, None, torch.ones(6, 6, dtype=I64)),
     TypeError, r"^C: .*int64"),
    ("lp_barycenter hists 1-D", lambda: monge.lp_barycenter(H[0], None, CB), ValueError, r"^hists: "),
    ("lp_barycenter C batched", lambda: monge.lp_barycenter(H, None, CB.expand(2, 6, 6)), ValueError, r"^C: "),
    ("free_support d differs", lambda: monge.free_support_barycenter([X, torch.rand(3, 3, dtype=F64)]), ValueError,
     r"^xs\[1\]: "),
    ("free_support weights negative", lambda: monge.free_support_barycenter([X, Y], weights=torch.tensor(
     [1.0, -1.0], dtype=F64)), ValueError, r"^weights: "),
    ("free_support coordinates overflow", lambda: monge.free_support_barycenter([X * 1e300, Y * 1e300]), ValueError,
     r"^xs\[0\]: coordinates .* rescale"),
    ("kmeans batched a", lambda: monge.kmeans(X, 2, torch.full((2, 5), .2, dtype=F64)), ValueError, r"^a: "),
    ("sinkhorn_divergence overflowing costs", lambda: monge.sinkhorn_divergence(X * 1e300, Y * 1e300, eps=0.1),
     ValueError, r"overflow.*rescale the inputs"),
    ("Grid shape 0", lambda: monge.Grid((0,)), ValueError, r"^shape: "),
    ("DenseCost ragged list", lambda: monge.DenseCost([[1.0, 2.0], [3.0]]), TypeError, r"^C: expected a rectangular"),
    ("solve C str", lambda: monge.solve("abc"), TypeError, r"^C: "),
    ("solve_grid a scalar", lambda: monge.solve_grid(torch.tensor(1.0), torch.tensor(1.0), eps=0.1), ValueError,
     r"^a: expected a histogram"),
    ("interpolate t str", lambda: monge.interpolate_histograms(H[0], H[1], "a", eps=0.1, geom=CB), TypeError, r"^t: "),
    ("NetworkSimplex on a tensor", lambda: monge.NetworkSimplex()(C), TypeError, r"^prob: .*monge\.solve"),
    ("Sinkhorn on a tensor", lambda: monge.Sinkhorn(eps=1.0)(C), TypeError, r"^prob: "),
    ("sinkhorn_divergence_hist geom str", lambda: monge.sinkhorn_divergence_hist(H[0], H[1], "foo", eps=0.1),
     TypeError, r"^geom: "),
    ("barycentric_coordinates lr=-1", lambda: monge.barycentric_coordinates(H[0], H, eps=0.1, geom=CB, lr=-1.0),
     ValueError, r"^lr: "),
    ("DenseCost 1-D", lambda: monge.DenseCost(torch.zeros(3)), ValueError, r"^C: "),
]

# ----------------------------------------------------------------------------------------------------------------
# knobs out of range
# ----------------------------------------------------------------------------------------------------------------
KNOBS = [
    *[(f"solve eps={v!r}", (lambda v=v: monge.solve(C, eps=v)), ValueError, r"^eps: ") for v in (0, -1.0, NAN, INF)],
    ("solve eps='a'", lambda: monge.solve(C, eps="a"), TypeError, r"^eps: "),
    ("solve eps=True", lambda: monge.solve(C, eps=True), TypeError, r"^eps: "),
    *[(f"solve tol={v!r}", (lambda v=v: monge.solve(C, eps=0.1, tol=v)), ValueError, r"^tol: ") for v in (-1.0, NAN)],
    *[(f"solve max_iter={v!r} eps", (lambda v=v: monge.solve(C, eps=0.1, max_iter=v)), ValueError, r"^max_iter: ")
      for v in (0, 1.5, True)],
    *[(f"solve max_iter={v!r} exact", (lambda v=v: monge.solve(C, max_iter=v)), ValueError, r"^max_iter: ")
      for v in (0, 1.5, True)],
    ("solve check_every=0", lambda: monge.solve(C, eps=0.1, check_every=0), ValueError, r"^check_every: "),
    ("solve omega=3", lambda: monge.solve(C, eps=0.1, omega=3), ValueError, r"^omega: "),
    *[(f"solve rho={v!r}", (lambda v=v: monge.solve(C, eps=0.1, rho=v)), ValueError, r"^rho \(rho_a = rho_b\): ")
      for v in (0, -1.0, NAN, INF)],
    ("solve rho=(1, 0)", lambda: monge.solve(C, eps=0.1, rho=(1.0, 0.0)), ValueError, r"^rho\[1\]: "),
    ("solve grad='foo'", lambda: monge.solve(C, eps=0.1, grad="foo"), ValueError, r"^grad: "),
    ("solve method='foo'", lambda: monge.solve(C, method="foo"), ValueError, r"^method: "),
    ("solve schedule='x'", lambda: monge.solve(C, eps=0.1, schedule="x"), TypeError, r"^schedule: "),
    ("solve_points cost='foo'", lambda: monge.solve_points(X, Y, cost="foo"), ValueError, r"^cost: "),
    ("solve_points backend='foo'", lambda: monge.solve_points(X, Y, eps=0.1, backend="foo"), ValueError,
     r"^backend: "),
    *[(f"solve_points euclidean p={v!r}", (lambda v=v: monge.solve_points(X, Y, cost="euclidean", p=v)), ValueError,
       r"^p: ") for v in (0, 0.5, NAN, INF)],
    ("solve_grid eps=0", lambda: monge.solve_grid(u(4), u(4), eps=0), ValueError, r"^eps: "),
    ("solve_grid p=0", lambda: monge.solve_grid(u(4), u(4), eps=0.1, p=0), ValueError, r"^p: "),
    ("solve_grid spacing=-1", lambda: monge.solve_grid(u(4), u(4), eps=0.1, spacing=-1.0), ValueError,
     r"^spacing: "),
    *[(f"wasserstein p={v!r}", (lambda v=v: monge.wasserstein(X, Y, p=v)), ValueError, r"^p: ") for v in (0, NAN, INF)],
    ("wasserstein p=True", lambda: monge.wasserstein(X, Y, p=True), TypeError, r"^p: "),
    ("wasserstein p='2'", lambda: monge.wasserstein(X, Y, p="2"), TypeError, r"^p: "),
    *[(f"wasserstein_1d p={v!r}", (lambda v=v: monge.wasserstein_1d(X[:, 0], Y[:, 0], p=v)), ValueError, r"^p: ")
      for v in (0, NAN, INF)],
    *[(f"sliced n_projections={v!r}", (lambda v=v: monge.sliced_wasserstein(X, Y, n_projections=v)), ValueError,
       r"^n_projections: ") for v in (0, 1.5, True)],
    ("sliced seed=1.5", lambda: monge.sliced_wasserstein(X, Y, seed=1.5), TypeError, r"^seed: "),
    ("sliced p=inf", lambda: monge.sliced_wasserstein(X, Y, p=INF), ValueError, r"^p: "),
    *[(f"assignment n_threads={v!r}", (lambda v=v: monge.assignment(torch.eye(3), n_threads=v)), TypeError,
       r"^n_threads: ") for v in (1.5, True)],
    ("assignment n_threads=0", lambda: monge.assignment(torch.eye(3), n_threads=0), ValueError, r"^n_threads: "),
    ("NetworkSimplex n_threads=1.5", lambda: monge.NetworkSimplex(n_threads=1.5), TypeError, r"^n_threads: "),
    ("NetworkSimplex max_iter=True", lambda: monge.NetworkSimplex(max_iter=True), ValueError, r"^max_iter: "),
    *[(f"sinkhorn_divergence eps={v!r}", (lambda v=v: monge.sinkhorn_divergence(X, Y, eps=v)), ValueError, r"^eps: ")
      for v in (0, INF)],
    ("sinkhorn_divergence p=0", lambda: monge.sinkhorn_divergence(X, Y, eps=0.1, p=0), ValueError, r"^p: "),
    ("sinkhorn_divergence rho=0", lambda: monge.sinkhorn_divergence(X, Y, eps=0.1, rho=0), ValueError, r"^rho: "),
    ("mmd kernel='foo'", lambda: monge.mmd(X, Y, kernel="foo"), ValueError, r"^kernel: "),
    ("mmd gaussian scale=0", lambda: monge.mmd(X, Y, kernel="gaussian", scale=0), ValueError, r"^scale: "),
    ("mmd chunk=0", lambda: monge.mmd(X, Y, chunk=0), ValueError, r"^chunk: "),
    ("mmd chunk=1.5", lambda: monge.mmd(X, Y, chunk=1.5), TypeError, r"^chunk: "),
    ("barycenter eps=0", lambda: monge.barycenter(H, eps=0, geom=CB), ValueError, r"^eps: "),
    ("barycenter rho=0", lambda: monge.barycenter(H, eps=0.1, geom=CB, rho=0), ValueError, r"^rho: "),
    ("barycenter max_iter=0", lambda: monge.barycenter(H, eps=0.1, geom=CB, max_iter=0), ValueError, r"^max_iter: "),
    ("barycenter debias with rho", lambda: monge.barycenter(H, eps=0.1, geom=CB, rho=1.0, debias=True), ValueError,
     r"^debias: "),
    ("barycenter no geom", lambda: monge.barycenter(H, eps=0.1), ValueError, r"^geom: "),
    *[(f"interpolate t={v!r}", (lambda v=v: monge.interpolate_histograms(H[0], H[1], v, eps=0.1, geom=CB)),
       ValueError, r"^t: ") for v in (2.0, NAN)],
    ("free_support eps with exact", lambda: monge.free_support_barycenter([X, Y], eps=0.1), ValueError, r"^eps: "),
    ("free_support max_iter=0", lambda: monge.free_support_barycenter([X, Y], max_iter=0), ValueError, r"^max_iter: "),
    ("free_support tol=-1", lambda: monge.free_support_barycenter([X, Y], tol=-1.0), ValueError, r"^tol: "),
    ("free_support k=0", lambda: monge.free_support_barycenter([X, Y], k=0), ValueError, r"^k: "),
    ("kmeans k=0", lambda: monge.kmeans(X, 0), ValueError, r"^k: "),
    *[(f"EpsScaling factor={v!r}", (lambda v=v: monge.EpsScaling(factor=v)), ValueError, r"^factor: ")
      for v in (0.0, 1.0, NAN)],
    ("EpsScaling factor='a'", lambda: monge.EpsScaling(factor="a"), TypeError, r"^factor: "),
    *[(f"EpsScaling eps_init={v!r}", (lambda v=v: monge.EpsScaling(eps_init=v)), ValueError, r"^eps_init: ")
      for v in (0.0, INF)],
    *[(f"EpsScaling iters_per_stage={v!r}", (lambda v=v: monge.EpsScaling(iters_per_stage=v)), TypeError,
       r"^iters_per_stage: ") for v in (1.5, True)],
    ("EpsScaling infinite cost scale", lambda: monge.EpsScaling().temperatures(0.1, INF), ValueError,
     r"largest cost is inf.*rescale"),
    *[(f"SinkhornLoss p={v!r}", (lambda v=v: SinkhornLoss(p=v)), ValueError, r"^p: ") for v in (0, INF, NAN)],
    *[(f"SinkhornLoss blur={v!r}", (lambda v=v: SinkhornLoss(blur=v)), ValueError, r"^blur: ")
      for v in (0, INF, NAN, 1e200)],
    ("SinkhornLoss blur=True", lambda: SinkhornLoss(blur=True), TypeError, r"^blur: "),
    *[(f"SinkhornLoss reach={v!r}", (lambda v=v: SinkhornLoss(reach=v)), ValueError, r"^reach: ")
      for v in (0, INF, NAN)],
    *[(f"SinkhornLoss scaling={v!r}", (lambda v=v: SinkhornLoss(scaling=v)), ValueError, r"^scaling: ")
      for v in (1.0, NAN)],
    ("SinkhornLoss backend='foo'", lambda: SinkhornLoss(backend="foo"), ValueError, r"^backend: "),
    ("SinkhornLoss grad='foo'", lambda: SinkhornLoss(grad="foo"), ValueError, r"^grad: "),
    ("SinkhornLoss tol=-1", lambda: SinkhornLoss(tol=-1.0), ValueError, r"^tol: "),
    ("MMDLoss kernel='foo'", lambda: MMDLoss(kernel="foo"), ValueError, r"^kernel: "),
    ("particle_flow lr=0", lambda: monge.particle_flow(X, Y, lr=0, n_steps=1), ValueError, r"^lr: "),
    ("particle_flow n_steps=1.5", lambda: monge.particle_flow(X, Y, n_steps=1.5), ValueError, r"^n_steps: "),
    ("particle_flow loss='foo'", lambda: monge.particle_flow(X, Y, loss="foo", n_steps=1), ValueError, r"^loss: "),
    ("Sinkhorn eps=0", lambda: monge.Sinkhorn(eps=0), ValueError, r"^eps: "),
    ("Sinkhorn max_iter=1.5", lambda: monge.Sinkhorn(eps=1.0, max_iter=1.5), ValueError, r"^max_iter: "),
    ("Barycenter grad='foo'", lambda: monge.Barycenter(eps=1.0, grad="foo"), ValueError, r"^grad: "),
    ("Grid p=0", lambda: monge.Grid((4,), p=0), ValueError, r"^p: "),
    ("Grid spacing=nan", lambda: monge.Grid((4,), spacing=NAN), ValueError, r"^spacing: "),
]

# ----------------------------------------------------------------------------------------------------------------
# a parameter with no effect in the given combination is an error (issue 11 item 5), not a no-op
# ----------------------------------------------------------------------------------------------------------------
NO_EFFECT = [
    ("solve_points p=1 with the squared cost", lambda: monge.solve_points(X, Y, p=1), ValueError,
     r"^p: the cost 'sqeuclidean'.*cost='euclidean', p=1"),
    ("solve_points p with a callable cost", lambda: monge.solve_points(X, Y, cost=lambda x, y: torch.cdist(x, y),
     p=1), ValueError, r"^p: a callable cost"),
    ("solve_points p with cosine", lambda: monge.solve_points(X, Y, cost="cosine", p=2), ValueError, r"^p: "),
    ("PointCloud p with the squared cost", lambda: monge.PointCloud(X, Y, p=3), ValueError, r"^p: "),
    ("sinkhorn_divergence p=1 with cost='sqeuclidean'", lambda: monge.sinkhorn_divergence(X, Y, eps=0.1, p=1,
     cost="sqeuclidean"), ValueError, r"^p: "),
    ("solve rho with the exact solver", lambda: monge.solve(C, rho=1.0), ValueError, r"^rho: only for entropic"),
    ("solve grad with the exact solver", lambda: monge.solve(C, grad="unroll"), ValueError, r"^grad: only for"),
    ("solve method with eps", lambda: monge.solve(torch.rand(3, 3, dtype=F64), eps=0.1, method="assignment"),
     ValueError, r"^method: .*ignored with eps"),
    ("solve_points backend with the exact solver", lambda: monge.solve_points(X, Y, backend="lazy"), ValueError,
     r"^backend: .*exact solver"),
    ("sliced n_projections with projections", lambda: monge.sliced_wasserstein(X, Y, n_projections=3,
     projections=torch.eye(2, dtype=F64)), ValueError, r"^n_projections: .*ignored"),
    ("sliced seed with projections", lambda: monge.sliced_wasserstein(X, Y, seed=3, projections=torch.eye(2,
     dtype=F64)), ValueError, r"^seed: .*ignored"),
    ("mmd scale with the energy kernel", lambda: monge.mmd(X, Y, scale=2.0), ValueError, r"^scale: .*energy"),
    ("MMDLoss scale with the energy kernel", lambda: MMDLoss(scale=2.0), ValueError, r"^scale: .*energy"),
    ("particle_flow kernel with loss='sinkhorn'", lambda: monge.particle_flow(X, Y, kernel="gaussian", n_steps=1),
     ValueError, r"^kernel: not used by loss='sinkhorn'"),
    ("particle_flow blur with the energy MMD", lambda: monge.particle_flow(X, Y, "mmd", blur=0.1, n_steps=1),
     ValueError, r"^blur: not used by loss='mmd'"),
    ("particle_flow p with a callable loss", lambda: monge.particle_flow(X, Y, lambda x, y, a, b: (x - y.mean(-2,
     keepdim=True)).pow(2).sum((-1, -2)), p=1, n_steps=1), ValueError, r"^p: not used by loss='a callable'"),
    ("solve max_iter with method='assignment'", lambda: monge.solve(torch.rand(4, 4, dtype=F64), method="assignment",
     max_iter=3), ValueError, r"^max_iter: the assignment solver"),
    ("solve unknown keyword", lambda: monge.solve(C, foo=3), TypeError, r"^foo: not an option of solve"),
    ("solve tol with the exact solver", lambda: monge.solve(C, tol=1e-3), ValueError, r"^tol: only for entropic"),
    ("wasserstein cost", lambda: monge.wasserstein(X, Y, cost="cosine"), TypeError, r"^cost: .*solve_points"),
    ("SinkhornLoss schedule", lambda: SinkhornLoss(schedule=None), TypeError, r"^schedule: set by SinkhornLoss"),
    ("displacement_interpolation tol with exact", lambda: monge.displacement_interpolation(X, Y, tol=1e-3),
     ValueError, r"^tol: only for method='sinkhorn'"),
    ("free_support eps with method='exact'", lambda: monge.free_support_barycenter([X, Y], eps=0.1), ValueError,
     r"^eps: only for method='sinkhorn'"),
]

RAISES = INPUTS + KNOBS + NO_EFFECT


@pytest.mark.parametrize("call, exc, pattern", [r[1:] for r in RAISES], ids=[r[0] for r in RAISES])
def test_bad_input_raises_naming_the_argument(call, exc, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=pattern):
            call()


def test_matrix_ids_are_unique():
    ids = [r[0] for r in RAISES] + [r[0] for r in CORRECT]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------------------------------------------
# inputs that must give a finite, correct result: integer/bool inputs, extreme scales where the answer is
# representable (W_p is 1-homogeneous; the exact LP's value is linear in C)
# ----------------------------------------------------------------------------------------------------------------
def _w1d(s, p):
    return lambda: monge.wasserstein_1d(X[:, 0] * s, Y[:, 0] * s, A, B, p=p) / s


def _sliced(s, p):
    return lambda: monge.sliced_wasserstein(X * s, Y * s, A, B, p=p, seed=0) / s


def _w(s, p):
    return lambda: monge.wasserstein(X * s, Y * s, A, B, p=p) / s


CORRECT = [
    ("solve C int", lambda: monge.solve(torch.ones(3, 3, dtype=I64)).value, 1.0),
    ("solve C bool", lambda: monge.solve(1 - torch.eye(3, dtype=torch.bool).int()).value, 0.0),
    ("emd C int", lambda: monge.emd(None, None, 1 - torch.eye(3, dtype=I64)).value, 0.0),
    ("solve_points x, y int", lambda: monge.solve_points(torch.ones(3, 2, dtype=I64), torch.zeros(3, 2, dtype=I64)
     ).value, 2.0),
    ("wasserstein_1d int samples", lambda: monge.wasserstein_1d(torch.arange(3), torch.arange(3) + 2, p=1), 2.0),
    *[(f"mmd energy x*{s:g}", (lambda s=s: monge.mmd(X * s, Y * s) / s), float(monge.mmd(X, Y)))
      for s in (1e300, 1e-300)],
    *[(f"mmd gaussian x*{s:g}", (lambda s=s: monge.mmd(X * s, Y * s, kernel="gaussian", scale=0.3 * s)),
       float(monge.mmd(X, Y, kernel="gaussian", scale=0.3))) for s in (1e300, 1e-300)],
    ("mmd x, y int (energy)", lambda: monge.mmd(torch.zeros(3, 2, dtype=I64), torch.zeros(3, 2, dtype=I64)), 0.0),
    *[(f"solve exact C*{s:g}", (lambda s=s: monge.solve(C * s, A, B).value / s),
       float(monge.solve(C, A, B).value)) for s in (1e300, 1e-300)],
    *[(f"wasserstein_1d x*{s:g} p={p}", _w1d(s, p), float(monge.wasserstein_1d(X[:, 0], Y[:, 0], A, B, p=p)))
      for s in (1e154, 1e200, 1e300, 1e-200, 1e-300) for p in (1, 2, 3)],
    *[(f"sliced x*{s:g} p={p}", _sliced(s, p), float(monge.sliced_wasserstein(X, Y, A, B, p=p, seed=0)))
      for s in (1e200, 1e300, 1e-300) for p in (1, 2)],
    *[(f"wasserstein x*{s:g} p={p}", _w(s, p), float(monge.wasserstein(X, Y, A, B, p=p)))
      for s in (1e200, 1e300, 1e-300) for p in (1, 2)],
    ("wasserstein x*1e150 eps", lambda: monge.wasserstein(X * 1e150, Y * 1e150, p=2, eps=1e-2 * 1e300) / 1e150,
     float(monge.wasserstein(X, Y, p=2, eps=1e-2))),
    *[(f"lp_barycenter C*{s:g}", (lambda s=s: monge.lp_barycenter(H, None, CB * s).value / s),
       float(monge.lp_barycenter(H, None, CB).value)) for s in (1e300, 1e-300)],
    *[(f"lp_barycenter hists*{m:g}", (lambda m=m: monge.lp_barycenter(H * m, None, CB).value / m),
       float(monge.lp_barycenter(H, None, CB).value)) for m in (1e300, 1e-300)],
]


@pytest.mark.parametrize("call, ref", [r[1:] for r in CORRECT], ids=[r[0] for r in CORRECT])
def test_extreme_or_integer_input_gives_the_correct_finite_result(call, ref):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = torch.as_tensor(call())
    assert bool(torch.isfinite(out).all()), out
    assert float(out) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_scaled_results_keep_their_gradients():
    """Normalising by a power of two keeps autograd: the gradient of W_p(s x, s y) w.r.t. x is that at scale 1."""
    x = X[:, 0].clone().requires_grad_(True)
    monge.wasserstein_1d(x * 1e300, Y[:, 0] * 1e300, p=2).backward()
    g_big = x.grad.clone() / 1e300
    x.grad = None
    monge.wasserstein_1d(x, Y[:, 0], p=2).backward()
    torch.testing.assert_close(g_big, x.grad, rtol=1e-12, atol=0)
    assert math.isfinite(float(g_big.abs().sum()))
