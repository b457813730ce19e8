"""Every OT result type lives in monge.results; the old import paths serve the same classes."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

import monge
import monge.results as results

OLD_HOMES = [
    ("monge.solvers.free_support", "FreeSupportResult"),
    ("monge.apps.kmeans", "KMeansResult"),
    ("monge.apps.coordinates", "CoordinatesResult"),
    ("monge.apps.dictionary", "UnmixResult"),
    ("monge.apps.dictionary", "DictionaryResult"),
    ("monge.apps.flows", "ParticleFlowResult"),
    ("monge.apps.flows", "JKOResult"),
    ("monge.apps.interpolation", "DisplacementInterpolation"),
]


@pytest.mark.parametrize("module, name", OLD_HOMES)
def test_old_paths_serve_the_class_defined_in_results(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(results, name) and cls.__module__.startswith("monge.results.")
    assert name in results.__all__ and dataclasses.is_dataclass(cls)


@pytest.mark.parametrize("name", ["FreeSupportResult", "KMeansResult", "CoordinatesResult", "DisplacementInterpolation"])
def test_top_level_names_are_the_same_classes(name):
    assert getattr(monge, name) is getattr(results, name)


def test_every_result_with_a_convergence_has_the_field():
    for name in ("FreeSupportResult", "KMeansResult", "CoordinatesResult", "UnmixResult", "DictionaryResult",
                 "ParticleFlowResult", "JKOResult"):
        fields = {f.name for f in dataclasses.fields(getattr(results, name))}
        assert "convergence" in fields, name
