r"""The per-axis soft-min of :class:`~monge.geometry.Grid`: a shifted product with one 1-D kernel per axis, then
the float64 redo and the exact fallbacks of :mod:`~monge.geometry._backends.shifted` for the entries it could not
certify (line-wise for the squared cost, entry-wise otherwise), and the fused one-shift product over all axes.
"""

from __future__ import annotations

import numpy as np
import torch

from .shifted import certified, shifted_product

__all__ = ["softmax_axis", "fused_product", "quadratic_lines"]

_FALLBACK_ELEMENTS = 1 << 22  # entries per chunk of the exact fallback: 16 MB in float32


def softmax_axis(g: torch.Tensor, axis: int, C: torch.Tensor, K: torch.Tensor, eps: float,
                  K64: torch.Tensor | None = None, wide: dict | None = None,
                  quadratic: float | None = None) -> torch.Tensor:
    r"""``eps log sum_j exp((g_j - C_ij) / eps)`` along ``axis`` of ``g`` (the negative 1-D soft-min).

    Fast path (:func:`_shifted_product`): one matrix product per axis in a per-line shifted frame. Entries where it
    underflows are, for a float32 ``g`` with the float64 kernel ``K64`` given, first recomputed by the same product in
    float64 (range ``e^-708`` instead of ``e^-87``: ~8x more ``eps`` headroom at twice the cost of one product), and
    only the entries still underflowing there are computed exactly: by :func:`quadratic_lines` on their lines when
    the cost is ``(s (i - j))^2`` (``quadratic = s``), else by the log-sum-exp of :func:`_exact_entries`. Once the
    float32 product has underflowed on over a quarter of the lines at this ``(axis, eps)``, ``wide["wide"]`` makes
    the later calls skip it and start in float64 (a private switch: the same result up to rounding).
    """
    shape = g.shape
    n = shape[axis]
    lead = 1
    for s in shape[:axis]:
        lead *= s
    g3 = g.reshape(lead, n, -1)  # (A, n, B): lines along the middle dimension

    def redo64(out, bad):
        if out is None:  # the switch is on: everything in float64
            out64, bad = _shifted_product(g3.double(), K64, eps)
            return out64.to(g.dtype), bad
        return _redo_lines64(out, bad, g3, K64, eps)

    def exact(out, bad):
        return _exact_entries(out, g3, bad, C, eps) if quadratic is None else _exact_lines(out, g3, bad, quadratic, eps)

    def systematic(bad):  # over a quarter of the lines underflowed: start in float64 from now on
        return 4 * int(bad.any(1).sum()) > bad.shape[0] * bad.shape[2]

    out = certified(g3, lambda t: _shifted_product(t, K, eps), exact, redo64 if K64 is not None else None, wide,
                    systematic)
    return out.reshape(shape)


def fused_product(h: torch.Tensor, kernels: list, eps: float):
    r"""``eps log sum_j K_ij exp(h_j / eps)`` over the whole grid with ONE shift (the max of ``h`` per batch element):
    one ``exp``, ``d`` matrix products, one ``log``; ``None`` if any sum underflowed (then the per-axis path runs).

    A sum that went through an underflowed partial sum has lost at most ``N * tiny`` (every factor is <= 1), so the
    result is exact to ``N`` ulp wherever ``s >= N * tiny / ulp``: the same certificate as the per-axis path.
    CPU tensors with nothing to record for autograd take :func:`_fused_numpy` (the same passes on numpy views).
    """
    if _numpy_ok(h):
        return _fused_numpy(h, kernels, eps)
    d = len(kernels)
    dims = tuple(range(h.dim() - d, h.dim()))

    def contract(s):
        for k in range(d - 1):
            axis = h.dim() - d + k
            lead = 1
            for n_ in s.shape[:axis]:
                lead *= n_
            s = torch.matmul(kernels[k], s.reshape(lead, s.shape[axis], -1)).reshape(s.shape)
        return s @ kernels[-1]  # the last axis: K is symmetric

    N = 1
    for n_ in h.shape[h.dim() - d:]:
        N *= n_
    out, bad = shifted_product(h, contract, eps, dims, N, mask=False)
    return None if bool(bad) else out


