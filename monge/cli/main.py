"""The ``monge`` command: ``monge demo``, ``monge wasserstein X Y``, ``monge train``, ``monge info``."""

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
    from ..api import wasserstein

    x, y = _load_points(args.x), _load_points(args.y)
    print(f"{float(wasserstein(x, y, p=args.p)):.10g}")
    return 0


def _cmd_info(args) -> int:
    import torch

    from .. import __version__, _core

    print(f"monge {__version__}\ntorch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
    print(f"compiled core: {_core.__file__}")
    return 0


def _cmd_train(args) -> int:
    from ..apps.generative import run_experiment

    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "blur", "latent_dim", "grad",
                                               "lr_schedule")}
    print(f"monge train: {args.model} on {args.data}" + (f" ({args.toy})" if args.data == "toy" else "")
          + f", writing {args.out}/")
    try:
        res, metrics, _ = run_experiment(args.model, args.data, out=args.out, seed=args.seed, device=args.device,
                                         verbose=not args.quiet, toy_name=args.toy, n_train=args.n_train,
                                         checkpoint=args.checkpoint, **overrides)
    except ImportError as e:
        print(f"monge: error: {e}", file=sys.stderr)
        return 2
    m = metrics
    print(f"{res.status} after {res.steps} steps in {res.seconds:.1f} s on {res.device}")
    print(f"held-out W_2 ({m.n} samples): generated {m.w2:.4f} | real floor {m.w2_floor:.4f} | Gaussian "
          f"{m.w2_gaussian:.4f} | ratio to floor {m.ratio:.3f}")
    if m.coverage is not None:
        print(f"classifier: {m.coverage}/10 classes, mean confidence {m.confidence:.3f} (real: "
              f"{m.coverage_real}/10, {m.confidence_real:.3f})")
    return 0 if res.finished else 1


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="fit a generative model with an OT loss; writes samples.png, curves.png, "
                       "metrics.json")
    t.add_argument("--model", choices=["sinkhorn", "learned-cost", "wgan-gp"], default="sinkhorn")
    t.add_argument("--data", choices=["digits", "mnist", "toy"], default="digits")
    t.add_argument("--toy", default="gaussians", help="toy distribution for --data toy (gaussians, rings, moons, "
                   "grid, or a monge.data shape)")
    t.add_argument("--out", default="train_out", help="output folder (default: train_out)")
    t.add_argument("--steps", type=int, help="generator steps (default: the recipe's)")
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--lr", type=float)
    t.add_argument("--blur", type=float, help="Sinkhorn blur in data units (eps = blur^2)")
    t.add_argument("--latent-dim", type=int, dest="latent_dim", help="2 also draws the latent manifold")
    t.add_argument("--grad", choices=["envelope", "unroll", "implicit"], help="Sinkhorn gradients")
    t.add_argument("--lr-schedule", choices=["cosine"], dest="lr_schedule", help="decay the learning rates to 0")
    t.add_argument("--n-train", type=int, dest="n_train", help="MNIST: number of training images (default all)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint", help="checkpoint file, written every tenth of the run; resumed if it exists")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=_cmd_train)


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
    _add_train(sub)
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
