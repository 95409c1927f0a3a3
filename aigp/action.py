"""The action space and its safety projection (paper App. B.2).

The pricing action is the daily discount change ``a_t = d_t - d_{t-1}``; ``d = 1.0`` is list price.

    A_safe(s_t) = { a : -0.2 <= a <= 0.2  and  0.5 <= d_{t-1} + a <= 1.0 }

Every layer (baselines, simulator, LLM parser, serving, gate) projects through :func:`project_to_safe`,
so "never a price outside A_safe" is a property of one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DAILY_CHANGE = 0.2
MIN_DISCOUNT = 0.5
MAX_DISCOUNT = 1.0
# Discounts are stored with 4 decimals; comparisons allow for float noise at that scale.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class SafeActions:
    """Projected actions for a batch: what leaves the process, and whether projection changed it."""

    change: np.ndarray  # a_t after projection
    discount: np.ndarray  # d_t = d_{t-1} + a_t, in [0.5, 1.0]
    projected: np.ndarray  # bool: the proposal was outside A_safe (or not a finite number)

    def __len__(self) -> int:
        return len(self.change)


def validate_discount(discount: np.ndarray | float, field: str = "prev_discount") -> np.ndarray:
    """Raise if a discount level in effect lies outside [0.5, 1.0] (a corrupt state, not a model error)."""
    d = np.asarray(discount, dtype=np.float64)
    bad = ~np.isfinite(d) | (d < MIN_DISCOUNT - TOLERANCE) | (d > MAX_DISCOUNT + TOLERANCE)
    if bad.any():
        first = d.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
        raise ValueError(
            f"{field}={first!r} is outside the allowed discount range "
            f"[{MIN_DISCOUNT}, {MAX_DISCOUNT}] ({int(bad.sum())} bad value(s))"
        )
    return np.clip(d, MIN_DISCOUNT, MAX_DISCOUNT)


def feasible_change_bounds(prev_discount: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of changes A_safe allows from ``prev_discount`` (never empty for a valid discount)."""
    d = validate_discount(prev_discount)
    low = np.maximum(-MAX_DAILY_CHANGE, MIN_DISCOUNT - d)
    high = np.minimum(MAX_DAILY_CHANGE, MAX_DISCOUNT - d)
    return low, high


def project_to_safe(prev_discount: np.ndarray | float, proposed_change: np.ndarray | float) -> SafeActions:
    """Project proposed discount changes onto A_safe: the nearest feasible change.

    A non-finite proposal (NaN, inf) cannot be "nearest" to anything, so it becomes a hold (a = 0),
    which is always feasible, and is flagged as projected.
    """
    d_prev = validate_discount(prev_discount)
    proposal = np.broadcast_to(np.asarray(proposed_change, dtype=np.float64), d_prev.shape)
    finite = np.isfinite(proposal)
    raw = np.where(finite, proposal, 0.0)
    low, high = feasible_change_bounds(d_prev)
    change = np.clip(raw, low, high)
    discount = np.clip(d_prev + change, MIN_DISCOUNT, MAX_DISCOUNT)
    # Re-derive the change from the clipped discount so that d_prev + change == discount exactly.
    change = discount - d_prev
    projected = ~finite | (np.abs(change - raw) > TOLERANCE)
    return SafeActions(change=change, discount=discount, projected=projected)


def is_safe(prev_discount: np.ndarray | float, change: np.ndarray | float) -> np.ndarray:
    """True where ``change`` from ``prev_discount`` is inside A_safe."""
    d_prev = np.asarray(prev_discount, dtype=np.float64)
    a = np.asarray(change, dtype=np.float64)
    new = d_prev + a
    return (
        np.isfinite(a)
        & (np.abs(a) <= MAX_DAILY_CHANGE + TOLERANCE)
        & (new >= MIN_DISCOUNT - TOLERANCE)
        & (new <= MAX_DISCOUNT + TOLERANCE)
    )