def _numpy_ok(h: torch.Tensor) -> bool:
    """Whether ``h`` may go through numpy: a plain strided CPU tensor whose soft-min records nothing for autograd."""
    plain = type(h) is torch.Tensor and h.layout == torch.strided and not h.is_neg()
    return (plain and h.device.type == "cpu" and not (h.requires_grad and torch.is_grad_enabled())
            and not torch._C._functorch.is_functorch_wrapped_tensor(h))  # (vmap / grad transforms: torch)


def _fused_numpy(h: torch.Tensor, kernels: list, eps: float):
    """:func:`fused_product` on numpy views, in place in two buffers: numpy's vectorised ``exp``/``log`` take a
    third of torch's time on this CPU, and its BLAS product is ~10% faster (256 x 256 float64: 1.39 vs 1.54 ms)."""
    d = len(kernels)
    grid = tuple(h.shape[h.dim() - d:])
    N = 1
    for n_ in grid:
        N *= n_
    x = h.detach().numpy().reshape(-1, N)  # (B, N): a copy only if h is not contiguous
    M = x.max(axis=1, keepdims=True)
    if not np.isfinite(M).all():
        M = np.where(np.isfinite(M), M, 0.0).astype(x.dtype)
    s = np.subtract(x, M)
    s *= 1.0 / eps
    np.exp(s, out=s)
    s = s.reshape(-1, *grid)
    s = np.matmul(s.reshape(-1, grid[-1]), kernels[-1].numpy()).reshape(s.shape)  # K is symmetric
    for k in range(d - 2, -1, -1):  # axis k of (B, n_1, ..., n_d) as (lead, n_k, rest) batched products
        lead = s.shape[0] * int(np.prod(grid[:k], dtype=np.int64))
        s = np.matmul(kernels[k].numpy(), s.reshape(lead, grid[k], -1)).reshape(s.shape)
    s = s.reshape(-1, N)
    low = s.min()
    finfo = np.finfo(s.dtype)
    if not (low >= N * finfo.tiny / finfo.eps) or not np.isfinite(low):
        return None
    np.log(s, out=s)
    s *= eps
    s += M
    return torch.from_numpy(s).reshape(h.shape)


def _shifted_product(g3: torch.Tensor, K: torch.Tensor, eps: float):
    """The fast path on ``(A, n, B)`` lines: ``(out, bad)``, ``bad`` marking the underflowed entries to redo.

    Per line ``m = max_j g_j``, ``s_i = sum_j K_ij exp((g_j - m) / eps)`` (one matrix product), ``m + eps log s_i``.
    Every term of ``s`` is a product of two floats in ``[0, 1]``, so ``s`` carries a relative error ~ ``n`` ulp
    unless underflowed terms matter: entries with ``s < n * tiny / ulp`` on lines with a finite entry are ``bad``.
    """
    def contract(u):
        return (u.squeeze(-1) @ K).unsqueeze(-1) if g3.shape[-1] == 1 else torch.matmul(K, u)  # K is symmetric

    return shifted_product(g3, contract, eps, 1, g3.shape[1])


def _redo_lines64(out: torch.Tensor, bad: torch.Tensor, g3: torch.Tensor, K64: torch.Tensor, eps: float):
    """The float64 product on the lines of ``g3 (A, n, B)`` holding an underflowed entry, and only those (all at
    once when most lines are affected); returns ``(out, bad)`` with ``bad`` left for the exact fallback."""
    line_bad = bad.any(1)  # (A, B)
    if 4 * int(line_bad.sum()) > line_bad.numel():
        out64, bad = _shifted_product(g3.double(), K64, eps)
        return torch.where(bad, out, out64.to(out.dtype)), bad  # bad entries of out are redone exactly later
    a, b = line_bad.nonzero(as_tuple=True)
    out_t, bad_t = out.transpose(1, 2), bad.transpose(1, 2)  # (A, B, n) views: a line is out_t[a, b]
    o64, b64 = _shifted_product(g3.transpose(1, 2)[a, b].double().unsqueeze(-1), K64, eps)  # (L, n, 1)
    o64, b64 = o64.squeeze(-1), b64.squeeze(-1)
    lines = torch.where(b64, out_t[a, b], o64.to(out.dtype))
    return out_t.index_put((a, b), lines).transpose(1, 2), bad_t.index_put((a, b), b64).transpose(1, 2)


