"""Validation at the public boundary.

Every public function checks its inputs here, once, and raises a ``ValueError`` / ``TypeError`` that names the
argument, what was expected (with symbolic shapes) and what was received. Nothing below the boundary re-checks.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .ops.broadcast import broadcast_shapes

__all__ = [
    "MASS_RTOL",
    "WEIGHTS_ATOL",
    "as_tensor",
    "common_dtype_device",
    "check_finite",
    "check_points",
    "check_cost_matrix",
    "check_weights",
    "check_simplex",
    "check_batch",
    "check_int",
    "check_cost_power",
    "check_squared_range",
    "balance_masses",
    "check_positive",
    "check_p",
]

#: Relative tolerance on ``|sum(a) - sum(b)| / max(sum(a), sum(b))`` for balanced problems. Within it the
#: second marginal is rescaled to the mass of the first (rounding of weights computed in the user's dtype);
#: beyond it the problem is rejected, never reported "infeasible". float32 weights of 10^5 entries carry
#: rounding errors of ~1e-5 relative, hence the looser float32 bound.
MASS_RTOL = {torch.float32: 1e-4, torch.float64: 1e-8}

#: Absolute tolerance on ``|sum_k lambda_k - 1|`` for barycentric (simplex) weights, per dtype (rounding of a softmax).
WEIGHTS_ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}

_FLOAT_DTYPES = (torch.float32, torch.float64)


def as_tensor(x, name: str, *, dtype=None, device=None) -> torch.Tensor:
    """Turn ``x`` (tensor, numpy array, sequence) into a floating tensor; integers become the default dtype."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (np.ndarray, list, tuple, numbers.Number)):
        try:
            t = torch.as_tensor(np.asarray(x))
        except (ValueError, TypeError) as err:  # ragged nested lists, objects numpy cannot hold as numbers
            raise TypeError(f"{name}: expected a rectangular array of numbers, got a {type(x).__name__} numpy "
                            f"cannot convert ({err}); pass a tensor or equal-length rows") from None
    else:
        raise TypeError(f"{name}: expected a torch.Tensor or array-like, got {type(x).__name__}")
    if not t.is_floating_point():
        if t.is_complex():
            raise TypeError(f"{name}: expected a real floating tensor, got dtype {t.dtype}; pass {name}.real or "
                            f"{name}.abs() if that is what you mean")
        given = t.dtype
        t = t.to(dtype if dtype is not None else torch.get_default_dtype())
        t._monge_given = (name, given)  # a tensor we own: later dtype errors name what the user passed
    elif t.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected dtype float32 or float64, got {t.dtype}; convert with {name}.float() or "
            f"{name}.double()"
        )
    if dtype is not None and t.dtype != dtype and not isinstance(x, torch.Tensor):
        t = t.to(dtype)
    if device is not None and not isinstance(x, torch.Tensor):
        t = t.to(device)
    return t


