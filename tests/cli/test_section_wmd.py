"""The demo report's Word Mover's Distance section on the embedded newsgroup data, at a small size."""

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")


def test_section_wmd_small(tmp_path):
    from monge import data
    from monge.apps.wmd import wmd
    from monge.cli.sections.wmd import section_wmd

    s = section_wmd(tmp_path, k_max=3, n_posts=40)
    assert s.images and all((tmp_path / im).stat().st_size > 0 for im in s.images)
    errors = [float(e) for e in re.findall(r"k=\d+: ([0-9.]+)", s.metrics["leave-one-out error, WMD"])]
    assert len(errors) == 2 and all(0 <= e < 0.5 for e in errors)  # far better than chance on two topics
    key = next(k for k in s.metrics if k.startswith("  neighbour 1: post "))
    j, d = re.search(r"post (\d+), WMD (\S+)", key).groups()
    q = int(re.search(r"query: post (\d+)", " ".join(s.metrics)).group(1))
    ng = data.newsgroups()
    assert wmd(ng.docs[q], ng.docs[int(j)], ng.embeddings) == pytest.approx(float(d), abs=1e-3)
    assert np.isfinite(float(d))
