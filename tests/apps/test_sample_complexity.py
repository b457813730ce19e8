"""Sample complexity: MMD's slope is -1/2 in every dimension; W_2's error decays more slowly as d grows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monge.apps.sample_complexity import loglog_slope, study


@pytest.fixture(scope="module")
def res():
    # uniform cube, both measures equal (limits 0), 12 draws per (d, n); ~3 s
    return study(ns=(32, 64, 128, 256, 512), dims=(2, 6), eps=(), repeats=12, seed=0)


def test_mmd_slope_is_parametric(res):
    # theory -1/2 in every dimension; measured -0.45 .. -0.58 over seeds 0-2 (12 draws): tolerance 0.15
    for d in (2, 6):
        assert res.slope("MMD", d) == pytest.approx(-0.5, abs=0.15)


def test_w2_slope_flattens_with_dimension(res):
    # theory: -1/2 (times sqrt(log n)) at d = 2, -1/d = -0.167 at d = 6; measured -0.41 .. -0.48 and -0.20
    assert -0.6 < res.slope("W2", 2) < -0.3
    assert -0.3 < res.slope("W2", 6) < -0.1
    assert res.slope("W2", 6) > res.slope("W2", 2) + 0.1
    assert res.theory[res.dims.index(6), res.quantities.index("W2")] == pytest.approx(-1 / 6)
    assert "fitted slope" in res.table()


def test_shifted_measures_and_sinkhorn_between():
    r = study(ns=(16, 64, 256), dims=(3,), eps=(0.1,), repeats=4, shift=0.5, n_ref=1500, seed=1)
    assert r.quantities == ("W2", "S_eps=0.1", "MMD")
    assert np.all(np.isfinite(r.errors)) and np.all(r.errors[0, :, -1] < r.errors[0, :, 0])
    assert not math.isnan(r.slopes[0, 1])


def test_loglog_slope_and_errors():
    assert loglog_slope([1, 10, 100], [5.0, 5.0 * 10**-0.3, 5.0 * 10**-0.6]) == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="ns: expected at least two"):
        study(ns=(10,), dims=(2,))
