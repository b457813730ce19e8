"""Demo section: Word Mover's Distance on 200 newsgroup posts: pruned exact kNN, classification and retrieval."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ... import data
from ...api import solve
from ...apps.wmd import knn
from ..report import Section, pyplot, save_figure

__all__ = ["section_wmd"]


def _vote_errors(indices: np.ndarray, labels: np.ndarray, ks) -> list[float]:
    """Leave-one-out error of the majority vote of the first ``k`` neighbours (odd k, two classes: no ties)."""
    return [float(np.mean((labels[indices[:, :k]].mean(1) > 0.5).astype(int) != labels)) for k in ks]


def _draw_flow(ax, ng, q: int, j: int, n_words: int = 12) -> float:
    """The optimal flow between the words of posts ``q`` and ``j``, on the plane of the two main axes of their
    word vectors; returns the WMD."""
    (iq, a), (ij, b) = ng.docs[q], ng.docs[j]
    X, Y = ng.embeddings[iq], ng.embeddings[ij]
    res = solve(torch.cdist(X, Y), a, b)
    both = torch.cat([X, Y])
    centred = both - both.mean(0)
    basis = torch.linalg.svd(centred, full_matrices=False).Vh[:2].T
    P2 = (centred @ basis).numpy()
    px, py = P2[: len(X)], P2[len(X):]
    for r, c, v in zip(res.rows.tolist(), res.cols.tolist(), res.vals.tolist()):
        if v > 0:
            ax.plot([px[r, 0], py[c, 0]], [px[r, 1], py[c, 1]], color="0.4", lw=0.3 + 25 * v, alpha=0.6)
    ax.scatter(*px.T, s=600 * a.numpy() + 4, color="tab:red", label=f"post {q}", zorder=3)
    ax.scatter(*py.T, s=600 * b.numpy() + 4, color="tab:blue", label=f"post {j} (nearest)", zorder=3)
    for pts, ids, w, col in ((px, iq, a, "darkred"), (py, ij, b, "navy")):
        for t in torch.argsort(w, descending=True)[:n_words].tolist():
            ax.annotate(ng.words[int(ids[t])], pts[t], fontsize=7, color=col)
    ax.legend(loc="lower right", fontsize=8)
    return float(res.value)


def _readable_query(ng, idx: np.ndarray, labels: np.ndarray, most: int = 60) -> int:
    """A sci.space post whose nearest post is on the same topic and both short enough to draw their flow."""
    size = np.array([len(ids) for ids, _ in ng.docs])
    ok = (labels == 1) & (labels[idx[:, 0]] == 1) & (size <= most) & (size[idx[:, 0]] <= most)
    return int(np.flatnonzero(ok)[0]) if ok.any() else int(np.flatnonzero(labels == 1)[0])


def section_wmd(out_dir: Path, k_max: int = 9, n_posts: int | None = None) -> Section:
    """Leave-one-out kNN over the posts (all 200, or the first ``n_posts``) by exact WMD, pruned by the WCD/RWMD
    bounds; a retrieval example."""
    plt = pyplot()
    out_dir = Path(out_dir)
    ng = data.newsgroups()
    if n_posts is not None:
        ng = replace(ng, docs=ng.docs[:n_posts], labels=ng.labels[:n_posts])
    t0 = time.perf_counter()
    res = knn(ng.docs, ng.docs, ng.embeddings, k=k_max, exclude_self=True)
    t_knn = time.perf_counter() - t0
    idx, labels = res.indices.numpy(), ng.labels.numpy()
    cent = torch.stack([w @ ng.embeddings[i] for i, w in ng.docs])
    dc = torch.cdist(cent, cent).fill_diagonal_(float("inf"))
    idx_wcd = torch.argsort(dc, dim=1, stable=True)[:, :k_max].numpy()
    ks = list(range(1, k_max + 1, 2))
    err_wmd, err_wcd = _vote_errors(idx, labels, ks), _vote_errors(idx_wcd, labels, ks)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.6]})
    axes[0].plot(ks, err_wmd, "o-", label="exact WMD")
    axes[0].plot(ks, err_wcd, "s--", label="word centroid distance")
    axes[0].set(xlabel="k (neighbours voting)", ylabel="leave-one-out error", ylim=(0, None),
                title=f"kNN classification, {ng.label_names[0]} vs {ng.label_names[1]}")
    axes[0].legend()
    q = _readable_query(ng, idx, labels)
    w_q = _draw_flow(axes[1], ng, q, int(idx[q, 0]))
    axes[1].set_title(f"the optimal flow between post {q} and its nearest post: WMD = {w_q:.3f}")
    axes[1].set_xticks([]), axes[1].set_yticks([])
    save_figure(fig, out_dir / "wmd.png", dpi=90, tight=False, crop=True)
    metrics = {
        f"exact kNN (all {len(ng.docs)} posts, k = {k_max})": f"{t_knn:.1f} s; {res.n_exact} exact solves for "
        f"{res.n_pairs} query-post pairs ({res.pruned:.0%} pruned by the bounds or shared by symmetry)",
        "leave-one-out error, WMD": ", ".join(f"k={k}: {e:.3f}" for k, e in zip(ks, err_wmd)),
        "leave-one-out error, WCD": ", ".join(f"k={k}: {e:.3f}" for k, e in zip(ks, err_wcd)),
        f"query: post {q} [{ng.label_names[labels[q]]}]": f"{ng.subjects[q]!r}: {ng.snippets[q][:110]}...",
    }
    for r in range(3):
        j = int(idx[q, r])
        metrics[f"  neighbour {r + 1}: post {j}, WMD {float(res.distances[q, r]):.3f} "
                f"[{ng.label_names[labels[j]]}]"] = f"{ng.subjects[j]!r}: {ng.snippets[j][:110]}..."
    return Section(
        "Word Mover's Distance: documents as distributions of word vectors",
        "Each post is a normalised bag of words over GloVe vectors; the WMD is the exact OT cost between two posts "
        "with the Euclidean distance between word vectors (Kusner et al. 2015). The k-nearest-neighbour search "
        "bounds every pair at once by the word centroid distance and the relaxed WMD, then solves exactly, in "
        "increasing bound, only the pairs a bound cannot exclude: the neighbours are those of the brute-force "
        "search. Left: kNN classification error by WMD and by the centroid distance alone; right: how the words "
        "of a post move to those of its nearest post (line width = mass moved).",
        ["wmd.png"],
        metrics,
    )
