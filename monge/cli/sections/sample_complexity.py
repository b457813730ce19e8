"""Demo section: sample complexity of W_2, Sinkhorn divergences and MMD (error against n, per dimension)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...apps.sample_complexity import study
from ..report import Section, pyplot, save_figure

__all__ = ["section_sample_complexity"]

_NS, _DIMS, _EPS, _REPEATS = (25, 50, 100, 200, 400), (2, 3, 5), (0.05, 0.5), 8


def _plot(plt, res, out_dir):
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, len(res.dims), figsize=(4.2 * len(res.dims), 3.8), sharey=True)
    styles = {"W2": ("tab:red", "o-"), "MMD": ("tab:blue", "s-")}
    for ax, i in zip(np.atleast_1d(axes), range(len(res.dims))):
        greys = iter(["0.3", "0.6", "0.75"])
        for k, q in enumerate(res.quantities):
            color, mark = styles.get(q, (next(greys, "0.5"), "^--"))
            ax.errorbar(res.ns, res.errors[i, k], yerr=res.stderr[i, k], fmt=mark, color=color, ms=4, capsize=2,
                        label=f"{q} (slope {res.slopes[i, k]:+.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(res.ns, [str(n) for n in res.ns])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"d = {res.dims[i]}: theory W2 {-0.5 if res.dims[i] <= 2 else -1 / res.dims[i]:+.2f}, "
                     "MMD -0.50", fontsize=9)
        ax.set_xlabel("n (samples per measure)")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("mean |estimate - limit| (distance units)")
    save_figure(fig, out_dir / "sample_complexity.png", dpi=90)


def section_sample_complexity(out_dir: Path) -> Section:
    """Error of W_2, sqrt(S_eps) and the energy distance between two n-samples of the uniform cube, log-log."""
    plt = pyplot()
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    res = study(ns=_NS, dims=_DIMS, eps=_EPS, repeats=_REPEATS, seed=0)
    elapsed = time.perf_counter() - t0
    _plot(plt, res, out_dir)
    metrics = {f"slope {q}, d = {d}": f"{res.slope(q, d):+.3f}" for d in _DIMS for q in res.quantities}
    metrics["run"] = f"{len(_DIMS) * len(_NS) * _REPEATS} draws, {elapsed:.1f} s"
    return Section(
        "Sample complexity: W_2, Sinkhorn divergences and MMD",
        "Two independent n-samples of the uniform distribution on the unit cube (so every limit is 0); each point is "
        f"the mean over {_REPEATS} draws of the estimate in distance units: exact W_2, the square root of the "
        "Sinkhorn divergence at two temperatures, and the energy distance (MMD with the kernel -|x - y|). The "
        "fitted log-log slopes are printed in the legends: MMD decays like n^(-1/2) in every dimension, W_2 like "
        "n^(-1/d) (the curse of dimension), and the Sinkhorn divergence lies between them, closer to MMD for "
        "larger eps (Genevay et al. 2019).",
        ["sample_complexity.png"],
        metrics,
    )
