r"""Word Mover's Distance between documents, with the bounds that prune an exact k-nearest-neighbour search.

A document is a normalised bag of words :math:`d = \sum_i a_i \delta_{w_i}` over word vectors
:math:`w_i \in \mathbb{R}^D`; the WMD is the exact OT cost with the Euclidean ground distance (Kusner, Sun,
Kolkin & Weinberger 2015):

.. math::
    \mathrm{WMD}(d, d') = \min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} \|w_i - w'_j\|
    \;\ge\; \max\big(\mathrm{RWMD}, \mathrm{WCD}\big), \qquad
    \mathrm{RWMD} = \max\Big(\sum_i a_i \min_j \|w_i - w'_j\|,\ \sum_j b_j \min_i \|w_i - w'_j\|\Big),
    \quad \mathrm{WCD} = \Big\|\sum_i a_i w_i - \sum_j b_j w'_j\Big\|

(RWMD drops one marginal constraint; WCD is Jensen's inequality; RWMD is usually, not always, the tighter).
:func:`knn` computes both bounds from a query to the whole corpus at once (vectorised over the corpus' words),
visits the documents in increasing bound, solves them exactly in batches (network simplex over zero-padded
documents) and stops as soon as the bound exceeds the current k-th exact distance: the same neighbours as the
brute-force search, with most exact solves pruned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["STOP_WORDS", "bag_of_words", "wmd", "wcd", "rwmd", "wmd_batch", "KNNResult", "knn"]

#: A short English stop-word list (function words carry no topic; their mass would dominate every document).
STOP_WORDS = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off
on once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves also may might must shall upon us""".split())

_TOKEN = re.compile(r"[a-z]+")


