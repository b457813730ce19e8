"""The fixed-point driver (monge.solvers._loop.fixed_point): stop rules, freezing, statuses, warnings."""

from __future__ import annotations

import warnings

import pytest
import torch

from monge.solvers._loop import fixed_point


def _halve(x, omega):
    return 0.5 * x


def _err(x):
    return x.abs()


def test_stops_at_the_first_check_within_tol():
    run = fixed_point(_halve, _err, torch.tensor([1.0]), tol=1e-3, max_iter=100, omega=1.0)
    assert run.n_iters == 10 and run.convergence.status == ("converged",)
    assert run.convergence.criterion == "marginal_l1" and float(run.convergence.error) <= 1e-3
    assert run.convergence.errors.shape == (2, 1)  # checks at 0 and 10


def test_fixed_iterations_run_exactly_and_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = fixed_point(_halve, _err, torch.tensor([1.0]), tol=1e-9, max_iter=7, fixed_iters=True)
    assert run.n_iters == 7 and run.convergence.status == ("max_iter",)
    with pytest.warns(RuntimeWarning, match="reached max_iter=7"):
        fixed_point(_halve, _err, torch.tensor([1.0]), tol=1e-9, max_iter=7)


def test_a_converged_start_still_takes_one_full_step():
    run = fixed_point(_halve, _err, torch.tensor([1e-6]), tol=1e-3, max_iter=100, omega=1.0)
    assert run.n_iters == 1 and run.convergence.all_converged


def test_nan_is_diverged_and_warned_as_such():
    def step(x, omega):
        return torch.where(x < 0.1, torch.full_like(x, float("nan")), 0.5 * x)

    with pytest.warns(RuntimeWarning, match=r"diverged: NaN or inf appeared in the iterates at iteration 10") as rec:
        run = fixed_point(step, _err, torch.tensor([1.0, 1e-9]), tol=1e-12, max_iter=1000, omega=1.0,
                          freeze=lambda active, old, new: torch.where(active, new, old))
    assert run.convergence.status[0] == "diverged" and run.n_iters == 10
    assert all("max_iter" not in str(w.message) for w in rec)
    assert rec[0].filename == __file__  # stacklevel: the user's line, wherever the driver sits


def test_converged_batch_elements_are_frozen():
    seen = []

    def step(x, omega):
        seen.append(x.clone())
        return x * torch.tensor([0.5, 0.9])

    run = fixed_point(step, _err, torch.tensor([1.0, 1.0]), tol=1e-2, max_iter=1000, omega=1.0,
                      freeze=lambda active, old, new: torch.where(active, new, old))
    assert run.convergence.all_converged
    first = float(run.state[0])
    assert first == pytest.approx(0.5 ** 10)  # stopped moving at its first check within tol
    assert float(run.state[1]) <= 1e-2


def test_a_plateau_stops_early_as_stalled_and_says_so():
    import warnings as w

    from monge.solvers._loop import fixed_point

    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        floor = torch.tensor([1e-3, 0.0])  # the first element has a floor above tol, the second converges
        run = fixed_point(lambda x, o: torch.maximum(0.5 * x, floor), lambda x: x.abs(), torch.tensor([1.0, 1.0]),
                          tol=1e-6, max_iter=100_000, omega=1.0, freeze=lambda active, old, new: torch.where(
                              active, new, old))
    assert run.convergence.status == ("stalled", "converged")
    assert run.n_iters < 1000  # a window of 50 checks after the plateau, not the 100k cap
    assert any("stalled" in str(c.message) and "stopped decreasing" in str(c.message) for c in caught)


def test_slow_steady_progress_is_not_stalled():
    from monge.solvers._loop import fixed_point

    with pytest.warns(RuntimeWarning, match="reached max_iter"):
        run = fixed_point(lambda x, o: 0.9995 * x, lambda x: x.abs(), torch.tensor([1.0]), tol=1e-9, max_iter=3000,
                          omega=1.0)
    assert run.convergence.status == ("max_iter",) and run.n_iters == 3000


def test_frozen_batch_elements_report_their_own_iteration_counts():
    rates = torch.tensor([0.5, 0.9, 0.99])
    run = fixed_point(lambda x, o: rates * x, lambda x: x.abs(), torch.ones(3), tol=1e-3, max_iter=2000, omega=1.0,
                      freeze=lambda active, old, new: torch.where(active, new, old))
    its = run.convergence.n_iters.tolist()
    assert run.convergence.all_converged and its[0] < its[1] < its[2] == run.n_iters
    # checks every 10 iterations after 0.5^k, 0.9^k <= 1e-3 (k = 10, 66 -> 70); the slowest element, the worst one,
    # gets the predicted extra check at the first k with 0.99^k <= 1e-3 (688)
    assert its == [10, 70, 688]


