"""Shared helpers for the side-by-side benchmarks: timing and a one-line machine description."""

from __future__ import annotations

import os
import platform
import time

import torch

__all__ = ["timeit", "best_of", "cpu_best", "machine", "row"]


def settle(seconds: float = 0.5) -> None:
    """Pause before a timed run so that the other library's idle BLAS/OpenMP threads stop spinning: on 2 cores
    they otherwise take one from the side being timed (monge's first float64 grid call: 0.19 s against 0.08 s)."""
    time.sleep(seconds)


def timeit(fn, repeat: int = 3, warmup: int = 0):
    """(best wall-clock seconds over ``repeat`` runs, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def best_of(fns: dict, repeat: int) -> dict:
    """Best wall time of each callable, calls interleaved round-robin (fair under background load)."""
    times = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k] = min(times[k], time.perf_counter() - t0)
    return times


def cpu_best(fns: dict, repeat: int) -> dict:
    """Best (CPU, wall) seconds of each callable over ``repeat`` runs, calls interleaved round-robin."""
    out = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            f()
            out[k] = min(out[k], (time.process_time() - c0, time.perf_counter() - w0))
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}"


def row(name: str, t_monge: float, t_peer: float, peer: str, extra: str = "") -> str:
    return f"{name:<44} monge {t_monge:8.3f} s   {peer} {t_peer:8.3f} s   ratio {t_peer / t_monge:6.2f}x  {extra}"
