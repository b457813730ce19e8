"""Word Mover's Distance: the exact LP (scipy HiGHS), the bounds' order, and the pruned kNN == brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import lp_reference
from monge.apps.wmd import bag_of_words, knn, rwmd, wcd, wmd, wmd_batch


def _corpus(rng, n_docs=60, vocab=80, dim=8, topics=3):
    """Synthetic documents: word vectors in topic clusters; each document draws most words from one topic."""
    centres = rng.normal(scale=3.0, size=(topics, dim))
    topic_of = rng.integers(0, topics, vocab)
    E = torch.tensor(centres[topic_of] + rng.normal(size=(vocab, dim)))
    docs = []
    for _ in range(n_docs):
        t = rng.integers(0, topics)
        pool = np.flatnonzero(topic_of == t)
        words = np.concatenate([rng.choice(pool, rng.integers(3, 9)), rng.integers(0, vocab, rng.integers(0, 3))])
        ids, counts = np.unique(words, return_counts=True)
        docs.append((torch.tensor(ids), torch.tensor(counts / counts.sum())))
    return E, docs


def test_equals_exact_lp_and_bounds_are_ordered(rng):
    E, docs = _corpus(rng, n_docs=12)
    for i in range(0, 12, 2):
        d1, d2 = docs[i], docs[i + 1]
        C = torch.cdist(E[d1[0]], E[d2[0]]).numpy()
        ref = lp_reference(C, d1[1].numpy(), d2[1].numpy())
        assert wmd(d1, d2, E) == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert wcd(d1, d2, E) <= ref + 1e-12 and rwmd(d1, d2, E) <= ref + 1e-12
    batch = wmd_batch(docs[0::2], docs[1::2], E)
    np.testing.assert_allclose(batch.numpy(), [wmd(docs[i], docs[i + 1], E) for i in range(0, 12, 2)], rtol=1e-12)
    assert wmd(docs[0], docs[0], E) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 5])
def test_pruned_knn_equals_brute_force(rng, k):
    E, docs = _corpus(rng)
    queries = docs[:8]
    res = knn(queries, docs, E, k=k, exclude_self=True)
    for q in range(8):
        others = [j for j in range(len(docs)) if j != q]
        d = wmd_batch([docs[q]] * len(others), [docs[j] for j in others], E)
        order = sorted(range(len(others)), key=lambda t: (float(d[t]), others[t]))[:k]
        assert res.indices[q].tolist() == [others[t] for t in order]
        np.testing.assert_allclose(res.distances[q].numpy(), [float(d[t]) for t in order], rtol=1e-12)
    assert 0.3 < res.pruned < 1.0  # measured ~0.7-0.9 on these clustered documents


def test_ties_are_broken_by_index(rng):
    E = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    corpus = [([2], [1.0]), ([0], [1.0]), ([2], [1.0]), ([0], [1.0])]  # two pairs of identical documents
    res = knn([([1], [1.0])], corpus, E, k=3)
    assert res.indices.tolist() == [[0, 1, 2]] and res.distances.tolist() == [[1.0, 1.0, 1.0]]


def test_bag_of_words_and_errors():
    vocab = {"transport": 0, "optimal": 1, "maps": 2}
    ids, w = bag_of_words("Optimal transport: the optimal maps.", vocab)
    assert ids.tolist() == [0, 1, 2] and w.tolist() == pytest.approx([0.25, 0.5, 0.25])
    E = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="doc1: expected a non-empty document"):
        wmd((torch.tensor([], dtype=torch.long), torch.tensor([])), ([0], [1.0]), E)
    with pytest.raises(ValueError, match="k: expected an int in"):
        knn([([0], [1.0])], [([1], [1.0])], E, k=2)


def test_vectorised_bounds_match_the_pairwise_ones(rng):
    from monge.apps.wmd import _bound_matrix, _Docs

    E, docs = _corpus(rng, n_docs=15)
    b = _bound_matrix(_Docs(docs[:4], E, "q"), _Docs(docs, E, "c"), E, block=7)
    ref = [[max(rwmd(q, d, E), wcd(q, d, E)) for d in docs] for q in docs[:4]]
    np.testing.assert_allclose(b.numpy(), ref, rtol=1e-12, atol=1e-7)  # cdist's matrix-product rounding near 0


def test_knn_general_queries_and_batch_one(rng):
    E, docs = _corpus(rng, n_docs=30)
    queries = docs[25:]  # queries are not corpus documents: no symmetry shortcut, no self-exclusion
    res = knn(queries, docs[:25], E, k=3, batch=1)
    for q, doc in enumerate(queries):
        d = wmd_batch([doc] * 25, docs[:25], E)
        order = sorted(range(25), key=lambda t: (float(d[t]), t))[:3]
        assert res.indices[q].tolist() == order
    with pytest.raises(ValueError, match="batch"):
        knn(queries, docs, E, k=3, batch=0)