@pytest.mark.parametrize("rate", [0.5, 0.93])
def test_unbatched_scalar_checks_equal_the_batched_path(rate):
    """A 0-d state is decided on Python floats (one read per check): the same iterations, statuses, traces and
    early checks as the same loop run as a batch of one."""
    kw = dict(tol=1e-6, max_iter=1000, omega=1.0)
    one = fixed_point(lambda x, o: rate * x, _err, torch.tensor(1.0, dtype=torch.float64), **kw)
    ref = fixed_point(lambda x, o: rate * x, _err, torch.tensor([1.0], dtype=torch.float64), **kw)
    assert one.n_iters == ref.n_iters and one.convergence.status == ref.convergence.status == ("converged",)
    torch.testing.assert_close(one.convergence.errors, ref.convergence.errors[:, 0])
    assert one.convergence.converged.shape == () and one.convergence.n_iters.shape == ()


def test_unbatched_nan_is_diverged_at_its_iteration():
    def step(x, omega):
        return torch.where(x < 0.1, torch.full_like(x, float("nan")), 0.5 * x)

    with pytest.warns(RuntimeWarning, match=r"diverged: NaN or inf appeared in the iterates at iteration 10"):
        run = fixed_point(step, _err, torch.tensor(1.0), tol=1e-12, max_iter=1000, omega=1.0)
    assert run.convergence.status == ("diverged",) and run.n_iters == 10 and not run.convergence.all_converged


def test_unbatched_plateau_is_stalled():
    with pytest.warns(RuntimeWarning, match="stalled"):
        run = fixed_point(lambda x, o: torch.maximum(0.5 * x, torch.tensor(1e-3)), _err, torch.tensor(1.0), tol=1e-6,
                          max_iter=100_000, omega=1.0)
    assert run.convergence.status == ("stalled",) and run.n_iters < 1000


def test_unbatched_float_errors_and_auto_omega():
    """A measure that returns Python floats (the compiled loops) drives the checks and the auto over-relaxation."""
    run = fixed_point(lambda x, o: x + o * (0.8 * x - x), _err, torch.tensor(1.0, dtype=torch.float64), tol=1e-8,
                      max_iter=2000, measure=lambda x: (float(x.abs()), float(x.abs())))
    assert run.convergence.status == ("converged",) and float(run.convergence.error) <= 1e-8
    plain = fixed_point(lambda x, o: 0.8 * x, _err, torch.tensor(1.0, dtype=torch.float64), tol=1e-8, max_iter=2000,
                        omega=1.0)
    assert run.n_iters <= plain.n_iters


def test_float32_scalar_convergence_rounds_tol_as_the_tensor_test():
    from monge.results import Convergence

    for v in (2e-5, 1e-7, 0.1):
        err = torch.tensor(v, dtype=torch.float32)  # equal to tol in float32, above it in float64
        assert Convergence.build(err, v, 3).status == Convergence.build(err[None], v, 3).status == ("converged",)


def test_stop_each_stops_at_the_first_iteration_within_tol_and_keeps_the_regular_decisions():
    # 0.5^3 = 0.125 <= 0.2: regular checks alone see it at iteration 10 (no rate known before for an early check)
    halve = lambda x, w: 0.5 * x  # noqa: E731
    plain = fixed_point(halve, lambda x: x.abs(), torch.tensor([1.0]), tol=0.2, max_iter=100, omega=1.0)
    each = fixed_point(halve, lambda x: x.abs(), torch.tensor([1.0]), tol=0.2, max_iter=100, omega=1.0,
                       stop_each=True)
    assert (plain.n_iters, each.n_iters) == (10, 3)
    assert float(each.state) == 0.125 and each.convergence.status == ("converged",)
    # the auto over-relaxation still gets its probes and reaches the same fixed point
    A = torch.tensor([[0.9, 0.05], [0.05, 0.9]], dtype=torch.float64)
    step = lambda x, w: x + w * (A @ x + 1.0 - x)  # noqa: E731
    err = lambda x: (A @ x + 1.0 - x).abs().sum()  # noqa: E731
    runs = [fixed_point(step, err, torch.zeros(2, dtype=torch.float64), tol=1e-10, max_iter=5000, stop_each=s)
            for s in (False, True)]
    assert all(r.convergence.status == ("converged",) for r in runs)
    assert torch.allclose(runs[0].state, runs[1].state, atol=1e-9)
    assert runs[1].n_iters <= runs[0].n_iters
