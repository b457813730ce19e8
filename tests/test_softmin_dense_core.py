"""The compiled dense soft-min (``monge._core.softmin_dense``) and its use by ``monge.ops.dense_softmin``.

Compared with a float64 ``torch.logsumexp`` reference: both reduction dims, float32/float64, ``-inf`` entries
of ``h`` (zero weights), batches, n or m = 1, tiny eps, sizes that take the threaded path.
"""

from __future__ import annotations

import pytest
import torch

core = pytest.importorskip("monge._core")
if not hasattr(core, "softmin_dense"):
    pytest.skip("monge._core built without softmin_dense", allow_module_level=True)
from monge._core import softmin_dense  # noqa: E402
from monge.ops import dense_softmin  # noqa: E402


def reference(C: torch.Tensor, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
    C, h = C.double(), h.double()
    if dim == 1:
        return -eps * torch.logsumexp((h.unsqueeze(-2) - C) / eps, dim=-1)
    return -eps * torch.logsumexp((h.unsqueeze(-1) - C) / eps, dim=-2)


def check(out: torch.Tensor, ref: torch.Tensor, eps: float, dtype: torch.dtype) -> None:
    assert out.dtype == dtype and out.shape == ref.shape
    assert not torch.isnan(out).any()
    assert torch.equal(torch.isinf(out), torch.isinf(ref)), "zero-weight reductions must give exactly +inf"
    f = torch.isfinite(ref)
    err = (out.double()[f] - ref[f]).abs()
    if dtype == torch.float64:
        tol = 1e-12 * ref[f].abs() + 1e-12 * eps
    else:  # float32: ~1e-5 of eps, plus the rounding of the output itself
        tol = 1e-5 * eps + 2.5e-7 * ref[f].abs()
    assert (err <= tol).all(), f"max error {err.max().item():.3g} (eps {eps})"


SHAPES = [(1, 1, 1), (1, 1, 37), (1, 37, 1), (3, 17, 29), (2, 100, 257), (1, 700, 3001), (1, 3001, 700)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1.0, 1e-2, 1e-6])
def test_matches_logsumexp(dtype, dim, shape, eps):
    g = torch.Generator().manual_seed(hash((dim, shape, eps)) % 2**31)
    B, n, m = shape
    C = (3 * torch.rand(B, n, m, generator=g, dtype=torch.float64)).to(dtype)
    h = torch.randn(B, m if dim == 1 else n, generator=g, dtype=torch.float64).to(dtype)
    h[..., ::3] = -float("inf")  # zero weights (keeps index 1 finite when it exists)
    out = torch.from_numpy(softmin_dense(C, h, eps, dim))
    check(out, reference(C, h, eps, dim), eps, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [0, 1])
def test_all_minus_inf_gives_inf(dtype, dim):
    C = torch.rand(2, 5, 9, dtype=dtype)
    h = torch.randn(2, 9 if dim == 1 else 5, dtype=dtype)
    h[1] = -float("inf")
    out = torch.from_numpy(softmin_dense(C, h, 0.1, dim))
    assert torch.isinf(out[1]).all() and (out[1] > 0).all()
    check(out, reference(C, h, 0.1, dim), 0.1, dtype)


@pytest.mark.parametrize("dim", [0, 1])
def test_threads_agree(dim):
    C = torch.rand(1, 1500, 1500, dtype=torch.float64)
    h = torch.randn(1, 1500, dtype=torch.float64)
    one = softmin_dense(C, h, 1e-2, dim, 1)
    two = softmin_dense(C, h, 1e-2, dim, 2)
    torch.testing.assert_close(torch.from_numpy(one), torch.from_numpy(two), rtol=1e-13, atol=1e-15)


def test_sorted_costs_rescale_often():
    # arguments increasing along the reduction: the running shift is raised at almost every vector
    n = 513
    C = torch.linspace(1, 0, n, dtype=torch.float64).repeat(n, 1)[None].contiguous()
    h = torch.zeros(1, n, dtype=torch.float64)
    for dim, CC in ((1, C), (0, C.transpose(1, 2).contiguous())):
        check(torch.from_numpy(softmin_dense(CC, h, 1e-3, dim)), reference(CC, h, 1e-3, dim), 1e-3, torch.float64)


def test_rejects_bad_input():
    C = torch.rand(1, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError):
        softmin_dense(C, torch.zeros(1, 3, dtype=torch.float64), 0.1, 1)  # h must be (B, m)
    with pytest.raises(ValueError):
        softmin_dense(C, torch.zeros(1, 4, dtype=torch.float64), 0.1, 0)  # h must be (B, n)
    with pytest.raises(ValueError):
        softmin_dense(C, torch.zeros(1, 4, dtype=torch.float64), 0.0, 1)
    with pytest.raises(ValueError):
        softmin_dense(C, torch.zeros(1, 4, dtype=torch.float64), 0.1, 2)
    with pytest.raises(TypeError):
        softmin_dense(C, torch.zeros(1, 4, dtype=torch.float32), 0.1, 1)  # mixed dtypes


@pytest.mark.parametrize("dtype", [torch.float64])  # float32 stays on the torch path (see logsumexp.py)
@pytest.mark.parametrize("dim", [0, 1])
def test_dense_softmin_dispatch_broadcast(dtype, dim):
    """``dense_softmin`` (no grad) goes through the kernel with broadcast batch dims and matches torch."""
    from monge.ops import logsumexp

    assert logsumexp._softmin_dense_core is softmin_dense
    C = torch.rand(4, 6, 7, dtype=dtype).transpose(-1, -2)  # (4, 7, 6), not contiguous
    h = torch.randn(2, 1, 6 if dim == 1 else 7, dtype=dtype)
    h[..., 0] = -float("inf")
    with torch.no_grad():
        out = dense_softmin(C, h, 0.05, dim)
    ref = reference(C.expand(2, 4, 7, 6), h, 0.05, dim)
    check(out, ref, 0.05, dtype)


@pytest.mark.parametrize("dim", [0, 1])
def test_dense_softmin_one_large_cost_many_potentials(dim):
    """A 2-D cost of >= 2^20 entries with batched potentials streams the one cost per row (no batch copy)."""
    g = torch.Generator().manual_seed(0)
    C = torch.rand(1024, 1025, generator=g, dtype=torch.float64)
    h = torch.randn(3, 1025 if dim == 1 else 1024, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = dense_softmin(C, h, 0.05, dim)
    check(out, reference(C, h, 0.05, dim), 0.05, torch.float64)


def test_dense_softmin_grad_keeps_torch_path():
    C = torch.rand(5, 6, dtype=torch.float64, requires_grad=True)
    h = torch.randn(6, dtype=torch.float64)
    out = dense_softmin(C, h, 0.1, 1)
    assert out.requires_grad
    out.sum().backward()
    assert C.grad is not None
