"""The ``monge`` command: ``monge demo``, ``monge wasserstein X Y``, ``monge info``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _load_points(path: str):
    import numpy as np
    import torch

    p = Path(path)
    if not p.exists():
        raise SystemExit(f"monge: no such file: {path}")
    arr = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    return torch.from_numpy(arr)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    print(f"monge demo: writing {args.out}/index.html")
    path = run_demo(args.out)
    print(f"done: open {path}")
    return 0


def _cmd_wasserstein(args) -> int:
    from .functional import wasserstein

    x, y = _load_points(args.x), _load_points(args.y)
    print(f"{float(wasserstein(x, y, p=args.p)):.10g}")
    return 0


def _cmd_info(args) -> int:
    import torch

    from . import __version__, _core

    print(f"monge {__version__}\ntorch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
    print(f"compiled core: {_core.__file__}")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="monge", description="Computational optimal transport in PyTorch.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the main job on embedded data and write an HTML report")
    d.add_argument("--out", default="report", help="output folder (default: report)")
    d.set_defaults(fn=_cmd_demo)
    w = sub.add_parser("wasserstein", help="exact W_p between two point files (.npy, .csv or whitespace text)")
    w.add_argument("x")
    w.add_argument("y")
    w.add_argument("-p", type=float, default=2.0, help="the order p >= 1 (default 2)")
    w.set_defaults(fn=_cmd_wasserstein)
    i = sub.add_parser("info", help="versions and the compiled core")
    i.set_defaults(fn=_cmd_info)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``monge`` command."""
    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError) as e:
        print(f"monge: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
