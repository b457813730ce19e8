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
:func:`knn` computes both bounds between every query and every document at once (over the distinct words), visits
the documents of each query in increasing bound, solves them exactly (one compiled network simplex per pair, pairs
in parallel threads, all queries together) and stops a query as soon as its next bound exceeds its current k-th
exact distance: the same neighbours as the brute-force search, with the exact solves the bounds exclude pruned.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_int

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


def _pair_cost(x: torch.Tensor, ix: torch.Tensor, y: torch.Tensor, iy: torch.Tensor) -> np.ndarray:
    """The Euclidean cost between the word vectors of two documents (identical words at exactly 0)."""
    C = torch.cdist(x, y)
    C[ix[:, None] == iy[None, :]] = 0.0
    return C.numpy()


@contextmanager
def _one_torch_thread():
    """torch on one thread (its pool would fight the solver threads for the cores on small products)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _exact_value(a: np.ndarray, b: np.ndarray, C: np.ndarray) -> float:
    """Exact OT value by the compiled network simplex (releases the GIL: pairs run in parallel threads)."""
    from .. import _core

    ints, flts = _core.network_simplex_batch(a[None], b[None], C[None], 0, 1)
    status = int(ints[0, -2])
    if status != 0:
        raise RuntimeError(f"the exact WMD solve failed (network-simplex status {status}: 2 infeasible, 3 not finite); "
                           "check the embeddings and weights for NaN/inf")
    return float(flts[0, -3])


class _Docs:
    """Documents as numpy arrays (vectors, weights, word ids), validated once."""

    def __init__(self, docs, emb: torch.Tensor, name: str):
        parts = [_doc(d, emb, f"{name}[{k}]") for k, d in enumerate(docs)]
        self.X = [x for x, _ in parts]
        self.w = [w.numpy() for _, w in parts]
        self.ids = [torch.as_tensor(d[0], dtype=torch.long) for d in docs]

    def __len__(self):
        return len(self.X)


def _pair_value(a: np.ndarray, b: np.ndarray, x, ix, y, iy) -> float:
    return _exact_value(a, b, _pair_cost(x, ix, y, iy))


def _solve_pairs(P: _Docs, Q: _Docs, pairs, pool=None) -> list[float]:
    """Exact WMDs of ``pairs`` of (P, Q) indices: cost and solve of each pair in one task of ``pool`` (torch on one
    thread, see :func:`_one_torch_thread`; both release the GIL, so the tasks overlap)."""
    args = [(P.w[i], Q.w[j], P.X[i], P.ids[i], Q.X[j], Q.ids[j]) for i, j in pairs]
    if pool is None or len(args) <= 1:
        return [_pair_value(*t) for t in args]
    return list(pool.map(lambda t: _pair_value(*t), args))


def wmd_batch(docs1, docs2, embeddings) -> torch.Tensor:
    """Exact WMD of the pairs ``(docs1[k], docs2[k])``, float64: one compiled network-simplex solve per pair (no
    padding to the longest document), pairs in parallel threads.

    Example:
        >>> import torch
        >>> E = torch.eye(3, dtype=torch.float64)
        >>> wmd_batch([([0], [1.0]), ([0, 1], [1, 1])], [([1], [1.0]), ([0, 1], [1, 1])], E).tolist()
        [1.4142135623730951, 0.0]
    """
    emb = torch.as_tensor(embeddings).double()
    if len(docs1) != len(docs2):
        raise ValueError(f"docs2: expected as many documents as docs1 ({len(docs1)}), got {len(docs2)}")
    P, Q = _Docs(docs1, emb, "docs1"), _Docs(docs2, emb, "docs2")
    with _one_torch_thread(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        vals = _solve_pairs(P, Q, [(k, k) for k in range(len(P))], pool)
    return torch.tensor(vals, dtype=torch.float64)


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


def _word_to_doc_min(D: np.ndarray, local: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``out[w, j] = min over the words of document j of D[w, word]`` (documents as contiguous segments)."""
    return np.minimum.reduceat(np.take(D, local, axis=1), starts, axis=1)


def _bound_matrix(Qd: _Docs, Cd: _Docs, emb: torch.Tensor, block: int = 256) -> torch.Tensor:
    """``max(RWMD, WCD)`` between every query and every corpus document, ``(Q, N)``.

    Over the ``U`` distinct words of both sides, ``M[w, j] = min_{w' in doc j} |w - w'|`` is built block by block
    of word rows (memory ``O(block * words + U * (Q + N))``); then each side of ``RWMD`` is a weighted sum of its
    rows. ``Qd is Cd`` (leave-one-out) computes it once.
    """
    sides = [Qd] if Qd is Cd else [Qd, Cd]
    flat = [torch.cat(S.ids).numpy() for S in sides]
    words, inv = np.unique(np.concatenate(flat), return_inverse=True)
    local = np.split(inv, np.cumsum([len(f) for f in flat])[:-1])
    starts = [np.cumsum([0] + [len(i) for i in S.ids[:-1]]) for S in sides]
    V = emb[torch.from_numpy(words)]
    M = [np.empty((len(words), len(S))) for S in sides]
    for r0 in range(0, len(words), block):
        D = torch.cdist(V[r0 : r0 + block], V).numpy()
        D[np.arange(len(D)), np.arange(r0, r0 + len(D))] = 0.0  # a word is at distance 0 of itself
        for Mk, lk, sk in zip(M, local, starts):
            Mk[r0 : r0 + block] = _word_to_doc_min(D, lk, sk)
    Mq, Mc = M[0], M[-1]
    row_side = np.add.reduceat(np.concatenate(Qd.w)[:, None] * Mc[local[0]], starts[0], axis=0)
    col_side = np.add.reduceat(np.concatenate(Cd.w)[:, None] * Mq[local[-1]], starts[-1], axis=0)
    cq = torch.stack([torch.from_numpy(w) @ x for x, w in zip(Qd.X, Qd.w)])
    cc = torch.stack([torch.from_numpy(w) @ x for x, w in zip(Cd.X, Cd.w)])
    rw = torch.from_numpy(np.maximum(row_side, col_side.T))
    return torch.maximum(rw, torch.cdist(cq, cc))


