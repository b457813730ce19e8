"""Warnings point at the user's line; inner solves' warnings are collected for one summary."""

from __future__ import annotations

import warnings

import pytest

from monge._warnings import InnerWarnings, user_stacklevel, warn


def test_warn_points_at_the_first_frame_outside_monge():
    with pytest.warns(RuntimeWarning, match="hello") as rec:
        warn("hello")
    assert rec[0].filename == __file__
    assert user_stacklevel() == 1  # called from outside monge: the caller itself


def test_inner_warnings_are_counted_and_other_categories_pass_through():
    inner = InnerWarnings()
    assert inner.summary("the inner solves") is None
    with pytest.warns(UserWarning, match="kept"):
        for _ in range(4):
            with inner.collect():
                warnings.warn("solve: not converged", RuntimeWarning)
        with inner.collect():
            warnings.warn("kept", UserWarning)
    assert inner.count == 4
    assert inner.summary("the inner solves") == "the inner solves warned 4 times (first: 'solve: not converged')"