def _exact_lines(out: torch.Tensor, g3: torch.Tensor, bad: torch.Tensor, s: float, eps: float):
    """Replace the ``bad`` entries of ``out (A, n, B)`` by :func:`quadratic_lines` on the lines holding them."""
    line_bad = bad.any(1)  # (A, B)
    a, b = line_bad.nonzero(as_tuple=True)
    rows = g3.transpose(1, 2)  # (A, B, n) view: a line is rows[a, b]
    exact = quadratic_lines(rows[a, b].double(), s, eps).to(out.dtype)  # (L, n)
    out_t = out.transpose(1, 2)
    lines = torch.where(bad.transpose(1, 2)[a, b], exact, out_t[a, b])
    return out_t.index_put((a, b), lines).transpose(1, 2)


def quadratic_lines(lines: torch.Tensor, s: float, eps: float) -> torch.Tensor:
    r"""``eps log sum_j exp((g_j - s^2 (i - j)^2) / eps)`` for every ``i`` of each line ``g`` of ``lines (L, n)``,
    exact up to rounding for any ``eps``, in O(n^2 / B) exponentials per line instead of O(n^2).

    With :math:`\varphi_j = g_j/\varepsilon - q j^2`, :math:`q = s^2/\varepsilon`, the sum is
    :math:`e^{-q i^2} \sum_j e^{\varphi_j + 2 q i j}`. Outputs go in blocks of ``B`` around a centre ``c``: shifted
    by the exact maximum :math:`m_c = \max_j (\varphi_j + 2 q c j)`, the terms :math:`u_j = e^{\varphi_j + 2 q c j -
    m_c} \in [0, 1]`, and :math:`\sum_j e^{\varphi_j + 2 q i j} = e^{m_c} \sum_j u_j E_{j, i - c}` with the fixed
    matrix :math:`E_{jk} = e^{2 q k j}`: one product ``(L, blocks, n) @ (n, B)``. ``B`` keeps
    :math:`|2 q k j| \le 300`, so a term that underflows in ``u`` stays below ``e^-100`` of the largest term of its
    output, and the sums lie in ``[e^-300, n e^300]``: no underflow, no overflow (float64).
    """
    L, n = lines.shape
    q = s * s / eps
    j = torch.arange(n, dtype=torch.float64, device=lines.device)
    B = int(max(1, min(n, 300.0 // max(q * n, 1e-300))))
    half = B // 2
    nb = -(-n // B)
    centres = torch.arange(nb, dtype=torch.float64, device=lines.device) * B + half  # (may pass n - 1: any c works)
    phi = lines / eps - q * j * j  # (L, n); -inf where g is -inf
    tc = (2.0 * q) * centres[:, None] * j[None, :]  # (nb, n)
    k = torch.arange(B, dtype=torch.float64, device=lines.device) - half
    E = torch.exp((2.0 * q) * j[:, None] * k[None, :])  # (n, B)
    i = centres[:, None] + k[None, :]  # (nb, B): output i = centre + k
    keep = (i < n).reshape(-1)
    step = max(1, _FALLBACK_ELEMENTS // (nb * n))  # lines per chunk: (lines, nb, n) exponents at a time
    out = []
    for p0 in range(0, L, step):
        T = phi[p0:p0 + step].unsqueeze(1) + tc  # (l, nb, n)
        m = T.detach().amax(-1, keepdim=True)  # the exact max per block centre (a shift: no gradient through it)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        S = torch.exp(T - m) @ E  # (l, nb, B)
        vals = eps * (m + torch.log(S)) - eps * q * i * i  # -inf where the line is all -inf
        out.append(vals.reshape(-1, nb * B)[:, keep])
    return torch.cat(out)  # (L, n)


def _exact_entries(out: torch.Tensor, g3: torch.Tensor, bad: torch.Tensor, C: torch.Tensor, eps: float):
    """Replace ``out[a, i, b]`` where ``bad`` by the exact log-sum-exp over line ``g3[a, :, b]`` (chunked)."""
    lines_first = g3.transpose(1, 2).contiguous()  # (A, B, n): each gathered line is one contiguous row
    a, i, b = bad.nonzero(as_tuple=True)
    n = g3.shape[1]
    step = max(1, _FALLBACK_ELEMENTS // n)
    vals = []
    for p0 in range(0, a.numel(), step):
        sl = slice(p0, p0 + step)
        lines = lines_first[a[sl], b[sl]]  # (P, n)
        vals.append(eps * torch.logsumexp((lines - C[i[sl]]) / eps, dim=-1))
    return out.index_put((a, i, b), torch.cat(vals))