class _Search:
    """The pruned kNN search, all queries at once, in rounds: each round, every unfinished query proposes its next
    candidates in increasing lower bound that its bound cannot exclude (the first round: its ``k`` best bounds);
    the distinct pairs are solved exactly in parallel; a query is done when its next bound exceeds its ``k``-th
    exact distance (every later candidate is then farther)."""

    def __init__(self, bound: torch.Tensor, k: int, batch: int, exclude_self: bool):
        self.bound, self.k, self.batch, self.exclude_self = bound.numpy(), k, batch, exclude_self
        self.order = torch.argsort(bound, dim=1, stable=True).numpy()
        self.pos = np.zeros(len(bound), dtype=np.int64)
        self.found: list[dict[int, float]] = [{} for _ in range(len(bound))]
        self.known: dict[tuple[int, int], float] = {}  # exact values, by unordered pair when queries are corpus docs

    def key(self, q: int, j: int) -> tuple[int, int]:
        return (min(q, j), max(q, j)) if self.exclude_self else (q, j)

    def propose(self, q: int) -> list[int]:
        found, row, order = self.found[q], self.bound[q], self.order[q]
        if len(found) < self.k:
            lim, want = np.inf, self.k - len(found)
        else:  # prune only what is strictly farther (ties are solved, then broken by index); the slack covers the
            kth = sorted(found.values())[self.k - 1]  # rounding of distances through matrix products (~1e-8 near 0)
            lim, want = kth + 1e-6 * (1.0 + kth), self.batch
        take = []
        while self.pos[q] < len(order) and len(take) < want:
            j = int(order[self.pos[q]])
            if row[j] > lim:
                break
            self.pos[q] += 1
            if not (self.exclude_self and j == q) and j not in found:
                take.append(j)
        return take

    def record(self, pairs: list[tuple[int, int]], values: list[float]) -> None:
        for (q, j), v in zip(pairs, values):
            self.known[self.key(q, j)] = v
            self.found[q][j] = v
            if self.exclude_self and j < len(self.found):  # WMD is symmetric: query j learns it too
                self.found[j][q] = v

    def result(self):
        best = [sorted(f.items(), key=lambda t: (t[1], t[0]))[: self.k] for f in self.found]
        return [[i for i, _ in b] for b in best], [[v for _, v in b] for b in best]


def knn(queries, corpus, embeddings, k: int = 5, *, batch: int = 16, exclude_self: bool = False) -> KNNResult:
    """The ``k`` nearest documents of ``corpus`` to each query in WMD, exactly, pruned by WCD and RWMD.

    Args:
        queries, corpus: lists of documents ``(ids, weights)`` (see :func:`bag_of_words`).
        embeddings: ``(V, D)`` word vectors. k: neighbours. batch: exact solves per network-simplex batch.
        exclude_self: queries are ``corpus[i]`` for ``i = 0..q-1`` and must not return themselves
            (leave-one-out classification); exact distances are then shared by unordered pair, since the WMD is
            symmetric (``n_exact`` counts the solves made).

    The lower bounds of every pair come first, at once (:func:`_bound_matrix`); then rounds of exact solves, all
    queries together, run in parallel threads (one compiled network simplex per pair, no padding).

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
    check_int(batch, "batch", minimum=1)
    if exclude_self and len(queries) > len(corpus):
        raise ValueError(f"queries: with exclude_self=True the queries are corpus[:q], expected at most "
                         f"{len(corpus)} of them, got {len(queries)}")
    Qd = _Docs(queries, emb, "queries")
    Cd = Qd if queries is corpus else _Docs(corpus, emb, "corpus")
    n_exact, active = 0, list(range(len(Qd)))
    with _one_torch_thread(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        search = _Search(_bound_matrix(Qd, Cd, emb), k, batch, exclude_self)
        while active:
            proposals = {q: search.propose(q) for q in active}
            active = [q for q, take in proposals.items() if take]
            pairs = [(q, j) for q in active for j in proposals[q]]
            todo = list({search.key(q, j): (q, j) for q, j in pairs if search.key(q, j) not in search.known}.values())
            search.record(todo, _solve_pairs(Qd, Cd, todo, pool))
            search.record(pairs, [search.known[search.key(q, j)] for q, j in pairs])
            n_exact += len(todo)
    idx, dist = search.result()
    n_pairs = len(queries) * (len(corpus) - int(exclude_self))
    return KNNResult(torch.tensor(idx), torch.tensor(dist, dtype=torch.float64), n_exact, n_pairs)