def common_dtype_device(**tensors: torch.Tensor | None) -> tuple[torch.dtype, torch.device]:
    """The dtype and device shared by all given tensors; a clear error naming both otherwise."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    name0, t0 = items[0]
    for name, t in items[1:]:
        if t.dtype != t0.dtype:
            _converted_dtype_error(name0, t0, name, t)
        if t.device != t0.device:
            raise ValueError(
                f"{name} is on device {t.device} but {name0} is on {t0.device}; move both to the same device "
                f"(e.g. {name}.to({name0 if name0.isidentifier() else repr(str(t0.device))}"
                f"{'.device' if name0.isidentifier() else ''}))"
            )
        if t.dtype != t0.dtype:
            fix = f"{name}.to({name0}.dtype)" if name0.isidentifier() else f"{name}.to({t0.dtype})"
            raise TypeError(
                f"{name} has dtype {t.dtype} but {name0} has dtype {t0.dtype}; use one dtype for all inputs "
                f"(e.g. {fix})"
            )
    return t0.dtype, t0.device


def _converted_dtype_error(name0: str, t0: torch.Tensor, name: str, t: torch.Tensor) -> None:
    """A dtype clash caused by an integer/bool input that :func:`as_tensor` converted: name that input, the dtype
    the user gave and the fix (the generic message would blame the converted dtype)."""
    for (conv_label, conv), (other_label, other) in (((name0, t0), (name, t)), ((name, t), (name0, t0))):
        given = getattr(conv, "_monge_given", None)
        if given is None:
            continue
        src, src_dtype = given
        if getattr(other, "_monge_given", None) is not None:
            other_label = other._monge_given[0]
        raise TypeError(
            f"{src}: got an integer/bool tensor (dtype {src_dtype}), converted to {conv.dtype}, but {other_label} has "
            f"dtype {other.dtype}; pass {src} as a floating tensor of the same dtype, e.g. {src}.to({other.dtype})"
        )


def check_finite(x: torch.Tensor, name: str) -> None:
    """Reject NaN and infinite entries (checked once, at the boundary).

    NaN and +-inf always propagate through a sum, so a finite sum proves every entry finite (one fast pass);
    only a non-finite sum (a bad entry, or a finite overflow) pays for the entrywise scan.
    """
    if not x.numel() or bool(torch.isfinite(x.detach().sum())):
        return
    if not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "infinite"
        raise ValueError(f"{name}: expected finite values, found {bad} entries")


def check_points(x: torch.Tensor, name: str) -> None:
    """Point clouds are ``(..., n, d)`` with n >= 1 and d >= 1, finite."""
    if x.dim() < 2:
        raise ValueError(
            f"{name}: expected points of shape (..., n, d), got shape {tuple(x.shape)}; "
            f"for 1-D samples use {name}[:, None]"
        )
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name}: expected a non-empty point cloud (n >= 1, d >= 1), got shape {tuple(x.shape)}")
    check_finite(x, name)


def check_cost_matrix(C: torch.Tensor, name: str = "C") -> None:
    """Cost matrices are ``(..., n, m)``, non-empty and finite."""
    if C.dim() < 2:
        raise ValueError(f"{name}: expected a cost matrix of shape (..., n, m), got shape {tuple(C.shape)}")
    if C.shape[-1] == 0 or C.shape[-2] == 0:
        raise ValueError(f"{name}: expected a non-empty cost matrix, got shape {tuple(C.shape)}")
    check_finite(C, name)


def check_weights(a, name: str, n, like: torch.Tensor, *, size_name: str = "n",
                  like_name: str = "the geometry (cost C, points x or grid)") -> torch.Tensor:
    """Weights of shape ``(..., n)`` (or ``(..., *n)`` for a tuple ``n``, e.g. a grid shape): nonnegative, finite,
    positive total mass. ``None`` means uniform.

    The result has the dtype and device of ``like``; an array-like is converted, a tensor must already match.
    """
    event = tuple(n) if isinstance(n, (tuple, list)) else (n,)
    k = len(event)
    if a is None:
        return like.new_full(event, 1.0 / math.prod(event))
    t = as_tensor(a, name, dtype=like.dtype, device=like.device)
    common_dtype_device(**{like_name: like, name: t})
    if t.dim() < k or tuple(t.shape[t.dim() - k :]) != event:
        want = size_name if k == 1 else ", ".join(map(str, event))
        raise ValueError(
            f"{name}: expected weights of shape (..., {want}) with {size_name} = {n}, got shape {tuple(t.shape)}"
        )
    if t.numel():  # finite (a finite sum proves it, as in check_finite), >= 0, positive masses: one synchronisation
        d = t.detach()
        mass = d.sum(tuple(range(-k, 0)))
        total, low, least = torch.stack((mass.sum(), d.amin(), mass.amin())).tolist()
        if not math.isfinite(total):
            check_finite(t, name)
        if low < 0:
            raise ValueError(f"{name}: expected nonnegative weights, found a minimum of {low:.3g}")
        if least <= 0:
            raise ValueError(f"{name}: expected a positive total mass, got a weight vector summing to 0; give at "
                             "least one positive weight per measure")
    return t


def check_simplex(w, name: str, K: int, like: torch.Tensor, *, inputs_name: str = "hists") -> torch.Tensor:
    r"""Barycentric weights ``(..., K)``: a point of the simplex
    :math:`\{\lambda \ge 0,\ |\sum_k \lambda_k - 1| \le` :data:`WEIGHTS_ATOL` :math:`\}`, finite; ``None``: uniform
    ``1/K``. Dtype and device of ``like``; ``K = 0`` inputs are an error naming ``inputs_name``.

    Example:
        >>> import torch
        >>> check_simplex(None, "weights", 4, torch.zeros(1)).tolist()
        [0.25, 0.25, 0.25, 0.25]
        >>> check_simplex([0.5, 0.6], "weights", 2, torch.zeros(1))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: weights: expected weights summing to 1 (the simplex), got sums off by up to 0.1 ...
    """
    if not isinstance(K, numbers.Integral) or K < 1:
        raise ValueError(f"{inputs_name}: expected K >= 1 inputs (one per barycentric weight), got K = {K}; pass at "
                         "least one input")
    if w is None:
        return like.new_full((K,), 1.0 / K)
    w = as_tensor(w, name, dtype=like.dtype, device=like.device)
    common_dtype_device(**{name: w, inputs_name: like})
    if w.dim() < 1 or w.shape[-1] != K:
        raise ValueError(f"{name}: expected barycentric weights of shape (..., K) with K = {K} (one per input), got "
                         f"shape {tuple(w.shape)}")
    check_finite(w, name)
    if bool((w < 0).any()):
        raise ValueError(f"{name}: expected nonnegative weights (a point of the simplex), found {float(w.min()):.3g}")
    dev = float((w.detach().sum(-1) - 1).abs().max())
    if dev > WEIGHTS_ATOL[w.dtype]:
        raise ValueError(f"{name}: expected weights summing to 1 (the simplex), got sums off by up to {dev:.3g} "
                         f"(> {WEIGHTS_ATOL[w.dtype]:g}); normalise with {name} / {name}.sum(-1, keepdim=True)")
    return w


def check_batch(**shapes) -> torch.Size:
    """The broadcast of the given batch shapes (``name=shape``); an error naming every argument and its batch shape
    when they do not broadcast.

    Example:
        >>> check_batch(C=(2,), a=(), b=(1,))
        torch.Size([2])
    """
    first, *rest = shapes.values()
    if all(tuple(v) == tuple(first) for v in rest):  # the common case, without torch's general broadcast
        return torch.Size(first)
    try:
        return broadcast_shapes(*shapes.values())
    except RuntimeError:
        got = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(
            f"{', '.join(shapes)}: leading batch dimensions must broadcast, got batch shapes {got}; give each "
            "argument the same batch shape (or 1 / none where it is shared)"
        ) from None


def check_int(value, name: str, *, minimum: int = 1, allow_none: bool = False) -> None:
    """An int (not a bool, not a float) ``>= minimum``; ``None`` when allowed.

    Example:
        >>> check_int(1.5, "n_threads", allow_none=True)
        Traceback (most recent call last):
        ...
        TypeError: n_threads: expected an int >= 1 or None, got float 1.5; pass int(n_threads)
    """
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name}: expected an int >= {minimum}{' or None' if allow_none else ''}, got "
                        f"{type(value).__name__} {value!r}; pass int({name})")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}{' or None' if allow_none else ''}, got {value}")


def balance_masses(a: torch.Tensor, b: torch.Tensor, names=("a", "b"), k: int = 1) -> torch.Tensor:
    """Return ``b`` rescaled to the mass of ``a`` if the masses agree within :data:`MASS_RTOL`, else raise.

    ``k`` trailing dimensions hold the support (1 for point clouds, d for a d-D grid).
    """
    dims = tuple(range(-k, 0))
    ma, mb = a.sum(dims), b.sum(dims)
    tol = MASS_RTOL[a.dtype]
    if ma.dim() == 0 and mb.dim() == 0:  # one problem: one read; clearly within tol (not near it) decided here
        fa, fb = torch.stack((ma.detach(), mb.detach())).tolist()
        if abs(fa - fb) <= 0.5 * tol * max(fa, fb):
            return b if fa == fb else b * (ma / mb).detach()
    rel = (ma - mb).abs() / torch.maximum(ma, mb)
    if bool((rel > tol).any()):
        worst = int(rel.reshape(-1).argmax())
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same total mass for balanced OT: got "
            f"{float(ma.reshape(-1)[worst % ma.numel()]):.10g} and {float(mb.reshape(-1)[worst % mb.numel()]):.10g} "
            f"(relative difference {float(rel.max()):.3g} > {tol:g}); normalise both (a / a.sum()) "
            "or use unbalanced OT (rho=...)"
        )
    # the factor is a rounding correction: detached, so gradients w.r.t. a and b stay those of the balanced problem
    scale = (ma / mb).detach()
    return b * scale.reshape(*scale.shape, *([1] * k))


def check_positive(value, name: str, *, allow_none: bool = False) -> None:
    """A positive finite scalar (eps, rho, scales)."""
    if type(value) is float and 0.0 < value < math.inf:  # the common case, before the abstract-class checks
        return
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name}: expected a positive number, got None")
    if isinstance(value, torch.Tensor):
        if bool((~torch.isfinite(value)).any()) or bool((value <= 0).any()):
            raise ValueError(f"{name}: expected positive finite values, got {value}")
        return
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value}")


def check_p(p, name: str = "p") -> float:
    """The exponent of W_p: a finite real p >= 1."""
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"{name}: expected a real number >= 1, got {type(p).__name__}")
    if not (np.isfinite(p) and p >= 1):
        raise ValueError(f"{name}: expected p >= 1 (W_p is a metric only for p >= 1), got {p}")
    return float(p)


def check_loop(max_iter, check_every, omega) -> None:
    """The iteration knobs shared by the fixed-point solvers: positive int ``max_iter`` and ``check_every``, and an
    over-relaxation ``omega`` that is ``"auto"`` or a number in (0, 2)."""
    if type(max_iter) is int and type(check_every) is int and max_iter >= 1 and check_every >= 1 and (
            omega == "auto" or (type(omega) is float and 0.0 < omega < 2.0)):
        return  # the common case, before the abstract-class checks
    for name, v in (("max_iter", max_iter), ("check_every", check_every)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if omega != "auto" and not (isinstance(omega, numbers.Real) and not isinstance(omega, bool) and 0 < omega < 2):
        raise ValueError(f"omega: expected 'auto' or a number in (0, 2), got {omega!r}")


def check_cost_power(cost_fn, p, *, default=None) -> None:
    """A power ``p`` passed next to a ground cost must be the cost's own degree: ``p`` with ``cost="sqeuclidean"``
    (degree 2), ``"cosine"`` or a :class:`~monge.geometry.costs.Cost` object would otherwise be silently ignored.

    ``p`` equal to ``default`` (a caller's default, which the user may not have chosen) is not checked.

    Example:
        >>> from monge.geometry.costs import Euclidean, SqEuclidean
        >>> check_cost_power(Euclidean(3), 3)   # consistent: nothing to say
        >>> check_cost_power(SqEuclidean(), 1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: p: the cost 'sqeuclidean' has degree 2.0 and would ignore p=1; for |x - y|^p pass ...
    """
    if p is None or (default is not None and p == default):
        return
    if getattr(cost_fn, "name", None) == "callable":
        raise ValueError(f"p: a callable cost computes its own values and would ignore p={p!r}; raise to the power "
                         "inside the callable, or use cost='euclidean', p=...")
    own = getattr(cost_fn, "p", None)
    if own is None or float(own) != float(p):
        name = getattr(cost_fn, "name", type(cost_fn).__name__)
        raise ValueError(
            f"p: the cost {name!r} has degree {own} and would ignore p={p!r}; for |x - y|^p pass "
            f"cost='euclidean', p={p!r} (p=2 with cost='euclidean' equals 'sqeuclidean'), or drop p"
        )


def check_squared_range(x: torch.Tensor, name: str) -> None:
    """Points whose squared distances overflow the dtype (coordinates beyond ~1e154 in float64, ~1e19 in float32):
    an error naming the points and the fix, instead of an infinite cost reported later as a bad ``C``.

    Example:
        >>> import torch
        >>> check_squared_range(torch.tensor([[1e300, 0.0]], dtype=torch.float64), "x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x: coordinates up to 1e+300 give squared distances beyond the torch.float64 range ...
    """
    if not x.numel():
        return
    big = float(x.detach().abs().max())
    limit = math.sqrt(torch.finfo(x.dtype).max / (4 * x.shape[-1]))
    if big > limit:
        raise ValueError(
            f"{name}: coordinates up to {big:.3g} give squared distances beyond the {x.dtype} range (limit "
            f"{limit:.3g}); rescale the points ({name} / s for a common s) and multiply the result back"
        )
