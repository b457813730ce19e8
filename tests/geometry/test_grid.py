"""Grid geometry: the separable soft-min against the dense log-sum-exp over the materialised cost."""

from __future__ import annotations

import pytest
import torch

from monge.geometry.grid import Grid

TOL = {torch.float32: 2e-6, torch.float64: 1e-13}  # relative to the magnitude of the values


def dense_softmin(geom: Grid, h: torch.Tensor, eps: float) -> torch.Tensor:
    """-eps logsumexp((h - C) / eps) over the dense (N, N) cost, in float64."""
    C = geom.cost().double()
    d = len(geom.grid_shape)
    flat = h.double().reshape(*h.shape[: h.dim() - d], -1)
    return (-eps * torch.logsumexp((flat.unsqueeze(-2) - C) / eps, dim=-1)).reshape(h.shape)


def assert_matches(out, ref, dtype):
    scale = max(1.0, float(ref[torch.isfinite(ref)].abs().max()))
    assert out.shape == ref.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    err = float((out.double() - ref).abs().max())
    assert err <= TOL[dtype] * scale * 10, err


SHAPES = [(1,), (9,), (5, 7), (4, 4), (3, 4, 5), (2, 3, 2, 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [1, 2])
def test_softmin_matches_dense(shape, p, dtype):
    geom = Grid(shape, p=p, dtype=dtype)
    small = 1e-4 if dtype == torch.float32 else 1e-6
    for eps in (1.0, 1e-2, small * geom.cost_scale() if geom.cost_scale() > 0 else 1e-3):
        h = torch.randn(2, 3, *shape, dtype=dtype) * 0.3
        for dim in (0, 1):
            assert_matches(geom.softmin(h, eps, dim), dense_softmin(geom, h, eps), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_explicit_spacing_and_unbatched(dtype):
    geom = Grid((4, 6), spacing=(0.5, 0.1), dtype=dtype)
    assert geom.spacing == (0.5, 0.1)
    C = geom.cost()
    assert float(C[0, 5]) == pytest.approx(0.25) and float(C[0, 6]) == pytest.approx(0.25)  # (0,5) and (1,0)
    h = torch.randn(4, 6, dtype=dtype)
    for eps in (0.3, 1e-3):
        assert_matches(geom.softmin(h, eps, 1), dense_softmin(geom, h, eps), dtype)
    assert Grid(5, spacing=2.0).spacing == (2.0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_minus_inf_entries(dtype):
    geom = Grid((6, 5), dtype=dtype)
    h = torch.randn(6, 5, dtype=dtype)
    h[:3] = -torch.inf  # whole lines of zero weights
    h[4, 1:] = -torch.inf
    for eps in (1.0, 1e-3, 1e-5):
        out = geom.softmin(h, eps, 1)
        assert not torch.isnan(out).any()
        assert_matches(out, dense_softmin(geom, h, eps), dtype)
    all_inf = torch.full((6, 5), -torch.inf, dtype=dtype)
    assert torch.isposinf(geom.softmin(all_inf, 0.1, 1)).all()


def test_small_eps_far_mass_is_exact():
    """The kernel product underflows (eps << spacing^2); the exact fallback must take over, no inf."""
    for dtype, eps in ((torch.float32, 1e-4), (torch.float64, 1e-6)):
        geom = Grid((32, 32), dtype=dtype)
        h = torch.full((32, 32), -torch.inf, dtype=dtype)
        h[0, 0], h[31, 31] = 0.0, -0.5  # two isolated masses: every far cell reads them through the fallback
        out = geom.softmin(h, eps * geom.cost_scale(), 1)
        assert torch.isfinite(out).all()
        assert_matches(out, dense_softmin(geom, h, eps * geom.cost_scale()), dtype)


def test_gradcheck():
    geom = Grid((3, 4), dtype=torch.float64)
    h = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    for eps in (0.5, 2e-3):
        assert torch.autograd.gradcheck(lambda h: geom.softmin(h, eps, 1), (h,))


def test_gradient_with_minus_inf_is_finite():
    geom = Grid((4, 4), dtype=torch.float64)
    h = torch.randn(4, 4, dtype=torch.float64)
    h[:2] = -torch.inf
    h.requires_grad_(True)
    geom.softmin(h, 1e-3, 1).sum().backward()
    assert torch.isfinite(h.grad).all()
    assert (h.grad[:2] == 0).all()
    assert torch.allclose(h.grad.sum(), torch.tensor(-16.0, dtype=torch.float64))  # rows of the plan sum to 1


def test_properties():
    geom = Grid((3, 4, 5), dtype=torch.float64)
    assert geom.shape == (60, 60) and geom.grid_shape == (3, 4, 5)
    assert geom.batch_shape == torch.Size([]) and geom.dtype == torch.float64
    assert geom.like().dtype == torch.float64 and geom.device == torch.device("cpu")
    assert geom.detach() is geom
    assert geom.cost_scale() == pytest.approx(float(geom.cost().max()))
    assert torch.equal(geom.cost(), geom.cost().T)


def test_bad_inputs():
    geom = Grid((4, 5))
    with pytest.raises(ValueError, match="h"):
        geom.softmin(torch.zeros(5, 4), 0.1, 1)
    with pytest.raises(ValueError, match="h"):
        geom.softmin(torch.zeros(20), 0.1, 1)
    with pytest.raises(TypeError, match="h"):
        geom.softmin(torch.zeros(4, 5, dtype=torch.float64), 0.1, 1)
    with pytest.raises(TypeError, match="h"):
        geom.softmin([[0.0] * 5] * 4, 0.1, 1)
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            geom.softmin(torch.zeros(4, 5), eps, 1)
    with pytest.raises(ValueError, match="dim"):
        geom.softmin(torch.zeros(4, 5), 0.1, 2)
    with pytest.raises(ValueError, match="shape"):
        Grid((4, 0))
    with pytest.raises(TypeError, match="shape"):
        Grid((4, 2.5))
    with pytest.raises(TypeError, match="shape"):
        Grid(())
    with pytest.raises(ValueError, match="spacing"):
        Grid((4, 5), spacing=(0.1,))
    with pytest.raises(ValueError, match="spacing"):
        Grid((4, 5), spacing=-1.0)
    with pytest.raises(ValueError, match="p"):
        Grid((4, 5), p=0.5)
    with pytest.raises(TypeError, match="dtype"):
        Grid((4, 5), dtype=torch.int64)
    with pytest.raises(ValueError, match="softmin"):
        Grid((128, 64)).cost()


def test_float32_underflow_is_redone_in_float64_without_exact_fallback(monkeypatch):
    """The float32 product underflows (spread of h ~ 200 eps > 87 eps) but the float64 one does not: no fallback."""
    import monge.geometry._backends.grid_axes as grid_module

    geom = Grid((24, 20), dtype=torch.float32)
    eps = 2e-3
    h = torch.rand(2, 24, 20, dtype=torch.float32) * 0.4  # exp(-0.4 / eps) = e^-200: below float32's tiny
    ref = dense_softmin(geom, h, eps)

    def no_fallback(*args):
        raise AssertionError("the exact fallback should not run: float64 covers this range")

    monkeypatch.setattr(grid_module, "_exact_entries", no_fallback)
    for dim in (0, 1):
        assert_matches(geom.softmin(h, eps, dim), ref, torch.float32)


def test_exact_fallback_on_batched_3d_lines():
    """Both retries underflow (float64 too): the exact entries are gathered from non-contiguous (A, n, B) lines."""
    for dtype, spread in ((torch.float32, 2.0), (torch.float64, 2.0)):
        geom = Grid((5, 7, 6), dtype=dtype)
        eps = 1e-3  # spread / eps = 2000 nats: the float64 product underflows too
        h = torch.rand(3, 5, 7, 6, dtype=dtype) * spread
        assert_matches(geom.softmin(h, eps, 1), dense_softmin(geom, h, eps), dtype)


def test_float32_redoes_only_the_underflowing_lines_in_float64():
    """A few lines with a huge spread underflow in float32; the float64 redo on just those lines (and the exact
    fallback behind it) must give the exact soft-min everywhere, also through autograd."""
    g = torch.Generator().manual_seed(0)
    h64 = torch.rand(16, 24, generator=g, dtype=torch.float64) * 0.01
    h64[3] = torch.linspace(0, 8.0, 24, dtype=torch.float64)  # spread >> eps: underflows in float32
    h64[11, ::2] = -5.0
    eps = 2e-3
    ref = Grid((16, 24), dtype=torch.float64).softmin(h64, eps, 1)
    h32 = h64.float().requires_grad_()
    out = Grid((16, 24)).softmin(h32, eps, 1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(h32.grad).all()


@pytest.mark.parametrize("n", [5, 64, 200])
@pytest.mark.parametrize("eps", [1.0, 1e-2, 2e-4, 1e-6])
def test_quadratic_lines_exact(n, eps):
    """The blocked exact 1-D soft-min of the quadratic fallback, from one block per line (wide kernels) to one
    output per block (tiny eps), against the plain log-sum-exp; -inf entries included."""
    from monge.geometry._backends.grid_axes import quadratic_lines

    g = torch.Generator().manual_seed(n)
    scale = torch.tensor([0.01, 1.0, 10.0, 100.0], dtype=torch.float64)[:, None]
    lines = torch.randn(4, n, generator=g, dtype=torch.float64) * scale
    lines[1, n // 2] = -torch.inf
    s = 1.0 / max(n - 1, 1)
    i = torch.arange(n, dtype=torch.float64)
    C = (s * (i[:, None] - i[None, :])) ** 2
    ref = eps * torch.logsumexp((lines[:, None, :] - C) / eps, dim=-1)
    out = quadratic_lines(lines, s, eps)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))


def test_quadratic_lines_gradcheck():
    from monge.geometry._backends.grid_axes import quadratic_lines

    lines = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    for eps in (0.3, 2e-3):
        assert torch.autograd.gradcheck(lambda t: quadratic_lines(t, 0.1, eps), (lines,))


def test_squared_cost_fallback_skips_the_entrywise_path(monkeypatch):
    """p = 2: the entries both products miss are redone line-wise by the blocked exact soft-min, not entrywise."""
    import monge.geometry._backends.grid_axes as grid_module

    def entrywise(*args):
        raise AssertionError("p = 2 should use the blocked quadratic fallback")

    monkeypatch.setattr(grid_module, "_exact_entries", entrywise)
    for dtype in (torch.float32, torch.float64):
        geom = Grid((5, 7, 6), dtype=dtype)
        h = torch.rand(3, 5, 7, 6, dtype=dtype) * 2.0  # 2000 nats of spread at eps 1e-3: float64 underflows too
        assert_matches(geom.softmin(h, 1e-3, 1), dense_softmin(geom, h, 1e-3), dtype)
