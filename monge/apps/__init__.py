"""Applications and inverse problems built on the solvers: flows, generative models, k-means, interpolation,
barycentric coordinates, dictionary learning, colour transfer, registration, Gaussian closed forms, Word Mover's
Distance, sample complexity, minibatch OT, W1 maps, domain adaptation. Each module is imported on first use
(``monge.apps.color_transfer`` loads :mod:`monge.apps.color`). A function named like its module (``kmeans``,
``w1_map``) is reached as ``monge.kmeans`` / ``monge.w1_map``: ``monge.apps.kmeans`` is the module."""

import importlib

#: Functions served from their application module on first access.
_LAZY = {
    "color_transfer": "color",
    "register": "registration",
    "bures_wasserstein": "gaussian",
    "gaussian_map": "gaussian",
    "gaussian_barycenter": "gaussian",
    "gaussian_fit": "gaussian",
    "sample_complexity": "sample_complexity",
    "wmd_knn": "wmd",
    "ot_pairs": "minibatch",
    "barycentric_coordinates": "coordinates",
    "CoordinatesFit": "coordinates",
    "displacement_interpolation": "interpolation",
    "kmeans_inertia": "kmeans",
    "OTDomainAdapter": "domain_adaptation",
}
_RENAMED = {"sample_complexity": "study", "wmd_knn": "knn"}


def __getattr__(name):
    if name not in _LAZY:
        try:  # a submodule: monge.apps.wmd, monge.apps.flows, ...
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'monge.apps' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
