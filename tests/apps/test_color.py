"""Colour transfer: closer to the reference in sliced W, every pixel mapped, shape/dtype/container kept, partial and
unbalanced transfer, smoothness of the palette-to-pixel map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import monge
from monge.apps.color import color_transfer, image_colors


@pytest.fixture(scope="module")
def images():
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")[::5, ::5], load_sample_image("flower.jpg")[::5, ::5]  # 86 x 128


def _sw(u, v):
    return float(monge.sliced_wasserstein(image_colors(u), image_colors(v), n_projections=128, seed=0))


@pytest.mark.parametrize("method, n_colors", [("exact", None), ("exact", 32), ("sinkhorn", None)])
def test_closer_to_reference_and_every_pixel_mapped(images, method, n_colors):
    src, ref = images
    out = color_transfer(src, ref, method=method, n_colors=n_colors)
    assert out.shape == src.shape and out.dtype == np.uint8 and isinstance(out, np.ndarray)
    before, after = _sw(src, ref), _sw(out, ref)
    assert after < 0.35 * before, (before, after)  # measured: 0.39 -> ~0.06 (exact) on these images
    changed = np.abs(out.astype(int) - src.astype(int)).max(-1) > 0
    assert changed.mean() > 0.95
    # the map is a function of the colour: equal source colours get equal outputs, wherever they are
    flat_src, flat_out = src.reshape(-1, 3), out.reshape(-1, 3)
    _, first, inv = np.unique(flat_src, axis=0, return_index=True, return_inverse=True)
    np.testing.assert_array_equal(flat_out, flat_out[first][inv.reshape(-1)])


def test_partial_transfer_and_float_and_torch(images):
    src, ref = images
    srcf, reff = src.astype(np.float32) / 255, ref.astype(np.float32) / 255
    full = color_transfer(srcf, reff)
    assert full.dtype == np.float32 and full.shape == src.shape
    np.testing.assert_array_equal(color_transfer(srcf, reff, t=0.0), srcf)
    half = color_transfer(srcf, reff, t=0.5)
    inside = (full > 0) & (full < 1)  # full transfer clips to [0, 1]; elsewhere half way is exactly half way
    assert inside.mean() > 0.9
    np.testing.assert_allclose(half[inside], 0.5 * (srcf + full)[inside], atol=1e-6)
    assert _sw(srcf, reff) > _sw(half, reff) > _sw(full, reff)
    out_t = color_transfer(torch.from_numpy(src.copy()), torch.from_numpy(ref.copy()))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.uint8 and out_t.shape == src.shape


def _ramp():
    """A smooth horizontal ramp (a flat-ish sky): 40 x 200 pixels from dark blue to light blue."""
    s = np.linspace(0, 1, 200)
    row = np.stack([0.1 + 0.3 * s, 0.2 + 0.4 * s, 0.5 + 0.4 * s], -1)
    return np.repeat(row[None], 40, 0)


def test_kernel_interpolation_keeps_smooth_regions_smooth():
    src = _ramp()
    rng = np.random.default_rng(0)
    ref = np.clip(rng.normal([0.8, 0.5, 0.2], 0.15, size=(60, 60, 3)), 0, 1)
    jumps = lambda img: float(np.abs(np.diff(img[0], axis=0)).max())  # noqa: E731
    smooth = color_transfer(src, ref, bins=8)
    hard = color_transfer(src, ref, bins=8, smooth=1e-3)  # ~nearest palette colour: posterised bands
    # the ramp steps by 0.002 per pixel; the kernel-interpolated map stays within a few steps, the hard one jumps
    assert jumps(smooth) < 0.02 < jumps(hard)
    assert _sw(smooth, ref) < 0.5 * _sw(src, ref)


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_unbalanced_leaves_colours_the_reference_lacks(method):
    rng = np.random.default_rng(1)
    blue = np.clip(rng.normal([0.2, 0.3, 0.7], 0.05, size=(900, 3)), 0, 1)
    red = np.clip(rng.normal([0.9, 0.1, 0.1], 0.03, size=(100, 3)), 0, 1)
    src = np.concatenate([blue, red])[None]  # 10% red pixels
    ref = np.clip(rng.normal([0.25, 0.35, 0.65], 0.05, size=(1, 1000, 3)), 0, 1)  # no red at all
    bal = color_transfer(src, ref, method=method, bins=12)
    unb = color_transfer(src, ref, method=method, bins=12, rho=0.02)
    move = lambda out: np.linalg.norm(out[0, 900:] - src[0, 900:], axis=-1).mean()  # noqa: E731
    assert move(bal) > 0.5  # balanced: the red mass must go to blue
    assert move(unb) < 0.3 * move(bal)
    blue_move = lambda out: np.linalg.norm(out[0, :900] - src[0, :900], axis=-1).mean()  # noqa: E731
    assert blue_move(unb) > 0.5 * blue_move(bal)  # the colours the reference has are still transferred


def test_errors_name_the_argument(images):
    src, ref = images
    with pytest.raises(ValueError, match="t: expected a number in"):
        color_transfer(src, ref, t=1.5)
    with pytest.raises(ValueError, match="method: expected one of"):
        color_transfer(src, ref, method="sliced")
    with pytest.raises(ValueError, match="ref: expected 3 channels"):
        color_transfer(src, ref[..., :2])
    with pytest.raises(TypeError, match="src: expected dtype uint8 or float"):
        color_transfer(src.astype(np.int32), ref)
