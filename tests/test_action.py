"""A_safe and its projection: the property every later layer relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aigp.action import MAX_DAILY_CHANGE, feasible_change_bounds, is_safe, project_to_safe

discounts = st.floats(min_value=0.5, max_value=1.0)
anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-5, max_value=5))


@given(prev=discounts, proposal=anything)
def test_projection_always_lands_in_a_safe(prev: float, proposal: float) -> None:
    safe = project_to_safe(prev, proposal)
    assert is_safe(prev, safe.change).all()
    assert 0.5 <= float(safe.discount) <= 1.0
    assert abs(float(safe.change)) <= MAX_DAILY_CHANGE + 1e-9
    assert math.isclose(float(safe.discount), prev + float(safe.change), abs_tol=1e-12)


@given(prev=discounts, proposal=st.floats(min_value=-0.2, max_value=0.2))
def test_feasible_proposals_are_kept_and_others_go_to_the_nearest_point(prev: float, proposal: float) -> None:
    safe = project_to_safe(prev, proposal)
    low, high = feasible_change_bounds(prev)
    expected = min(max(proposal, float(low)), float(high))
    assert math.isclose(float(safe.change), expected, abs_tol=1e-9)
    assert bool(safe.projected) == (abs(expected - proposal) > 1e-6)


def test_non_finite_proposals_hold_the_price_and_are_flagged() -> None:
    safe = project_to_safe(np.array([0.8, 0.8, 0.8]), np.array([np.nan, np.inf, -np.inf]))
    assert np.all(safe.change == 0.0) and np.all(safe.discount == 0.8) and safe.projected.all()


def test_projection_examples() -> None:
    safe = project_to_safe(np.array([0.55, 0.95, 0.8, 0.8]), np.array([-0.2, 0.2, 0.5, -0.05]))
    np.testing.assert_allclose(safe.change, [-0.05, 0.05, 0.2, -0.05])
    np.testing.assert_allclose(safe.discount, [0.5, 1.0, 1.0, 0.75])
    assert safe.projected.tolist() == [True, True, True, False]


@pytest.mark.parametrize("bad", [0.3, 1.2, float("nan")])
def test_a_corrupt_previous_discount_is_an_error_naming_the_field(bad: float) -> None:
    with pytest.raises(ValueError, match="prev_discount"):
        project_to_safe(bad, 0.0)
