"""The demo report's GW, exact-at-scale and semi-discrete sections, at small sizes: they run, draw and certify."""

import re

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")


def _images_written(section, out):
    return section.images and all((out / im).stat().st_size > 0 for im in section.images)


def test_section_gromov_small(tmp_path):
    from monge.cli.sections.gromov import section_gromov

    s = section_gromov(tmp_path, n=60, side=5)
    assert _images_written(s, tmp_path)
    assert "(converged)" in s.metrics["FGW: final FW gap"]
    assert all("(converged)" in s.metrics[k] for k in ("GW (product start)", "GW (entropic start)"))


def test_section_exact_scale_small(tmp_path):
    from monge.cli.sections.exact_scale import section_exact_scale

    s = section_exact_scale(tmp_path, n=600)
    assert _images_written(s, tmp_path)
    assert "no violating arc left" in s.metrics["matching: certificate"]
    gap = float(re.search(r"values differ by (\S+)", s.metrics["dense vs multiscale at n = 600"]).group(1))
    assert gap < 1e-9  # the multiscale optimum equals the dense network simplex's
    assert "(converged" in s.metrics["graph W1: value"]


def test_section_semidiscrete_small(tmp_path):
    from monge.cli.sections.semidiscrete import section_semidiscrete

    s = section_semidiscrete(tmp_path, m=50, side=24, n_lloyd=3)
    assert _images_written(s, tmp_path)
    err = float(re.search(r"max relative mass error (\S+)", s.metrics["semi-discrete OT (random Diracs)"]).group(1))
    assert err < 1e-8
    first, last = (float(v) for v in re.findall(r"[\d.]+e[-+]\d+", s.metrics["Lloyd: W_2^2 first -> last"]))
    assert last < first  # Lloyd decreases the quantisation error


def test_section_partial_small(tmp_path):
    from monge.cli.sections.partial import section_partial

    s = section_partial(tmp_path, n=40, n_out=8)
    assert _images_written(s, tmp_path)
    assert float(s.metrics["mass received by the outliers (exact partial)"]) == 0.0
    assert float(s.metrics["exact partial value"]) < float(s.metrics["balanced OT value"])
    assert s.metrics["entropic partial: status / iterations / KKT residual"].startswith("converged")
