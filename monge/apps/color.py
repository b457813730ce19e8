r"""Colour transfer: move an image's colour distribution onto a reference's by optimal transport, at full
resolution.

The colours of an image are a point cloud in :math:`[0, 1]^C` (one point per pixel). A transport map
:math:`T` between the source and reference colour distributions is estimated on a compressed representation,
then applied to *every* pixel, blended with the identity:

.. math::
    \mathrm{out}(p) = \mathrm{src}(p) + t\,\big(T(\mathrm{src}(p)) - \mathrm{src}(p)\big), \qquad t \in [0, 1].

Two estimators of :math:`T`:

- ``method="exact"``: palettes of both images (the occupied cells of a regular colour grid, each at its pixels'
  mean colour and weighted by its pixel count; or k-means palettes, :func:`monge.kmeans`), the exact plan
  between them (:func:`monge.solve`, network simplex), the barycentric projection
  :math:`T(c_k) = \sum_l P_{kl} r_l / \sum_l P_{kl}` on the source palette, and a Gaussian-kernel
  (Nadaraya-Watson) interpolation of the displacement :math:`T(c_k) - c_k` to every colour,
  :math:`v(x) = \sum_k w_k(x) (T(c_k) - c_k)`, :math:`w_k(x) \propto a_k e^{-\|x - c_k\|^2 / 2\sigma^2}`: the
  displacement is a smooth function of the colour, so flat (or slowly varying) regions stay flat instead of
  being posterised into palette cells. The map is evaluated on a 3-D look-up table and interpolated
  trilinearly at every pixel (``lut``).
- ``method="sinkhorn"``: both images' colours binned on a regular colour grid (``bins`` per channel; each
  occupied cell is one point at its pixels' mean colour, weighted by its pixel count: the pixel cloud up to
  half a cell), entropic OT at ``eps`` between them with the lazy backend, and the entropic map
  :math:`T(x) = \sum_j r_j\, \mathrm{softmax}_j\big((g_j + \varepsilon \log b_j - \|x - r_j\|^2)/\varepsilon\big)`
  evaluated at every pixel (smooth at the scale :math:`\sqrt{\varepsilon}`).

``rho`` (a KL marginal penalty in squared colour units) makes the transport unbalanced: colours of the source
that the reference lacks (or has too much of) are not forced onto distant colours: the displacement of a colour is
scaled by the fraction of its mass that the unbalanced plan transports. With ``method="exact"`` and ``rho`` the
palette problem is solved by unbalanced Sinkhorn at ``eps``.

References: Pitié, Kokaram & Dahyot 2007; Ferradans, Papadakis, Peyré & Aujol 2014 (regularised maps);
Rabin, Ferradans & Papadakis 2014 (adaptive colour transfer).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._validation import check_positive

__all__ = ["color_transfer", "palette_map", "image_colors"]

METHODS = ("exact", "sinkhorn")
_CHUNK = 1 << 15  # pixels per block when evaluating a map: O(chunk * palette) memory


def _as_image(img, name: str):
    """``img`` -> (colours (N, C) float64 in [0, 1], restore(colours) -> same type/dtype/shape as ``img``)."""
    is_torch = isinstance(img, torch.Tensor)
    if not is_torch and not isinstance(img, np.ndarray):
        raise TypeError(f"{name}: expected an image as a numpy array or torch tensor (H, W, C), got "
                        f"{type(img).__name__}")
    arr = img.detach().cpu().numpy() if is_torch else img
    if arr.ndim < 2 or arr.shape[-1] > 4 or arr.size == 0:
        raise ValueError(f"{name}: expected an image of shape (..., C) with channels last (C <= 4), e.g. (H, W, 3), "
                         f"got shape {arr.shape}")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: expected finite pixel values, found NaN or inf")
        scale = 255.0 if float(arr.max()) > 1.0 else 1.0  # float images in [0, 1], or in [0, 255]
    else:
        raise TypeError(f"{name}: expected dtype uint8 or float, got {arr.dtype}; convert with .astype(np.float32)")
    cols = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64).reshape(-1, arr.shape[-1]) / scale)

    def restore(out: torch.Tensor):
        v = out.clamp(0.0, 1.0).numpy().reshape(arr.shape) * scale
        v = np.rint(v).astype(np.uint8) if arr.dtype == np.uint8 else v.astype(arr.dtype)
        return torch.from_numpy(v).to(img.device) if is_torch else v

    return cols, restore


def image_colors(img) -> torch.Tensor:
    """The colours of an image as a float64 point cloud ``(H * W, C)`` in ``[0, 1]`` (uint8 divided by 255).

    Example:
        >>> import numpy as np
        >>> image_colors(np.full((2, 2, 3), 255, np.uint8)).shape
        torch.Size([4, 3])
    """
    return _as_image(img, "img")[0]


def _palette(cols, k, seed, fit_points=20_000):
    """k-means palette of a colour cloud (fitted on a subsample, masses from assigning every pixel)."""
    from .kmeans import assign, kmeans

    g = torch.Generator().manual_seed(seed)
    sub = cols if len(cols) <= fit_points else cols[torch.randperm(len(cols), generator=g)[:fit_points]]
    k = min(k, int(torch.unique(sub, dim=0).shape[0]))
    with warnings.catch_warnings():  # a palette is a compression: Lloyd's last small moves do not matter here
        warnings.simplefilter("ignore", RuntimeWarning)
        centers = kmeans(sub, k, seed=seed, max_iter=30, tol=1e-3).centers
    labels, _ = assign(cols, centers)
    w = torch.bincount(labels, minlength=k).to(cols.dtype)
    keep = w > 0
    return centers[keep], w[keep] / w.sum()


def _grid_cloud(cols, bins):
    """Occupied cells of a ``bins^C`` colour grid: (mean colour of each cell's pixels, pixel fraction)."""
    idx = (cols * bins).floor().clamp(0, bins - 1).long()
    key = torch.zeros(len(cols), dtype=torch.long)
    for c in range(cols.shape[1]):
        key = key * bins + idx[:, c]
    uniq, inv = torch.unique(key, return_inverse=True)
    w = torch.bincount(inv, minlength=len(uniq)).to(cols.dtype)
    pts = torch.zeros(len(uniq), cols.shape[1], dtype=cols.dtype).index_add_(0, inv, cols) / w[:, None]
    return pts, w / w.sum(), inv


def _kernel_blend(x, centers, values, weights, sigma):
    """sum_k w_k(x) values_k with w_k(x) proportional to weights_k exp(-|x - c_k|^2 / 2 sigma^2), by chunks."""
    logw = torch.log(weights)
    out = []
    for xs in x.split(_CHUNK):
        d2 = torch.cdist(xs, centers).square()
        out.append(torch.softmax(logw - d2 / (2 * sigma**2), dim=-1) @ values)
    return torch.cat(out)


def palette_map(src_cols, ref_cols, *, n_colors: int | None = None, bins: int = 20, rho=None, eps: float = 1e-3,
                seed: int = 0):
    r"""The exact (or, with ``rho``, unbalanced entropic) OT map between palettes of two colour clouds: the
    occupied cells of a ``bins^C`` colour grid (``n_colors=None``), or k-means palettes of ``n_colors`` colours.

    Returns ``(centers (k, C), targets (k, C), masses (k,))``: the barycentric projection
    :math:`T(c_k) = \sum_l P_{kl} r_l / \sum_l P_{kl}` of each source palette colour. Unbalanced (``rho``):
    the displacement is scaled by the fraction of the colour's mass that is transported,
    :math:`T(c_k) = c_k + \min(1, (P 1)_k / a_k)\,(\text{projection} - c_k)`, so a colour that the reference
    lacks (its mass destroyed rather than carried far) moves little.

    Example:
        >>> import torch
        >>> src = torch.tensor([[0.1, 0.1, 0.1]] * 5 + [[0.9, 0.9, 0.9]] * 5, dtype=torch.float64)
        >>> c, t, w = palette_map(src, src * 0.5, bins=4)
        >>> sorted(round(v, 3) for v in t[:, 0].tolist())
        [0.05, 0.45]
    """
    from ..api import solve

    if n_colors is None:
        (c, a, _), (r, b, _) = _grid_cloud(src_cols, bins), _grid_cloud(ref_cols, bins)
    else:
        (c, a), (r, b) = _palette(src_cols, n_colors, seed), _palette(ref_cols, n_colors, seed + 1)
    C = torch.cdist(c, r).square()
    res = solve(C, a, b) if rho is None else solve(C, a, b, eps=eps, rho=rho)
    P = res.plan
    mass = P.sum(1)
    targets = (P @ r) / mass.clamp_min(torch.finfo(P.dtype).tiny)[:, None]
    targets = torch.where(mass[:, None] > 0, targets, c)  # a colour that sends no mass stays put
    if rho is not None:
        targets = c + (mass / a).clamp(max=1.0)[:, None] * (targets - c)
    return c, targets, a


def _entropic_map(points, y, logits_g, eps):
    """T(x) = softmax_j((logits_g_j - |x - y_j|^2) / eps) @ y at ``points``, by chunks."""
    out = []
    for xs in points.split(_CHUNK // 4):
        d2 = torch.cdist(xs, y).square()
        out.append(torch.softmax((logits_g - d2) / eps, dim=-1) @ y)
    return torch.cat(out)


def _lut_apply(fn, cols, size):
    """``fn`` evaluated on the nodes of a ``size^3`` lattice of the colour cube that surround some pixel, then
    trilinearly interpolated at every pixel (a 3-D look-up table): a few thousand evaluations instead of one per
    pixel; exact at the nodes and for affine maps."""
    pos = cols * (size - 1)
    base = pos.floor().clamp(0, size - 2).long()  # lower corner of each pixel's lattice cell
    corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    flat = lambda ijk: (ijk[..., 0] * size + ijk[..., 1]) * size + ijk[..., 2]  # noqa: E731
    cells, inv = torch.unique(flat(base), return_inverse=True)
    cell_ijk = torch.stack([cells // (size * size), (cells // size) % size, cells % size], -1)
    nodes = torch.unique(flat(cell_ijk[:, None, :] + corners).reshape(-1))
    ijk = torch.stack([nodes // (size * size), (nodes // size) % size, nodes % size], -1)
    table = cols.new_zeros(size**3, cols.shape[1])
    table[nodes] = fn(ijk.to(cols.dtype) / (size - 1))
    frac = pos - base.to(cols.dtype)  # (N, 3) in [0, 1]
    out = torch.zeros_like(cols)
    for c in corners:
        w = torch.where(c.bool(), frac, 1 - frac).prod(-1, keepdim=True)
        out += w * table[flat(base + c)]
    return out


def _sinkhorn_map(cols, ref_cols, bins, eps, rho, tol, lut):
    from ..api import solve_points

    x, a, inv = _grid_cloud(cols, bins)
    y, b, _ = _grid_cloud(ref_cols, bins)
    res = solve_points(x, y, a, b, eps=eps, rho=rho, backend="lazy", tol=tol, max_iter=2000)
    logits_g = res.g + eps * torch.log(b)
    fn = lambda pts: _entropic_map(pts, y, logits_g, eps)  # noqa: E731
    mapped = _lut_apply(fn, cols, lut) if (lut and cols.shape[1] == 3) else fn(cols)
    if rho is None:
        return mapped
    frac = (res.marginals[0] / a).clamp(max=1.0)[inv]  # the transported fraction of each pixel's grid cell
    return cols + frac[:, None] * (mapped - cols)


def color_transfer(src, ref, *, method: str = "exact", n_colors: int | None = None, t: float = 1.0,
                   rho: float | None = None, smooth: float | None = None, eps: float | None = None, bins: int = 20,
                   lut: int | None = 33,
                   tol: float = 1e-3, seed: int = 0):
    r"""Transfer the colour distribution of ``ref`` onto ``src``, at ``src``'s full resolution.

    .. math::
        \mathrm{out}(p) = \mathrm{src}(p) + t\,\big(T(\mathrm{src}(p)) - \mathrm{src}(p)\big)

    with :math:`T` the OT map between the two colour distributions (squared Euclidean cost on colours in
    :math:`[0, 1]^C`); see the module docstring for the two estimators.

    Args:
        src, ref: images ``(..., C)`` with channels last (``(H, W, 3)``), numpy arrays or torch tensors, uint8
            (0..255) or float (in [0, 1], or in [0, 255] if any value exceeds 1); sizes may differ.
        method: ``"exact"`` (palettes + network simplex + kernel interpolation) or ``"sinkhorn"`` (colour grid
            + lazy entropic OT + entropic map at every pixel).
        n_colors: ``"exact"``: ``None`` (default) uses the colour grid's occupied cells as the palettes (no
            k-means: fast, and the finest palette); an int uses k-means palettes of that many colours.
        bins: grid cells per channel (``"sinkhorn"``, and ``"exact"`` without ``n_colors``).
        t: how far to move, in [0, 1] (0: ``src``; 1: full transfer).
        rho: KL marginal penalty (squared colour units; ``None``: balanced).
        smooth: ``"exact"``: kernel width :math:`\sigma` (colour units) of the palette-to-pixel interpolation
            (``None``: half the median distance from a palette colour to its nearest other palette colour).
        eps: entropic regularisation in squared colour units (``None``: ``1e-3`` for ``"sinkhorn"``, a kernel
            width of 0.03 = 8/255; also used by ``"exact"`` with ``rho``). tol: Sinkhorn's marginal tolerance.
        lut: with 3 channels, evaluate the map on a ``lut^3`` lattice of the colour cube and
            interpolate it trilinearly at every pixel (a 3-D look-up table, as colour grading does; the map is smooth
            at the scale :math:`\sqrt{\varepsilon}`, so 33 nodes per channel, spacing 8/255, lose little);
            ``None``: evaluate the map at every pixel (exact, ~100x slower at 512 x 512).
        seed: k-means seeding.

    Returns:
        an image of ``src``'s shape, dtype and container (uint8 results are rounded and clipped).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> src = (rng.random((8, 8, 3)) * 128).astype(np.uint8)
        >>> ref = (128 + rng.random((8, 8, 3)) * 127).astype(np.uint8)
        >>> out = color_transfer(src, ref, bins=4)
        >>> out.shape, out.dtype, bool(out.mean() > 128)
        ((8, 8, 3), dtype('uint8'), True)
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not (isinstance(t, (int, float)) and 0.0 <= t <= 1.0):
        raise ValueError(f"t: expected a number in [0, 1] (0: no change, 1: full transfer), got {t!r}")
    if lut is not None and (not isinstance(lut, int) or lut < 2):
        raise ValueError(f"lut: expected an int >= 2 (lattice nodes per channel) or None, got {lut!r}")
    for name, v in (("n_colors", 1 if n_colors is None else n_colors), ("bins", bins)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    check_positive(rho, "rho", allow_none=True)
    check_positive(smooth, "smooth", allow_none=True)
    check_positive(eps, "eps", allow_none=True)
    cols, restore = _as_image(src, "src")
    ref_cols, _ = _as_image(ref, "ref")
    if ref_cols.shape[1] != cols.shape[1]:
        raise ValueError(f"ref: expected {cols.shape[1]} channels as src, got {ref_cols.shape[1]}")
    eps = 1e-3 if eps is None else eps
    with torch.no_grad():
        if method == "sinkhorn":
            mapped = _sinkhorn_map(cols, ref_cols, bins, eps, rho, tol, lut)
        else:
            c, targets, a = palette_map(cols, ref_cols, n_colors=n_colors, bins=bins, rho=rho, eps=eps, seed=seed)
            sigma = smooth if smooth is not None else _default_sigma(c)
            fn = lambda pts: _kernel_blend(pts, c, targets - c, a, sigma)  # noqa: E731
            mapped = cols + (_lut_apply(fn, cols, lut) if (lut and cols.shape[1] == 3) else fn(cols))
        return restore(cols + t * (mapped - cols))


def _default_sigma(c: torch.Tensor) -> float:
    if len(c) < 2:
        return 1.0
    d = torch.cdist(c, c)
    d.fill_diagonal_(float("inf"))
    return max(0.5 * float(d.min(1).values.median()), 1e-3)