def bag_of_words(text: str, vocab: dict, stop_words=STOP_WORDS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(word ids, normalised counts)`` of a text: lower-cased alphabetic tokens, stop words and words outside
    ``vocab`` (a ``word -> row`` dict of the embedding matrix) dropped.

    Example:
        >>> ids, w = bag_of_words("The cat and the other cat", {"cat": 0, "other": 1, "dog": 2})
        >>> ids.tolist(), w.tolist()
        ([0], [1.0])
    """
    counts: dict[int, int] = {}
    for tok in _TOKEN.findall(text.lower()):
        if tok not in stop_words and tok in vocab:
            counts[vocab[tok]] = counts.get(vocab[tok], 0) + 1
    ids = torch.tensor(sorted(counts), dtype=torch.long)
    w = torch.tensor([counts[i] for i in ids.tolist()], dtype=torch.float64)
    return ids, w / w.sum() if len(w) else w


def _doc(doc, emb, name):
    ids, w = doc
    ids = torch.as_tensor(ids, dtype=torch.long)
    w = torch.as_tensor(w, dtype=emb.dtype)
    if ids.dim() != 1 or w.shape != ids.shape or len(ids) == 0:
        raise ValueError(f"{name}: expected a non-empty document (ids (k,), weights (k,)), got shapes "
                         f"{tuple(ids.shape)} and {tuple(w.shape)}; drop empty documents first")
    return emb[ids], w / w.sum()


def wcd(doc1, doc2, embeddings) -> float:
    """Word centroid distance, a lower bound on the WMD.

    Example:
        >>> import torch
        >>> E = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
        >>> wcd(([0], [1.0]), ([1], [1.0]), E)
        5.0
    """
    (x, a), (y, b) = _doc(doc1, embeddings, "doc1"), _doc(doc2, embeddings, "doc2")
    return float((a @ x - b @ y).norm())


def rwmd(doc1, doc2, embeddings) -> float:
    """Relaxed WMD (each side's marginal alone), a lower bound on the WMD (usually tighter than the WCD).

    Example:
        >>> import torch
        >>> E = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
        >>> rwmd(([0, 2], [0.5, 0.5]), ([1], [1.0]), E)  # max((1 + 2) / 2, 1)
        1.5
    """
    (x, a), (y, b) = _doc(doc1, embeddings, "doc1"), _doc(doc2, embeddings, "doc2")
    C = torch.cdist(x, y)
    return float(torch.maximum(a @ C.min(1).values, b @ C.min(0).values))


def wmd(doc1, doc2, embeddings) -> float:
    """The exact Word Mover's Distance between two documents ``(ids, weights)`` over ``embeddings (V, D)``.

    Example:
        >>> import torch
        >>> E = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
        >>> wmd(([0, 2], [0.5, 0.5]), ([1], [1.0]), E)
        1.5
    """
    emb = torch.as_tensor(embeddings).double()
    _doc(doc1, emb, "doc1"), _doc(doc2, emb, "doc2")
    return float(wmd_batch([doc1], [doc2], emb)[0])


def _pad(docs, emb):
    L = max(len(d[0]) for d in docs)
    X = emb.new_zeros(len(docs), L, emb.shape[1])
    W = emb.new_zeros(len(docs), L)
    for k, d in enumerate(docs):
        x, w = _doc(d, emb, f"docs[{k}]")
        X[k, : len(w)], W[k, : len(w)] = x, w
    return X, W


def wmd_batch(docs1, docs2, embeddings) -> torch.Tensor:
    """Exact WMD of the pairs ``(docs1[k], docs2[k])`` in one batched network-simplex call (documents padded
    with zero-weight words), float64.

    Example:
        >>> import torch
        >>> E = torch.eye(3, dtype=torch.float64)
        >>> wmd_batch([([0], [1.0]), ([0, 1], [1, 1])], [([1], [1.0]), ([0, 1], [1, 1])], E).tolist()
        [1.4142135623730951, 0.0]
    """
    from ..api import solve

    emb = torch.as_tensor(embeddings).double()
    if len(docs1) != len(docs2):
        raise ValueError(f"docs2: expected as many documents as docs1 ({len(docs1)}), got {len(docs2)}")
    X, A = _pad(docs1, emb)
    Y, B = _pad(docs2, emb)
    return solve(torch.cdist(X, Y), A, B).value


@dataclass(frozen=True)
class KNNResult:
    """``indices (q, k)`` and ``distances (q, k)`` of the nearest corpus documents (ties: lower index first);
    ``n_exact`` the exact WMDs solved, ``n_pairs`` the query-document pairs; ``pruned = 1 - n_exact / n_pairs``."""

    indices: torch.Tensor
    distances: torch.Tensor
    n_exact: int
    n_pairs: int

    @property
    def pruned(self) -> float:
        return 1.0 - self.n_exact / self.n_pairs


@dataclass(frozen=True)
class _Flat:
    """The corpus as one concatenation of words: vectors ``X (T, D)``, weights ``w (T,)``, document ``seg (T,)``."""

    X: torch.Tensor
    w: torch.Tensor
    seg: torch.Tensor
    centroids: torch.Tensor

    @classmethod
    def of(cls, docs, emb):
        parts = [_doc(d, emb, f"corpus[{k}]") for k, d in enumerate(docs)]
        X = torch.cat([x for x, _ in parts])
        w = torch.cat([a for _, a in parts])
        seg = torch.cat([torch.full((len(a),), k, dtype=torch.long) for k, (_, a) in enumerate(parts)])
        cent = torch.zeros(len(docs), emb.shape[1], dtype=emb.dtype).index_add_(0, seg, w[:, None] * X)
        return cls(X, w, seg, cent)


def _bounds(x, a, flat: _Flat, chunk: int = 128) -> torch.Tensor:
    """max(RWMD, WCD) from one query ``(x, a)`` to every corpus document, vectorised over the corpus' words."""
    n_docs = flat.centroids.shape[0]
    row_side = x.new_zeros(n_docs)
    col_min = torch.full_like(flat.w, float("inf"))
    for i0 in range(0, len(a), chunk):
        D = torch.cdist(x[i0 : i0 + chunk], flat.X)  # (c, T)
        seg_min = D.new_full((D.shape[0], n_docs), float("inf")).scatter_reduce_(
            1, flat.seg.expand(D.shape[0], -1), D, "amin")
        row_side += a[i0 : i0 + chunk] @ seg_min
        col_min = torch.minimum(col_min, D.min(0).values)
    col_side = x.new_zeros(n_docs).index_add_(0, flat.seg, flat.w * col_min)
    wcd_ = (flat.centroids - a @ x).norm(dim=-1)
    return torch.maximum(torch.maximum(row_side, col_side), wcd_)


def _one_query(q, corpus, emb, flat, k, batch, exclude, cache):
    """Prefetch and prune for one query: candidates in increasing lower bound; exact WMDs until the bound exceeds
    the k-th exact distance found so far (every later candidate is then farther)."""
    x, a = _doc(q, emb, "query")
    bound = _bounds(x, a, flat)
    order = [int(i) for i in torch.argsort(bound, stable=True) if int(i) != exclude]
    found: dict[int, float] = {}

    def solve(idx):
        known = {i: cache[(min(i, exclude), max(i, exclude))] for i in idx
                 if (min(i, exclude), max(i, exclude)) in cache}
        todo = [i for i in idx if i not in known]
        if todo:
            vals = wmd_batch([q] * len(todo), [corpus[i] for i in todo], emb).tolist()
            known.update(zip(todo, vals))
            if exclude >= 0:  # the query is corpus[exclude]: WMD is symmetric, later queries reuse the value
                cache.update({(min(i, exclude), max(i, exclude)): v for i, v in zip(todo, vals)})
        found.update(known)
        return len(todo)

    n_solved = solve(order[:k])
    pos = k
    while pos < len(order):
        kth = sorted(found.values())[k - 1]
        # prune only what is strictly farther (ties are solved, then broken by index); the slack covers the rounding
        # of distances through matrix products (torch.cdist: ~1e-8 absolute near 0, ~1e-15 relative elsewhere)
        slack = 1e-6 * (1.0 + kth)
        chunk = [i for i in order[pos : pos + batch] if float(bound[i]) <= kth + slack]
        if not chunk:
            break
        pos += len(chunk)
        n_solved += solve(chunk)
    best = sorted(found.items(), key=lambda t: (t[1], t[0]))[:k]
    return [i for i, _ in best], [v for _, v in best], n_solved


def knn(queries, corpus, embeddings, k: int = 5, *, batch: int = 16, exclude_self: bool = False) -> KNNResult:
    """The ``k`` nearest documents of ``corpus`` to each query in WMD, exactly, pruned by WCD and RWMD.

    Args:
        queries, corpus: lists of documents ``(ids, weights)`` (see :func:`bag_of_words`).
        embeddings: ``(V, D)`` word vectors. k: neighbours. batch: exact solves per network-simplex batch.
        exclude_self: queries are ``corpus[i]`` for ``i = 0..q-1`` and must not return themselves
            (leave-one-out classification); exact distances are then cached by unordered pair, since the WMD is
            symmetric (``n_exact`` counts the solves made).

    Example:
        >>> import torch
        >>> E = torch.tensor([[0.0], [1.0], [5.0], [6.0]], dtype=torch.float64)
        >>> corpus = [([0], [1.0]), ([1], [1.0]), ([2, 3], [1, 1])]
        >>> knn([([0, 1], [1, 1])], corpus, E, k=2).indices.tolist()
        [[0, 1]]
    """
    emb = torch.as_tensor(embeddings).double()
    if not isinstance(k, int) or not 1 <= k <= len(corpus) - int(exclude_self):
        raise ValueError(f"k: expected an int in [1, {len(corpus) - int(exclude_self)}] (corpus size), got {k!r}")
    flat = _Flat.of(corpus, emb)
    idx, dist, n_exact, cache = [], [], 0, {}
    for qi, q in enumerate(queries):
        i, d, n = _one_query(q, corpus, emb, flat, k, batch, qi if exclude_self else -1, cache)
        idx.append(i)
        dist.append(d)
        n_exact += n
    n_pairs = len(queries) * (len(corpus) - int(exclude_self))
    return KNNResult(torch.tensor(idx), torch.tensor(dist, dtype=torch.float64), n_exact, n_pairs)
